"""The ``dlnsim`` command line.

Every error prints one line (``dlnsim: error: ...``), never a traceback, and exits with

- 2: a bad argument, config or store (the line names the parameter), or an impossible size
  (refused before allocating, from a memory estimate) or a numeric overflow;
- 3: an environment fault: an I/O error (the line gives the path and the OS reason: no space,
  read-only, not a directory, ...), out of memory, a Dask cluster that cannot be reached or has
  no workers; files already written are left as they were;
- 4: a computation that failed (a gradient flow that did not reach its final time; no file);
- 130: interrupted (Ctrl-C); every file already written is kept;
- 1: an internal error (a bug in dlnsim), also as one line; ``DLNSIM_TRACEBACK=1`` shows the
  traceback for a bug report.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["main", "build_parser", "EXIT_BAD_INPUT", "EXIT_ENVIRONMENT", "EXIT_FAILED"]

EXIT_BAD_INPUT = 2
EXIT_ENVIRONMENT = 3
EXIT_FAILED = 4

#: Save times of ``dlnsim ensemble`` without ``--save-times`` (equally spaced in [0, t-end]).
ENSEMBLE_SAVE_TIMES = 51


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``dlnsim: error: <message>`` and exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of numbers"
        ) from None


def _formats(text: str) -> tuple[str, ...]:
    from .plots import check_formats

    try:
        return check_formats(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _format_option(p: argparse.ArgumentParser, default: str = "png") -> None:
    p.add_argument(
        "--format",
        type=_formats,
        default=None,
        help=f"figure formats, comma-separated, e.g. png,pdf (default {default})",
    )


def _model_options(p: argparse.ArgumentParser, width: int | None = 2) -> None:
    """The model options ``--width/-d --depth/-N --beta --p``, generated from the fields of
    ``ModelParams`` (their defaults and help); ``width`` overrides the width's default (None:
    no ``--width``, d = 2)."""
    from .experiments.params import ModelParams, cli_depth, schema_of

    g = p.add_argument_group("model")
    short = {"width": "-d", "depth": "-N"}
    for key, param in schema_of(ModelParams).params.items():
        if key == "width" and width is None:
            continue
        default = width if key == "width" else param.default
        flags = ["--" + key, *([short[key]] if key in short else [])]
        kind = cli_depth if key == "depth" else param.cli  # checked as it is parsed
        g.add_argument(
            *flags, type=kind, default=default, help=f"{param.help} (default %(default)s)"
        )


def _log_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("messages").add_mutually_exclusive_group()
    g.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="more messages, with the Dask cluster's own logs (scheduler, workers)",
    )
    g.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress messages: only results, warnings and errors",
    )


def _cluster_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("LocalCluster (when the scheduler is 'local', the default)")
    g.add_argument(
        "--n-workers",
        type=int,
        default=None,
        help="worker processes (default: one per core, at most one per chunk)",
    )
    g.add_argument(
        "--threads-per-worker", type=int, default=None, help="threads per worker (default 1)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every ``dlnsim`` subcommand: the hand-written commands (``run``,
    ``phase-portrait``, ``flow``, ``ensemble``, ``info``, ``plot``) and one generated from the
    parameters of each registered experiment kind (``analysis.experiments.EXPERIMENTS``).

    Returns
    -------
    argparse.ArgumentParser
        A parser whose errors print one line and exit with status 2.
    """
    parser = _Parser(
        prog="dlnsim",
        description="Thermodynamics of the deep linear network: "
        "singular values as interacting particles.",
    )
    from dlnsim.particles.version import __version__

    from .experiments import EXPERIMENTS

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_run_command, _phase_portrait_command, _flow_command, _ensemble_command):
        add(sub)
    _info_command(sub)
    for kind, experiment in EXPERIMENTS.items():
        if experiment.command:  # flow, ensemble: the hand-written commands above
            _experiment_command(sub, kind, experiment)
    _plot_command(sub)
    for command in sub.choices.values():
        _log_options(command)
    return parser


