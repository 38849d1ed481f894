"""The experiment interface (analysis.experiments): typed parameters declared once, the
EXPERIMENTS registry, and the config keys and subcommands generated from them."""

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from dlnsim.analysis.cli import build_parser, main
from dlnsim.analysis.experiments import EXPERIMENTS, Experiment, register
from dlnsim.analysis.experiments.ensemble import EnsembleParams, default_start
from dlnsim.analysis.experiments.params import (
    ModelParams,
    cli_depth,
    cli_list,
    cli_number,
    documented,
    format_param,
    integer,
    name_param,
    param,
    positive,
    schema_of,
)
from dlnsim.particles.datasets import load, provenance


# ---------------------------------------------------------------- a registered experiment
@documented
@dataclass(frozen=True)
class ToyParams:
    """A geometric sequence ``scale * ratio^k``, ``k < n``."""

    name: str = name_param("toy")
    n: int = param(5, integer(1), int, "terms")
    scale: float = param(1.0, positive, float, "first term", unit="t")
    ratio: float = param(0.5, positive, float, "ratio")
    format: list[str] = format_param()

    @staticmethod
    def check(values):
        if values["ratio"] * values["n"] > 1e6:
            raise ValueError(f"bad ratio={values['ratio']!r}: too large for n={values['n']}")


@dataclass(frozen=True)
class ToyResult:
    params: ToyParams
    terms: xr.Dataset

    @property
    def datasets(self):
        return {f"{self.params.name}.nc": self.terms}


def toy_run(params: ToyParams, out: Path) -> ToyResult:
    """Terms of a geometric sequence (the toy experiment of the tests).

    More text that is not part of the --help line.
    """
    k = np.arange(params.n)
    ds = xr.Dataset(
        {"term": ("k", params.scale * params.ratio**k, {"long_name": "term", "units": "1"})},
        attrs=provenance(kind="toy", n=params.n),
    )
    return ToyResult(params, ds)


def toy_summary(result: ToyResult) -> list[str]:
    return [f"[{result.params.name}] sum = {float(result.terms.term.sum()):.6g}"]


def toy_figures(result: ToyResult):
    from matplotlib.figure import Figure

    fig = Figure()
    fig.add_subplot().plot(result.terms.term.values)
    return {f"{result.params.name}_terms": fig}


@pytest.fixture
def toy():
    experiment = register(Experiment("toy", ToyParams, toy_run, toy_summary, toy_figures, dpi=40))
    try:
        yield experiment
    finally:
        EXPERIMENTS.pop("toy")


def test_a_registered_experiment_is_a_subcommand_and_a_config_kind(toy, tmp_path, capsys):
    """Planted bugs caught: the CLI generating subcommands for a fixed list of kinds (no
    ``toy``), an option not passed through, a dataset or figure of ``run`` not written."""
    out = tmp_path / "o"
    assert main(["toy", "--n", "4", "--scale", "2", "--ratio", "0.25", "--out", str(out)]) == 0
    ds = load(out / "toy.nc")
    np.testing.assert_array_equal(ds.term.values, 2 * 0.25 ** np.arange(4))
    assert (out / "toy_terms.png").stat().st_size > 0
    assert "[toy] sum = 2.65625" in (out / "summary.txt").read_text()  # 2 (1 - 4^-4) / (3/4)
    assert "[toy] sum = 2.65625" in capsys.readouterr().out
    # the same kind in a config file; the config text is in the dataset's provenance
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[experiment]]\nkind = "toy"\nname = "t2"\nn = 3\n')
    assert main(["run", str(cfg), "--out", str(out)]) == 0
    ds = load(out / "t2.nc")
    assert ds.sizes["k"] == 3 and 'kind = "toy"' in ds.attrs["config"]
    # --help: the first paragraph of run's docstring, the defaults and the unit of each field
    text = build_parser()._subparsers._group_actions[0].choices["toy"].format_help()
    assert "Terms of a geometric sequence" in text and "More text" not in text
    assert "first term [t] (default 1.0)" in text and "terms (default 5)" in text


@pytest.mark.parametrize(
    "argv,name",
    [
        (["toy", "--n", "0"], "n"),
        (["toy", "--scale", "-1"], "scale"),
        (["toy", "--n", "1000000", "--ratio", "2"], "ratio"),  # the cross check
        (["toy", "--name", "../x"], "name"),
    ],
)
def test_a_registered_experiment_is_checked_before_it_runs(toy, tmp_path, capsys, argv, name):
    out = tmp_path / "o"
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"dlnsim: error: bad {name}="), err
    assert not out.exists()


