"""The ``dlnsim`` command line.

Errors in arguments or configs print one line naming the bad parameter and exit with status 2
(no traceback); an interrupted run exits 130 and keeps every file it had written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``dlnsim: error: <message>`` and exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _depth(text: str) -> int | float:
    from dlnsim.particles.validation import check_depth

    try:
        value: int | float | str = int(text)
    except ValueError:
        value = text
    try:
        return check_depth(value, "depth")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of numbers"
        ) from None


def _model_options(p: argparse.ArgumentParser, width: int | None = 2) -> None:
    g = p.add_argument_group("model")
    if width is not None:
        g.add_argument(
            "--width", "-d", type=int, default=width, help="width d (default %(default)s)"
        )
    g.add_argument(
        "--depth",
        "-N",
        type=_depth,
        default=10,
        help="depth N: an integer >= 1 or 'inf' (default %(default)s)",
    )
    g.add_argument(
        "--beta", type=float, default=5.0, help="inverse temperature (default %(default)s)"
    )
    g.add_argument(
        "--p", type=float, default=2.0, help="Schatten exponent p > 0 (default %(default)s)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dlnsim",
        description="Thermodynamics of the deep linear network: "
        "singular values as interacting particles.",
    )
    from dlnsim.particles.version import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser(
        "run",
        help="run the experiments of a TOML config (default: built-in)",
        description="Run the experiments of CONFIG.toml (format: README), or the "
        "built-in default experiment; writes datasets, figures and summary.txt.",
    )
    run.add_argument("config", nargs="?", help="TOML config file (default: built-in experiments)")
    run.add_argument("--out", help="output folder (default: the config's 'out' or ./dlnsim-out)")

    pp = sub.add_parser(
        "phase-portrait",
        help="draw Figure 1 of the source (d = 2)",
        description="Streamlines of the gradient flow in (sigma_1, sigma_2), the "
        "diagonal, the equilibrium and computed trajectories.",
    )
    _model_options(pp, width=None)
    pp.add_argument("--limit", type=float, default=1.0, help="axis limit (default %(default)s)")
    pp.add_argument("--out", default="phase_portrait.png", help="image file (default %(default)s)")

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
    en = sub.add_parser(
        "ensemble",
        help="a Langevin ensemble at temperature 1/beta (Dask, Zarr)",
        description="Run MEMBERS independent Langevin trajectories (MODEL section 9) "
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
        help="save times, comma-separated (default 51 equally spaced in [0, t-end])",
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

    from .pipeline import EXPERIMENTS

    for kind in ("meanfield", "repulsion", "depth"):
        _experiment_command(sub, kind, EXPERIMENTS[kind])
    return parser


def _value_parser(default):
    """argparse type for an experiment parameter, inferred from its default."""
    if isinstance(default, bool):
        return None
    if isinstance(default, int):
        return int
    if isinstance(default, float):
        return float
    if isinstance(default, list) or default is None:

        def parse_list(text: str) -> list:
            items = [v for v in text.replace(" ", "").split(",") if v]
            try:
                return [
                    v if v == "inf" else (int(v) if v.lstrip("-").isdigit() else float(v))
                    for v in items
                ]
            except ValueError:
                raise argparse.ArgumentTypeError(f"{text!r} is not a list of numbers") from None

        return parse_list
    return str


def _experiment_command(sub, kind: str, exp) -> None:
    """A subcommand ``dlnsim KIND`` with one option per parameter of the experiment kind."""
    p = sub.add_parser(kind, help=exp.doc.splitlines()[0], description=exp.doc)
    for key, default in exp.defaults.items():
        flag = "--" + key.replace("_", "-")
        shown = "none" if default is None else default
        if isinstance(default, bool):
            p.add_argument(
                flag,
                dest=key,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"(default {shown})",
            )
        else:
            note = ", comma-separated" if isinstance(default, list) or default is None else ""
            p.add_argument(
                flag,
                dest=key,
                type=_depth if key == "depth" else _value_parser(default),
                default=None,
                help=f"(default {shown}{note})" + ("; an integer or inf" if key == "depth" else ""),
            )
    p.add_argument(
        "--out", dest="out_dir", default="dlnsim-out", help="output folder (default %(default)s)"
    )
    p.set_defaults(kind=kind)


def _experiment(args: argparse.Namespace) -> int:
    from .pipeline import EXPERIMENTS, resolve, run_experiments

    given = {
        k: getattr(args, k) for k in EXPERIMENTS[args.kind].defaults if getattr(args, k) is not None
    }
    resolve({"kind": args.kind, **given})  # every parameter checked before any output
    print(f"dlnsim: writing into {args.out_dir}/", file=sys.stderr)
    run_experiments([{"kind": args.kind, **given}], args.out_dir)
    return 0


def _run(args: argparse.Namespace) -> int:
    from .pipeline import DEFAULT_EXPERIMENTS, load_config, run_experiments

    if args.config:
        experiments, out = load_config(args.config)
    else:
        experiments, out = DEFAULT_EXPERIMENTS, None
    folder = Path(args.out or out or "dlnsim-out")
    print(f"dlnsim: writing into {folder}/", file=sys.stderr)
    run_experiments(experiments, folder)
    return 0


def _phase_portrait(args: argparse.Namespace) -> int:
    from dlnsim.particles import Model, Schatten

    from .plots import phase_portrait

    model = Model(2, args.depth, args.beta, Schatten(args.p))
    fig = phase_portrait(model, limit=args.limit)
    fig.savefig(args.out, dpi=130)
    print(f"dlnsim: wrote {args.out}", file=sys.stderr)
    return 0


def _flow(args: argparse.Namespace) -> int:
    import numpy as np

    from dlnsim.particles import Model, Schatten, gradient_flow
    from dlnsim.particles.datasets import check_path, save
    from dlnsim.particles.validation import check_integer

    check_path(Path(args.out))
    model = Model(args.width, args.depth, args.beta, Schatten(args.p))
    times = np.linspace(0.0, args.t_end, check_integer(args.n_times, "n-times", 2))
    ds = gradient_flow(model, args.sigma0, times, rescaled=True if args.rescaled else None)
    save(ds, args.out)
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
    from dlnsim.particles.validation import check_positive

    model = Model(args.width, args.depth, args.beta, Schatten(args.p))
    s_star = model.equilibrium()
    sigma0 = args.sigma0
    if sigma0 is None:
        sigma0 = (s_star if s_star > 0 else 1.0) * np.geomspace(3.0, 1 / 3, model.width)
    if args.save_times is not None:
        times = args.save_times
    else:
        times = np.linspace(0.0, check_positive(args.t_end, "t-end"), 51)
    scheduler = args.scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or "local"
    reductions = [r for r in args.reductions.split(",") if r]
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
    )
    n_failed = int(ds.failed.values.sum())
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


COMMANDS = {"run": _run, "phase-portrait": _phase_portrait, "flow": _flow, "ensemble": _ensemble}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS.get(args.command, _experiment)(args)
    except ValueError as exc:
        print(f"dlnsim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dlnsim: interrupted; files already written are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