def _run_command(sub) -> None:
    """``dlnsim run [CONFIG.toml]``."""
    run = sub.add_parser(
        "run",
        help="run the experiments of a TOML config (default: built-in)",
        description="Run the experiments of CONFIG.toml (format: README), or the "
        "built-in default experiment; writes datasets, figures and summary.txt.",
    )
    run.add_argument("config", nargs="?", help="TOML config file (default: built-in experiments)")
    run.add_argument("--out", help="output folder (default: the config's 'out' or ./dlnsim-out)")
    run.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="experiments run at once, each in its own process (default: one per core, at "
        "most one per experiment; 1: one after the other in this process)",
    )
    _cluster_options(run)
    _format_option(run, "each experiment's 'format', else png")
    run.add_argument(
        "--check",
        action="store_true",
        help="validate the config and the output folder, then exit (runs nothing, writes nothing)",
    )


def _phase_portrait_command(sub) -> None:
    """``dlnsim phase-portrait``."""
    pp = sub.add_parser(
        "phase-portrait",
        help="draw Figure 1 of the source (d = 2)",
        description="Streamlines of the gradient flow in (sigma_1, sigma_2), the "
        "diagonal, the equilibrium and computed trajectories.",
    )
    _model_options(pp, width=None)
    pp.add_argument("--limit", type=float, default=1.0, help="axis limit (default %(default)s)")
    pp.add_argument("--out", default="phase_portrait.png", help="image file (default %(default)s)")
    _format_option(pp, "the suffix of --out")


def _flow_command(sub) -> None:
    """``dlnsim flow --sigma0 ...``."""
    fl = sub.add_parser(
        "flow",
        help="integrate the deterministic gradient flow",
        description="Integrate dX/dt = -grad F_beta from SIGMA0 and save a dataset.",
    )
    _model_options(fl)
    fl.add_argument(
        "--sigma0",
        type=_floats,
        required=True,
        help="initial singular values, comma-separated (length d)",
    )
    fl.add_argument("--t-end", type=float, default=10.0, help="final time (default %(default)s)")
    fl.add_argument("--n-times", type=int, default=101, help="save times (default %(default)s)")
    fl.add_argument("--rescaled", action="store_true", help="time is tau = N t")
    fl.add_argument("--out", default="flow.nc", help=".nc or .zarr file (default %(default)s)")


def _ensemble_command(sub) -> None:
    """``dlnsim ensemble``."""
    en = sub.add_parser(
        "ensemble",
        help="a Langevin ensemble at temperature 1/beta (Dask, Zarr)",
        description="Run MEMBERS independent Langevin trajectories (theory.md section 9) "
        "on Dask, streaming finished chunks into a Zarr store; --resume finishes "
        "an interrupted run bitwise identically.",
    )
    _model_options(en, width=4)
    en.add_argument(
        "--sigma0",
        type=_floats,
        default=None,
        help="initial singular values (default sigma_* times a geometric spread)",
    )
    en.add_argument("--members", type=int, default=100, help="ensemble size (default %(default)s)")
    en.add_argument("--seed", type=int, default=None, help="root seed (default: drawn, printed)")
    en.add_argument("--t-end", type=float, default=5.0, help="final time (default %(default)s)")
    en.add_argument("--dt", type=float, default=1e-3, help="time step (default %(default)s)")
    en.add_argument(
        "--save-times",
        type=_floats,
        default=None,
        help=f"save times, comma-separated (default {ENSEMBLE_SAVE_TIMES} equally spaced in "
        "[0, t-end])",
    )
    en.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="noise temperature (default 1/beta; 0 = explicit Euler flow)",
    )
    en.add_argument("--rescaled", action="store_true", help="time is tau = N t (always at N = inf)")
    en.add_argument(
        "--reductions",
        default="sigma,free_energy,spread",
        help="on-the-fly ensemble mean/variance of (default %(default)s; '' for none)",
    )
    en.add_argument(
        "--no-members",
        action="store_true",
        help="keep only the reductions, not every member's trajectory",
    )
    en.add_argument("--chunk-size", type=int, default=None, help="members per task (default auto)")
    en.add_argument("--out", default="ensemble.zarr", help="Zarr store (default %(default)s)")
    en.add_argument(
        "--scheduler",
        default=None,
        help="Dask scheduler address, 'local' or 'serial' (default "
        "$DASK_SCHEDULER_ADDRESS, else a LocalCluster)",
    )
    en.add_argument("--resume", action="store_true", help="finish an interrupted run in --out")
    en.add_argument("--overwrite", action="store_true", help="replace an existing store")
    en.add_argument(
        "--cluster-timeout",
        type=float,
        default=60.0,
        help="seconds to connect to a scheduler, and that a cluster may have no worker before "
        "the run stops (default %(default)s)",
    )
    _cluster_options(en)