def test_unknown_config_key_of_a_registered_kind(toy, tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[experiment]]\nkind = "toy"\nbogus = 1\n')
    assert main(["run", "--check", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "bad bogus=1: unknown key for an experiment of kind 'toy'" in err
    assert "(known: name, n, scale, ratio, format)" in err


def test_register_and_experiment_refuse_bad_input():
    with pytest.raises(ValueError, match="^bad kind='flow': is already a registered"):
        register(EXPERIMENTS["flow"])
    assert register(EXPERIMENTS["flow"], replace=True) is EXPERIMENTS["flow"]
    with pytest.raises(ValueError, match="^bad experiment="):
        register(toy_run)  # type: ignore[arg-type]

    @dataclass(frozen=True)
    class NoFormat:
        name: str = name_param("x")

    with pytest.raises(ValueError, match="^bad params=.*needs a 'format' parameter"):
        Experiment("x", NoFormat, toy_run, toy_summary, toy_figures)

    @dataclass(frozen=True)
    class Plain:
        name: str = "x"

    with pytest.raises(ValueError, match="^bad cls=.*field 'name' is not declared with param"):
        schema_of(Plain)
    with pytest.raises(ValueError, match="^bad kind="):
        Experiment("a/b", ToyParams, toy_run, toy_summary, toy_figures)


# ---------------------------------------------------------------- one place per default
def test_each_default_is_declared_once():
    """The dataclass defaults, the config defaults (``Schema.defaults``), the generated
    options and the hand-written commands' model options are the same values.  Planted bug
    caught: a default written again in the CLI (``--beta`` default 4.0 in ``cli.py``)."""
    parser = build_parser()
    for kind, experiment in EXPERIMENTS.items():
        instance = experiment.params()
        for key, default in experiment.defaults.items():
            value = getattr(instance, key)
            assert value == default or (value is None and default is None), (kind, key)
        assert isinstance(experiment.validate({"kind": kind}), experiment.params)
    model = ModelParams()
    for argv, width in ((["flow", "--sigma0", "1,2"], 2), (["ensemble"], EnsembleParams().width)):
        args = parser.parse_args(argv)
        assert (args.width, args.depth, args.beta, args.p) == (
            width,
            model.depth,
            model.beta,
            model.p,
        )
    args = parser.parse_args(["phase-portrait"])
    assert (args.depth, args.beta, args.p) == (model.depth, model.beta, model.p)


def test_parameter_docs_are_generated_from_the_fields():
    doc = EnsembleParams.__doc__
    assert "dt : float, default 0.002\n    time step [t]." in doc
    assert "scheduler : str, default 'local'" in doc
    assert "n : int, default 5\n    terms." in ToyParams.__doc__


def test_command_line_numbers_and_inf_are_parsed_in_one_place():
    assert cli_number("3") == 3 and isinstance(cli_number("3"), int)
    assert cli_number("2.5") == 2.5 and cli_number("inf") == math.inf and cli_number("x") == "x"
    assert cli_list("1, 2.5,inf,INF,-inf") == [1, 2.5, "inf", "inf", -math.inf]
    assert cli_depth("inf") == math.inf and cli_depth("2.0") == 2 and cli_depth("7") == 7
    with pytest.raises(argparse.ArgumentTypeError, match="^bad depth=0:"):
        cli_depth("0")
    with pytest.raises(argparse.ArgumentTypeError, match="not a list of numbers"):
        cli_list("1,a")
    parser = build_parser()
    assert math.isinf(parser.parse_args(["flow", "--sigma0", "1,2", "-N", "inf"]).depth)
    assert parser.parse_args(["depth", "--depths", "16,32,Infinity"]).depths == [16, 32, "inf"]


def test_ensemble_command_starts_where_the_ensemble_experiment_starts(tmp_path):
    """``dlnsim ensemble`` without ``--sigma0`` and the ``ensemble`` experiment without
    ``initial`` share ``default_start`` (sigma_* times a geometric spread 3 .. 1/3)."""
    store = tmp_path / "e.zarr"
    argv = ["ensemble", "-d", "3", "--members", "2", "--t-end", "0.02", "--dt", "0.01",
            "--seed", "1", "--scheduler", "serial", "--out", str(store)]  # fmt: skip
    assert main(argv) == 0
    ds = load(store)
    model = ModelParams(width=3).model()
    start = default_start(model)
    np.testing.assert_allclose(start, model.equilibrium() * np.geomspace(3, 1 / 3, 3), rtol=1e-15)
    np.testing.assert_array_equal(ds.sigma.isel(time=0).values, np.tile(start, (2, 1)))
