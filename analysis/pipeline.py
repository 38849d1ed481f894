"""The experiment pipeline behind ``dlnsim run``: validate, run, write, summarize.

``run_experiments`` takes ``[[experiment]]`` tables (from a TOML config, ``analysis.config``, or
``DEFAULT_EXPERIMENTS``), checks every one of them and the output folder before the first one
runs, then for each: ``run`` (``analysis.experiments``: the kind's simulations), writes the
datasets it returns, prints its ``summary`` lines (also appended to ``summary.txt``) and saves
its ``figures`` in the requested formats.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dlnsim.particles.datasets import extra_provenance, save
from dlnsim.particles.validation import check_integer

from .config import check_names, check_out, read_config, validate
from .experiments import DEFAULT_EXPERIMENTS, EXPERIMENTS, Experiment
from .experiments.params import model_from
from .jobs import run_jobs

__all__ = [
    "DEFAULT_EXPERIMENTS",
    "EXPERIMENTS",
    "config_text",
    "load_config",
    "model_from",
    "resolve",
    "run_experiment",
    "run_experiments",
    "run_table",
]

_log = logging.getLogger(__name__)


def run_experiment(experiment: Experiment, params: Any, out: Path) -> list[str]:
    """Run one experiment on checked parameters and write its outputs into ``out``.

    Parameters
    ----------
    experiment : Experiment
        The kind.
    params : parameter dataclass
        Its checked parameters (``experiment.validate``).
    out : pathlib.Path
        The output folder (existing).

    Returns
    -------
    list of str
        The summary lines.
    """
    from .plots import save_figure

    result = experiment.run(params, out)
    for file, ds in result.datasets.items():
        save(ds, out / file)
    lines = experiment.summary(result)
    for stem, fig in experiment.figures(result).items():
        save_figure(fig, out / stem, params.format, dpi=experiment.dpi)
    return lines


def run_table(experiment: Mapping[str, Any], out: Path) -> list[str]:
    """``run_experiment`` of an ``[[experiment]]`` table (``resolve`` then run): what a job
    process of ``run_experiments(jobs > 1)`` runs.

    Parameters
    ----------
    experiment : mapping
        The table.
    out : pathlib.Path
        The output folder (existing).

    Returns
    -------
    list of str
        The summary lines.
    """
    kind, params = resolve(experiment)
    return run_experiment(kind, params, out)


def resolve(experiment: Mapping[str, Any]) -> tuple[Experiment, Any]:
    """The experiment kind and its full parameters (defaults overlaid), every one checked
    (``analysis.config.validate``).

    Parameters
    ----------
    experiment : Mapping[str, Any]
        One ``[[experiment]]`` table (with ``kind``).

    Returns
    -------
    tuple of (Experiment, parameter dataclass)
        The kind and its normalized parameters.

    Raises
    ------
    ValueError
        As ``analysis.config.validate`` (``bad kind=...``, ``bad <key>=...``, ...).
    """
    kind, params = validate(experiment)
    return EXPERIMENTS[kind], params


def load_config(path: str | Path) -> tuple[list[dict[str, Any]], str | None]:
    """Parse a TOML config: ``(experiments, out)``; every experiment is validated up front.

    Parameters
    ----------
    path : str or pathlib.Path
        The UTF-8 TOML file.

    Returns
    -------
    tuple of (list of dict, str or None)
        The ``[[experiment]]`` tables (as written, not normalized) and ``out`` (None if absent).

    Raises
    ------
    ValueError
        As ``analysis.config.read_config`` and ``validate`` (``bad config=...``, ``bad
        kind=...``, ``bad <key>=...``), or ``bad name=...`` for a name used twice.
    """
    experiments, out = read_config(path)
    check_names([validate(exp) for exp in experiments])
    return experiments, out


def config_text(experiments: list[dict[str, Any]]) -> str:
    """The experiments as the text of a TOML config (``load_config`` reads it back).

    Parameters
    ----------
    experiments : list of dict[str, Any]
        The experiment tables (None values are left out).

    Returns
    -------
    str
        One ``[[experiment]]`` block per experiment.
    """

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v))

    blocks = [
        "[[experiment]]\n"
        + "".join(f"{key} = {value(v)}\n" for key, v in exp.items() if v is not None)
        for exp in experiments
    ]
    return "\n".join(blocks)


def run_experiments(
    experiments: list[dict[str, Any]],
    out: str | Path,
    echo: Callable[[str], None] | None = None,
    *,
    config: str | None = None,
    jobs: int = 1,
) -> list[str]:
    """Run the experiments, writing into ``out``; returns all summary lines.

    Every experiment and ``out`` are checked before anything runs or any file is created.
    Each summary line goes to ``echo`` (default: logged at INFO on the ``dlnsim`` logger).
    Every dataset written carries ``config`` in its ``config`` attribute (default: the
    experiments rendered as TOML by ``config_text``).  Ensemble experiments with ``scheduler =
    "local"`` start one ``local_cluster`` each (options: ``local_cluster_options``).

    With ``jobs = 1`` (the default) the experiments run one after the other in this process.
    With ``jobs > 1`` up to ``jobs`` run at once, each in its own process (``analysis.jobs``:
    the same files, bitwise, and the same summary, in the same order); the first error is
    raised after the experiments running beside it have finished.

    Parameters
    ----------
    experiments : list of dict[str, Any]
        The ``[[experiment]]`` tables.
    out : str or pathlib.Path
        The output folder (created; ``summary.txt`` is rewritten).
    echo : callable or None, default None
        ``echo(line)`` for each summary line; None logs them.
    config : str or None, default None
        The text stored in every dataset's ``config`` attribute.
    jobs : int, default 1
        Experiments running at once (> 1: in separate processes).

    Returns
    -------
    list of str
        All summary lines, in order.

    Raises
    ------
    ValueError
        ``bad <name>=...`` for an invalid experiment (as ``resolve``), a name used twice, or
        ``bad out=...``; and whatever an experiment raises.
    """
    resolved = [resolve(e) for e in experiments]
    check_names(resolved)
    jobs = check_integer(jobs, "jobs", 1)
    out = check_out(out, "out")
    out.mkdir(parents=True, exist_ok=True)
    summary = out / "summary.txt"
    summary.write_text("")
    all_lines: list[str] = []

    def emit(_index: int, lines: list[str]) -> None:
        with summary.open("a") as fh:
            fh.write("\n".join(lines) + "\n")
        for line in lines:
            if echo is None:
                _log.info("%s", line)
            else:
                echo(line)
        all_lines.extend(lines)

    text = config_text(experiments) if config is None else config
    with extra_provenance(config=text):
        if jobs > 1 and len(resolved) > 1:
            run_jobs(experiments, out, min(jobs, len(resolved)), emit, run_table)
        else:
            for i, (exp, params) in enumerate(resolved):
                emit(i, run_experiment(exp, params, out))
    return all_lines