def _info_command(sub) -> None:
    """``dlnsim info PATH``."""
    info = sub.add_parser(
        "info",
        help="describe a saved dataset or an ensemble store",
        description="Print the dimensions, parameters, seed, completion state (chunks done of "
        "a Zarr ensemble store) and failed members of PATH (.nc or .zarr), complete or not.",
    )
    info.add_argument("path", help=".nc file or .zarr store")


def _plot_command(sub) -> None:
    """``dlnsim plot PATH``."""
    pl = sub.add_parser(
        "plot",
        help="redraw the figures of a saved dataset",
        description="Redraw the figures of a dataset written by dlnsim (flow .nc, ensemble "
        ".zarr, temperatures, depth, meanfield, repulsion .nc) from the file alone; the "
        "figures are chosen by the dataset's 'kind' attribute.",
    )
    pl.add_argument("path", help="a .nc or .zarr dataset written by dlnsim")
    pl.add_argument("--out", default=None, help="output folder (default: the dataset's folder)")
    _format_option(pl)


def _experiment_command(sub, kind: str, exp) -> None:
    """A subcommand ``dlnsim KIND`` with one option per parameter of the experiment kind (the
    fields of its parameter dataclass: the same defaults and checks as in a config file)."""
    p = sub.add_parser(kind, help=exp.doc.splitlines()[0], description=exp.doc)
    for key, param in exp.schema.params.items():
        flag = "--" + key.replace("_", "-")
        default = param.default
        shown = "none" if default is None else default
        unit = f" [{param.unit}]" if param.unit else ""
        if key == "format":
            _format_option(p)
        elif isinstance(default, bool):
            p.add_argument(
                flag,
                dest=key,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{param.help} (default {shown})",
            )
        elif param.cli is not None:
            note = ", comma-separated" if isinstance(default, list) or default is None else ""
            p.add_argument(
                flag,
                dest=key,
                type=param.cli,
                default=None,
                help=f"{param.help}{unit} (default {shown}{note})",
            )
    p.add_argument(
        "--out", dest="out_dir", default="dlnsim-out", help="output folder (default %(default)s)"
    )
    p.set_defaults(kind=kind)


def _experiment(args: argparse.Namespace) -> int:
    from .experiments import EXPERIMENTS
    from .experiments.params import check_out
    from .pipeline import resolve, run_experiments

    given = {
        k: getattr(args, k, None)
        for k in EXPERIMENTS[args.kind].defaults
        if getattr(args, k, None) is not None
    }
    resolve({"kind": args.kind, **given})  # every parameter checked before any output
    check_out(args.out_dir, "out")
    _log.info("writing into %s/", args.out_dir)
    run_experiments([{"kind": args.kind, **given}], args.out_dir, print)
    return 0


def _run(args: argparse.Namespace) -> int:
    from .experiments.params import DEFAULT_SCHEDULER, check_out
    from .pipeline import DEFAULT_EXPERIMENTS, load_config, resolve, run_experiments

    if args.config:
        experiments, out = load_config(args.config)
        text = Path(args.config).read_text()  # recorded in every dataset written
    else:
        experiments, out, text = DEFAULT_EXPERIMENTS, None, None
    if args.format is not None:
        experiments = [{**e, "format": list(args.format)} for e in experiments]
    folder = check_out(args.out or out or "dlnsim-out", "--out" if args.out else "out")
    if args.check:
        resolved = [resolve(e)[1] for e in experiments]
        names = ", ".join(
            f"{e['kind']} {p.name!r}" for e, p in zip(experiments, resolved, strict=True)
        )
        print(f"dlnsim: {args.config or 'the built-in config'} is valid: {names}; output {folder}/")
        return 0
    from dlnsim.particles.ensemble import available_cores
    from dlnsim.particles.validation import check_integer

    jobs = available_cores() if args.jobs is None else check_integer(args.jobs, "jobs")
    with _cluster(args, DEFAULT_SCHEDULER):
        _log.info("writing into %s/", folder)
        run_experiments(experiments, folder, print, config=text, jobs=jobs)
    return 0


def _phase_portrait(args: argparse.Namespace) -> int:
    from dlnsim.particles import Model, Schatten

    from .plots import phase_portrait, save_figure

    formats = args.format or (Path(args.out).suffix.lstrip(".") or "png")
    model = Model(2, args.depth, args.beta, Schatten(args.p))
    fig = phase_portrait(model, limit=args.limit)
    for path in save_figure(fig, args.out, formats, dpi=130):
        _log.info("wrote %s", path)
    return 0


def _plot(args: argparse.Namespace) -> int:
    from dlnsim.particles.datasets import load
    from dlnsim.particles.validation import fail

    from .plots import dataset_figures, save_figure

    path = Path(args.path)
    try:
        ds = load(path)
    except ValueError:
        raise
    except Exception as exc:  # a file that exists but is not a dataset: one line, exit 2
        raise fail("path", str(path), f"cannot be read as a dataset ({exc})") from None
    stem = path.name.removesuffix(path.suffix)
    folder = Path(args.out) if args.out is not None else path.parent
    for suffix, fig in dataset_figures(ds).items():
        name = f"{stem}_{suffix}" if suffix else stem
        for written in save_figure(fig, folder / name, args.format or ("png",)):
            _log.info("wrote %s", written)
    return 0


def _flow(args: argparse.Namespace) -> int:
    import numpy as np

    from dlnsim.particles import Model, Schatten, gradient_flow
    from dlnsim.particles.datasets import check_path
    from dlnsim.particles.store import save_atomically
    from dlnsim.particles.validation import (
        check_integer,
        check_memory,
        check_positive,
        check_singular_values,
    )

    check_path(Path(args.out))
    model = Model(args.width, args.depth, args.beta, Schatten(args.p))
    sigma0 = check_singular_values(args.sigma0, model.width, "sigma0")
    n_times = check_integer(args.n_times, "n-times", 2)
    check_memory(8.0 * n_times * (4 * model.width + 6), "n-times", n_times)
    times = np.linspace(0.0, check_positive(args.t_end, "t-end"), n_times)
    ds = gradient_flow(
        model, sigma0, times, rescaled=True if args.rescaled else None, on_failure="raise"
    )
    save_atomically(ds, args.out)
    final = ", ".join(f"{v:.8g}" for v in ds.sigma.isel(time=-1).values)
    print(
        f"dlnsim: sigma({args.t_end:g}) = [{final}]; sigma_* = {model.equilibrium():.8g}; "
        f"wrote {args.out}"
    )
    return 0


def _ensemble(args: argparse.Namespace) -> int:
    import os

    import numpy as np

    from dlnsim.particles import Model, Schatten, langevin_ensemble
    from dlnsim.particles.validation import check_positive, check_times

    from .experiments.ensemble import default_start
    from .experiments.params import DEFAULT_SCHEDULER, check_memory, check_steps

    model = Model(args.width, args.depth, args.beta, Schatten(args.p))
    n_times = ENSEMBLE_SAVE_TIMES if args.save_times is None else len(args.save_times)
    # sizes before anything is allocated or written (the library checks the rest)
    sizes = {"members": args.members, "n_times": n_times, "width": model.width}
    check_memory({k: max(v, 0) for k, v in sizes.items()}, "the trajectories", copies=2)
    s_star = model.equilibrium()
    sigma0 = default_start(model) if args.sigma0 is None else args.sigma0
    if args.save_times is not None:
        times = check_times(args.save_times)
    else:
        times = np.linspace(0.0, check_positive(args.t_end, "t-end"), ENSEMBLE_SAVE_TIMES)
    check_steps(float(times[-1]), check_positive(args.dt, "dt"), "t-end", "dt")
    scheduler = args.scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or DEFAULT_SCHEDULER
    reductions = [r for r in args.reductions.split(",") if r]
    with _cluster(args, scheduler):
        ds = langevin_ensemble(
            model,
            sigma0,
            times,
            args.members,
            args.dt,
            args.seed,
            temperature=args.temperature,
            rescaled=True if args.rescaled else None,
            chunk_size=args.chunk_size,
            store=args.out,
            resume=args.resume,
            overwrite=args.overwrite,
            scheduler=scheduler,
            reductions=reductions,
            save_members=not args.no_members,
            cluster_timeout=args.cluster_timeout,
        )
    n_failed = int(ds.failed.values.sum())
    repaired = ds.attrs.get("repaired_chunks", "none")
    if repaired != "none":
        print(f"dlnsim: repaired damaged chunk(s) {repaired} of {args.out} (recomputed from seeds)")
    print(
        f"dlnsim: wrote {args.out} (seed {ds.attrs['seed']}, {args.members} members, "
        f"{n_failed} failed)"
    )
    if "sigma_mean" in ds:
        final = ", ".join(f"{v:.5g}" for v in ds.sigma_mean.isel(time=-1).values)
        print(
            f"  ensemble mean of sorted sigma at the last save time: [{final}]; "
            f"sigma_* = {s_star:.6g}"
        )
    return 0


@contextlib.contextmanager
def _cluster(args: argparse.Namespace, scheduler: str | None) -> Iterator[None]:
    """The LocalCluster options of the command line, for the clusters started in the block
    (only once there is work for them, after every argument is checked)."""
    from dlnsim.particles.ensemble import local_cluster_options

    workers, threads = args.n_workers, args.threads_per_worker
    names = (("n-workers", workers), ("threads-per-worker", threads))
    if args.command == "ensemble" and scheduler != "local":
        for name, value in names:
            if value is not None:
                raise ValueError(
                    f"bad {name}={value!r}: only for a LocalCluster (--scheduler local, the "
                    f"default), not with --scheduler {scheduler}"
                )
    for name, value in names:
        if value is not None and (isinstance(value, bool) or value < 1):
            raise ValueError(f"bad {name}={value!r}: must be an integer >= 1")
    logs = logging.INFO if args.verbose else logging.CRITICAL
    with local_cluster_options(workers, threads, logs):
        yield


def _info(args: argparse.Namespace) -> int:
    from dlnsim.particles.datasets import describe

    info = describe(args.path)

    def join(items) -> str:
        return ", ".join(f"{k}={v}" for k, v in items) or "none"

    print(f"path:        {info['path']} ({info['format']})")
    print(f"kind:        {info['kind'] or 'unknown'}")
    print(f"dimensions:  {join(info['dims'].items())}")
    variables = ", ".join(f"{k}({', '.join(d)})" for k, d in info["variables"].items())
    print(f"variables:   {variables or 'none'}")
    print(f"seed:        {info['seed'] if info['seed'] is not None else 'none'}")
    print(f"parameters:  {join(info['parameters'].items())}")
    if info["complete"] is None:
        state = "no completion state (not an ensemble store)"
    else:
        state = "complete" if info["complete"] else "INCOMPLETE (resume to finish it)"
    if info["chunks_total"] is not None:
        done = "?" if info["chunks_done"] is None else info["chunks_done"]
        state += f"; {done} of {info['chunks_total']} chunks of members done"
    print(f"state:       {state}")
    check = info["verification"]
    if check is not None:
        verdict = f"{check['state']}; {check['chunks_done']} chunks verified against checksums"
        if check["chunks_damaged"]:
            verdict += f", damaged chunks {check['chunks_damaged']} (--resume recomputes them)"
        if check["problems"]:
            verdict += "; " + "; ".join(check["problems"])
        if check["locked_by"]:
            verdict += f"; being written by {check['locked_by']}"
        print(f"verified:    {verdict}")
    if info["failed_members"] is None:
        failed = "not recorded"
    else:
        bad = list(zip(info["failed_members"], info["failed_times"], strict=True))
        failed = f"{len(bad)} of {info['members']} members"
        if bad:
            shown = ", ".join(f"{k} (t={t:.6g})" for k, t in bad[:20])
            failed += f": {shown}" + (", ..." if len(bad) > 20 else "")
        if info["members_pending"]:
            failed += f"; {info['members_pending']} members not computed yet"
    print(f"failed:      {failed}")
    versions = {k: v for k, v in info["provenance"].items() if k.endswith("_version")}
    print(f"versions:    {join(versions.items())}")
    for key in ("cpu_model", "created", "command_line"):
        if key in info["provenance"]:
            print(f"{key + ':':<13}{info['provenance'][key]}")
    return 0


COMMANDS = {
    "run": _run,
    "phase-portrait": _phase_portrait,
    "flow": _flow,
    "ensemble": _ensemble,
    "info": _info,
    "plot": _plot,
}
_log = logging.getLogger("dlnsim.cli")


class _StderrHandler(logging.StreamHandler):
    """Writes to the current ``sys.stderr`` (which tests and notebooks may swap)."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


@contextlib.contextmanager
def _logging(args: argparse.Namespace) -> Iterator[None]:
    """The ``dlnsim`` logger's messages on stderr for the command: INFO (progress, the seed, the
    dashboard link), DEBUG with ``-v``, warnings only with ``-q``; restored afterwards."""
    logger = logging.getLogger("dlnsim")
    verbose, quiet = getattr(args, "verbose", False), getattr(args, "quiet", False)
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("dlnsim: %(message)s"))
    old_level = logger.level
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def _choose_backend() -> None:
    """The CLI only writes files: the non-interactive Agg backend, chosen before any pyplot
    import (the library itself never touches the backend)."""
    import matplotlib

    matplotlib.use("Agg")


def _error(message: object, code: int) -> int:
    """Print ``message`` as one line on stderr and return ``code``."""
    text = " ".join(str(message).split()) or "unknown error"
    print(f"dlnsim: error: {text}", file=sys.stderr)
    return code


def _os_error(exc: OSError) -> str:
    """``<path>: <OS reason>`` for an I/O error, else its message."""
    if exc.filename is not None and exc.strerror:
        where = str(exc.filename)
        if exc.filename2 is not None:
            where += f" -> {exc.filename2}"
        return f"{where}: {exc.strerror}"
    return str(exc) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dlnsim`` command line; selects the Agg backend first (the CLI only writes files).

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status (see the module docstring): 0 success, 2 bad input, 3 an environment
        fault, 4 a failed computation, 130 interrupted, 1 an internal error.
    """
    _choose_backend()
    parser = build_parser()
    args = parser.parse_args(argv)
    with _logging(args):
        return _dispatch(args)


def _dispatch(args: argparse.Namespace) -> int:
    from dlnsim.particles.flow import FlowFailed

    try:
        return COMMANDS.get(args.command, _experiment)(args)
    except ValueError as exc:
        return _error(exc, EXIT_BAD_INPUT)
    except OverflowError as exc:
        return _error(f"numeric overflow ({exc}): a parameter is too large or too small", 2)
    except OSError as exc:  # also TimeoutError, ConnectionError
        return _error(_os_error(exc), EXIT_ENVIRONMENT)
    except MemoryError:
        return _error("out of memory: reduce the sizes (members, width, times, ...)", 3)
    except FlowFailed as exc:
        return _error(exc, EXIT_FAILED)
    except KeyboardInterrupt:
        print("dlnsim: interrupted; files already written are kept", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one line, the traceback on request
        import os

        if os.environ.get("DLNSIM_TRACEBACK"):
            raise
        return _error(
            f"internal error ({type(exc).__name__}: {exc}); this is a bug in dlnsim: please "
            "report it with the command line (DLNSIM_TRACEBACK=1 shows the traceback)",
            1,
        )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
