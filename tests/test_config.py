"""Configs and experiment subcommands: every key checked before anything runs or is written.

Each rejected input must give exit status 2, one stderr line ``dlnsim: error: bad <name>=...``
naming the parameter, and leave no file behind (issue 12 item 10, issue 17 items 3-5).  The
property-based tests feed random TOML values (hypothesis, a fixed derandomized budget) to
``dlnsim run`` in-process: an uncaught exception fails them directly.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dlnsim.analysis.cli import main
from dlnsim.analysis.config import MAX_STEPS, SCHEMAS, check_name
from dlnsim.analysis.pipeline import EXPERIMENTS, load_config, run_experiments
from dlnsim.particles.datasets import load

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- helpers


def toml_value(v) -> str:
    """A Python value as a TOML value (inline arrays and tables, quoted keys)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return (
            "{" + ", ".join(f"{toml_value(str(k))} = {toml_value(x)}" for k, x in v.items()) + "}"
        )
    raise TypeError(v)


def config_text(experiments: list[dict], out=None) -> str:
    lines = [] if out is None else [f"out = {toml_value(out)}"]
    for exp in experiments:
        lines.append("[[experiment]]")
        lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in exp.items()]
    return "\n".join(lines) + "\n"


def run_cli(argv, capsys) -> tuple[int, list[str], str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines(), captured.out


def assert_rejected(code, err, name):
    """Exit 2, one line naming ``name`` (or one of its items: ``systems[0].width``)."""
    assert code == 2, err
    assert len(err) == 1 and re.match(rf"dlnsim: error: bad {re.escape(name)}[=\[.]", err[0]), err


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def reject(cwd, capsys, experiments, name, out=None, raw: bytes | None = None):
    """Write a config, run it, expect exit 2 naming ``name`` and nothing written."""
    cfg = cwd / "c.toml"
    if raw is None:
        cfg.write_text(config_text(experiments, out), encoding="utf-8")
    else:
        cfg.write_bytes(raw)
    code, err, _ = run_cli(["run", str(cfg), "--out", "o"], capsys)
    assert_rejected(code, err, name)
    assert files_under(cwd) == ["c.toml"], "a rejected config left files behind"
    return err[0]


# ---------------------------------------------------------------- the failures of the issues

# each: (experiments, bad name); none may run or write anything
ISSUE_CASES = [
    # issue 12 "what breaks" 6
    ([{"kind": "ensemble", "seed": "x"}], "seed"),
    ([{"kind": "ensemble", "temperatures": "abc"}], "temperatures"),
    # issue 17 item 3
    ([{"kind": "ensemble", "burn_in": 2.0}], "burn_in"),
    ([{"kind": "ensemble", "burn_in": -0.1}], "burn_in"),
    # issue 17 item 4: the second experiment's bad value, before the first one runs
    ([{"kind": "flow"}, {"kind": "meanfield", "dt": -1.0}], "dt"),
    ([{"kind": "flow"}, {"kind": "ensemble", "dt": -1.0}], "dt"),
    ([{"kind": "flow"}, {"kind": "repulsion", "dt": -1.0}], "dt"),
    # issue 17 item 5
    ([{"kind": "flow", "name": "../escaped"}], "name"),
    ([{"kind": "flow", "name": ""}], "name"),
    ([{"kind": "flow", "phase_portrait": "no"}], "phase_portrait"),
    ([{"kind": "flow", "phase_portrait": 0}], "phase_portrait"),
    # types, nested tables where scalars are expected, ranges, overflow
    ([{"kind": "flow", "width": {"a": 1}}], "width"),
    ([{"kind": "flow", "width": 2.0}], "width"),
    ([{"kind": "flow", "members": True}], "members"),
    ([{"kind": "flow", "t_end": "1"}], "t_end"),
    ([{"kind": "flow", "initial": [[1.0, True]]}], "initial"),
    ([{"kind": "flow", "initial": [[1.0, 0.5], [1.0]]}], "initial"),
    ([{"kind": "ensemble", "initial": [[1.0, 0.9, 0.8, 0.7]] * 3, "members": 4}], "initial"),
    ([{"kind": "ensemble", "dt": 5e-324}], "dt"),
    ([{"kind": "ensemble", "t_end": 1e308, "dt": 1e-3}], "dt"),
    ([{"kind": "ensemble", "members": 10**15}], "members"),
    ([{"kind": "ensemble", "scheduler": "foo"}], "scheduler"),
    ([{"kind": "ensemble", "temperatures": [0.1, -1.0]}], "temperatures"),
    ([{"kind": "meanfield", "widths": [32, 8]}], "widths"),
    ([{"kind": "meanfield", "n_samples": 100}], "n_samples"),
    ([{"kind": "meanfield", "b": 1e308}], "b"),
    ([{"kind": "meanfield", "depth": 1}], "depth"),
    ([{"kind": "meanfield", "depth": 10**12}], "depth"),  # issue 17: step-size underflow
    (
        [{"kind": "repulsion", "systems": [{"kind": "gbe", "width": 2, "b": 1.0}]}],
        "systems[0].width",
    ),
    ([{"kind": "repulsion", "systems": [{"kind": "dyson", "width": 8}]}], "systems[0]"),
    (
        [{"kind": "repulsion", "systems": [{"kind": "gbe", "width": 8, "b": 1.0, "x": 1}]}],
        "systems[0].x",
    ),
    ([{"kind": "repulsion", "systems": ["gbe"]}], "systems[0]"),
    ([{"kind": "repulsion", "dt": 1e-300}], "dt"),
    ([{"kind": "depth", "depths": [1, 2, "inf"]}], "depths"),
    ([{"kind": "depth", "beta": 1e308}], "beta"),  # issue 17.6: was "need two finite depths"
    ([{"kind": "flow", "beta": 1e308}], "beta"),
    ([{"kind": "ensemble", "p": 1e-300}], "p"),
    ([{"kind": "depth", "depths": [16, 32, 64]}], "depths"),
    ([{"kind": "depth", "depths": [16, 32, 32, "inf"]}], "depths"),
    ([{"kind": "depth", "width": 3, "initial": [1.0, 0.5, 0.2]}], "width"),
    ([{"kind": "depth", "initial": [[2.0, 1.37, 0.94, 0.64, 0.44, 0.3]]}], "initial"),
    # two experiments writing the same files
    ([{"kind": "flow"}, {"kind": "flow"}], "name"),
    # kinds and unknown keys
    ([{"kind": "nope"}], "kind"),
    ([{"kind": ["flow"]}], "kind"),
    ([{"kind": "flow", "widht": 2}], "widht"),
]


@pytest.mark.parametrize("experiments,name", ISSUE_CASES)
def test_issue_cases_rejected_before_anything_runs(cwd, capsys, experiments, name):
    reject(cwd, capsys, experiments, name)


def test_experiment_must_be_tables(cwd, capsys):
    """Issue 17 item 3: ``experiment = ["flow"]`` was an AttributeError traceback."""
    reject(cwd, capsys, [], "experiment", raw=b'experiment = ["flow"]\n')
    reject(cwd, capsys, [], "experiment", raw=b'[experiment]\nkind = "flow"\n')
    reject(cwd, capsys, [], "experiment", raw=b'out = "x"\n')
    reject(cwd, capsys, [], "out", raw=b'out = 3\n[[experiment]]\nkind = "flow"\n')
    reject(cwd, capsys, [], "out", raw=b'out = ""\n[[experiment]]\nkind = "flow"\n')
    reject(cwd, capsys, [], "color", raw=b'color = "red"\n[[experiment]]\nkind = "flow"\n')


def test_latin1_config_names_the_file_and_encoding(cwd, capsys):
    """Issue 17 item 5: a latin-1 file gave a decode error naming no parameter."""
    raw = '# réglage\n[[experiment]]\nkind = "flow"\nname = "é"\n'.encode("latin-1")
    line = reject(cwd, capsys, [], "config", raw=raw)
    assert "c.toml" in line and "UTF-8" in line and "0xe9" in line and "line 1" in line


def test_invalid_toml_names_the_file(cwd, capsys):
    line = reject(cwd, capsys, [], "config", raw=b"[[experiment]\nkind = \n")
    assert "not valid TOML" in line


def test_out_that_is_a_file_is_rejected_before_anything(cwd, capsys):
    (cwd / "o").write_text("a file")
    cfg = cwd / "c.toml"
    cfg.write_text(config_text([{"kind": "flow"}]))
    code, err, _ = run_cli(["run", str(cfg), "--out", "o"], capsys)
    assert_rejected(code, err, "--out")
    assert files_under(cwd) == ["c.toml", "o"] and (cwd / "o").read_text() == "a file"


def test_name_escaping_the_output_folder_writes_nothing_outside(tmp_path, monkeypatch, capsys):
    """``name = "../escaped"`` wrote outside ``--out``; now nothing is written anywhere."""
    work = tmp_path / "work"
    work.mkdir()
    reject(work, capsys, [{"kind": "flow", "name": "../escaped"}], "name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        ".hidden",
        "..",
        "a/b",
        "a\\b",
        "x/../y",
        "a..b",
        "-x",
        "with space",
        "x" * 101,
        "tab\t",
        3,
        None,
        ["a"],
    ],
)
def test_check_name_refuses_unsafe_names(bad):
    with pytest.raises(ValueError, match=r"^bad name="):
        check_name(bad)


@pytest.mark.parametrize("good", ["flow", "figure1", "N=inf", "run_2.b", "β5", "a-b+c"])
def test_check_name_accepts_safe_names(good):
    assert check_name(good) == good


# ---------------------------------------------------------------- every key of every kind


def _wrong_values(default):
    """Values of the wrong type for a key whose default is ``default`` (all must be refused)."""
    wrong = [{"nested": {"table": 1}}]
    if isinstance(default, bool):
        wrong += ["no", "true", 1, 0.0]
    elif isinstance(default, int):
        wrong += ["3", 2.5, True, [3], -(2**63), float("nan")]
    elif isinstance(default, float):
        wrong += ["1.0", True, float("nan"), float("inf"), -1.0, [1.0]]
    elif isinstance(default, str):
        wrong += [1, True, ["x"], ""]
    else:  # a list or None (a list-valued key)
        wrong += ["abc", 1, True, [{"a": 1}], [[["x"]]]]
    return wrong


KEY_CASES = [
    (kind, key, bad)
    for kind, schema in SCHEMAS.items()
    for key, param in schema.params.items()
    for bad in _wrong_values(param.default)
]


@pytest.mark.parametrize("kind,key,bad", KEY_CASES)
def test_every_key_refuses_wrong_values(cwd, capsys, kind, key, bad):
    """Every key of every kind is checked (and named): planted bug caught = a key whose check
    is dropped (its wrong value would pass or fail later, naming something else)."""
    reject(cwd, capsys, [{"kind": kind, key: bad}], key)


def test_every_key_is_in_the_readme_or_the_example():
    """The documented keys are the schema's (no key without a check, no check without a key)."""
    for kind, exp in EXPERIMENTS.items():
        assert exp.schema is SCHEMAS[kind]
        assert set(exp.defaults) == set(SCHEMAS[kind].params)
    readme = (ROOT / "README.md").read_text()
    for kind, schema in SCHEMAS.items():
        for key in schema.params:
            assert f"`{key}`" in readme or f"{key} =" in readme, (kind, key)


def test_defaults_and_example_config_are_valid(cwd, capsys):
    """The built-in experiments and the example config pass their own checks (``--check``)."""
    for argv in (["run", "--check"], ["run", "--check", str(ROOT / "examples/experiments.toml")]):
        code, err, out = run_cli(argv, capsys)
        assert code == 0 and "is valid" in out, err
    assert files_under(cwd) == []


def test_check_option_validates_without_running(cwd, capsys):
    cfg = cwd / "c.toml"
    cfg.write_text(config_text([{"kind": "flow", "name": "a"}, {"kind": "ensemble"}], out="res"))
    code, err, out = run_cli(["run", "--check", str(cfg)], capsys)
    assert code == 0, err
    assert "flow 'a', ensemble 'ensemble'" in out and "res/" in out
    assert files_under(cwd) == ["c.toml"]
    cfg.write_text(config_text([{"kind": "flow", "name": "a"}, {"kind": "ensemble", "dt": 0}]))
    code, err, _ = run_cli(["run", "--check", str(cfg)], capsys)
    assert_rejected(code, err, "dt")


@pytest.mark.smoke
def test_valid_tiny_config_runs_and_normalizes(cwd, capsys):
    """An accepted config runs with the checked values (``depth = "inf"``, an integer-valued
    float depth, ``burn_in = 0``)."""
    cfg = cwd / "c.toml"
    cfg.write_text(
        config_text(
            [
                {
                    "kind": "flow",
                    "name": "f",
                    "width": 3,
                    "depth": "inf",
                    "beta": 1.0,
                    "members": 2,
                    "t_end": 1.0,
                    "n_times": 3,
                    "phase_portrait": False,
                },
                {
                    "kind": "ensemble",
                    "name": "e",
                    "width": 2,
                    "depth": 4.0,
                    "members": 3,
                    "t_end": 0.05,
                    "dt": 0.01,
                    "n_times": 3,
                    "temperatures": [0.2],
                    "burn_in": 0.0,
                    "scheduler": "serial",
                },
            ]
        )
    )
    code, err, _ = run_cli(["run", str(cfg), "--out", "o"], capsys)
    assert code == 0, err
    flow = load(cwd / "o" / "f.nc")
    assert flow.attrs["depth"] == "inf" and flow.sigma.shape == (2, 3, 3)
    ens = load(cwd / "o" / "e.zarr")
    assert ens.attrs["depth"] == "4" and ens.sigma.shape == (3, 3, 2)
    assert ens.attrs["temperature"] == 0.2


def test_run_experiments_checks_before_creating_out(tmp_path):
    """The Python entry point keeps the promise too: nothing is created for a bad list."""
    out = tmp_path / "o"
    with pytest.raises(ValueError, match="^bad dt="):
        run_experiments([{"kind": "flow"}, {"kind": "meanfield", "dt": -1.0}], out)
    assert not out.exists()


def test_load_config_keeps_its_contract():
    experiments, out = load_config(ROOT / "examples" / "experiments.toml")
    assert out == "dlnsim-example-out" and [e["name"] for e in experiments] == [
        "figure1",
        "infinite_depth",
        "completion_full",
    ]


# ---------------------------------------------------------------- CLI subcommands (issue 17.4)


@pytest.mark.parametrize(
    "argv,name",
    [
        (["depth", "--depths", "1,2,inf"], "depths"),
        (["depth", "--depths", "16,32,64"], "depths"),
        (["depth", "--members", "-1"], "members"),
        (["depth", "--dt", "1e-320"], "dt"),
        (["depth", "--beta", "1e308"], "beta"),
        (["meanfield", "--dt", "-1"], "dt"),
        (["meanfield", "--depth", "1"], "depth"),
        (["meanfield", "--depth", "1000000000000"], "depth"),  # was a RuntimeError traceback
        (["meanfield", "--widths", "8"], "widths"),
        (["meanfield", "--times", "0,1,0.5"], "times"),
        (["meanfield", "--n-samples", "100"], "n_samples"),
        (["meanfield", "--name", "../x"], "name"),
        (["repulsion", "--rows", "10"], "rows"),
        (["repulsion", "--seed", "-1"], "seed"),
    ],
)
def test_subcommands_check_every_option_before_writing(cwd, capsys, argv, name):
    """Issue 17 item 4: ``depth --depths 1,2,inf`` computed 24 s, then failed leaving
    ``summary.txt``; ``meanfield --dt -1`` left ``summary.txt``.  Now: at once, nothing."""
    start = time.perf_counter()
    code, err, _ = run_cli([*argv, "--out", "o"], capsys)
    assert_rejected(code, err, name)
    assert time.perf_counter() - start < 10  # validation only: no computation started
    assert files_under(cwd) == []


def test_subcommand_options_come_from_the_schema():
    from dlnsim.analysis.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["meanfield", "--depth", "inf", "--widths", "8,16", "--dt", "0.01"])
    assert math.isinf(args.depth) and args.widths == [8, 16] and args.dt == 0.01
    args = parser.parse_args(["depth", "--depths", "16,32,inf"])
    assert args.depths == [16, 32, "inf"]


# ---------------------------------------------------------------- property-based tests

_SCALARS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, 2, 3, 4, 8, 50, -1, 2**63 - 1, 10**12]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 5e-324, 1e-320, 1e-300, 0.5, 1.0, 2.0, 1e300, 1e308]),
    st.text(max_size=12),
    st.sampled_from(["inf", "local", "serial", "..", "../x", "", "no", "a/b", ".h", "x", "é"]),
    st.booleans(),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(min_size=1, max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def configs(draw):
    """A config: 1-2 experiments of random kinds, each with a few keys set to random values
    (or their valid defaults), sometimes unknown keys, a random ``out``, non-UTF-8 bytes."""
    experiments = []
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from([*SCHEMAS, *SCHEMAS, "nope"]))
        params = SCHEMAS.get(kind, SCHEMAS["flow"]).params
        defaults = [p.default for p in params.values() if p.default is not None]
        table = draw(
            st.dictionaries(
                st.sampled_from([*params, "bogus"]),
                st.one_of(_VALUES, st.sampled_from(defaults)),
                max_size=3,
            )
        )
        experiments.append({"kind": kind, **table})
    out = draw(st.one_of(st.none(), st.just("res"), _SCALARS))
    raw = config_text(experiments, out).encode("utf-8")
    if draw(st.integers(0, 9)) == 0:  # a latin-1 byte somewhere
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + b"\xe9" + raw[at:]
    return raw


@contextlib.contextmanager
def scratch():
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        yield Path(tmp)


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(raw=configs())
def test_random_configs_check_exits_0_or_2_one_line_no_files(raw):
    """``dlnsim run --check`` on random TOML: 0, or 2 with one ``bad <name>=`` line; never an
    exception (a traceback) and never a file written."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    with scratch() as tmp:
        (tmp / "c.toml").write_bytes(raw)
        err, out = io.StringIO(), io.StringIO()
        with redirect_stderr(err), redirect_stdout(out):
            code = main(["run", "--check", "c.toml"])
        lines = err.getvalue().strip().splitlines()
        assert code in (0, 2)
        if code == 2:
            assert len(lines) == 1 and lines[0].startswith("dlnsim: error: bad "), lines
        else:
            assert lines == [] and "is valid" in out.getvalue()
        assert os.listdir(tmp) == ["c.toml"]
    event(f"exit {code}")


_TINY = {
    "flow": {"kind": "flow", "members": 1, "t_end": 0.5, "n_times": 3, "phase_portrait": False},
    "ensemble": {
        "kind": "ensemble",
        "width": 2,
        "members": 2,
        "t_end": 0.02,
        "dt": 0.01,
        "n_times": 3,
        "temperatures": [0.2],
        "scheduler": "serial",
    },
}
# keys about config handling (names, seeds, sizes, booleans, lists); the model's numerical
# edge cases (huge beta, tiny starts) are the library's and are covered by --check above
_MUTABLE = {
    "flow": ["name", "seed", "members", "n_times", "phase_portrait", "initial", "t_end"],
    "ensemble": ["name", "seed", "members", "burn_in", "temperatures", "chunk_size", "initial"],
}
_VALID = {  # values each mutable key accepts, drawn half of the time
    "name": ["ok_name", "x.1"],
    "seed": [0, 7],
    "members": [1, 3],
    "n_times": [2, 4],
    "phase_portrait": [True, False],
    "initial": [[0.5, 0.2], [[0.5, 0.2], [0.3, 0.1]]],
    "t_end": [0.3, 1.0],
    "burn_in": [0.0, 0.9],
    "temperatures": [[], [0.1, 0.0]],
    "chunk_size": [0, 1],
}
_SMALL = st.one_of(
    st.integers(-2, 3),
    st.sampled_from([0.0, 0.3, 1.0, -1.0, float("nan"), float("inf"), 2.0]),
    st.sampled_from(["", "..", "a/b", "ok_name", "no", "x"]),
    st.booleans(),
    st.sampled_from(
        [[], [0.3], [0.1, 0.0], [[0.5, 0.2]], [[0.5, 0.2], [0.4, 0.1]], ["a"], {"t": 1}]
    ),
)


@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(kind=st.sampled_from(["flow", "ensemble"]), data=st.data())
def test_random_tiny_configs_run_or_are_rejected_cleanly(kind, data):
    """The full ``dlnsim run`` on a tiny config with one or two keys mutated: exit 0 with its
    outputs, or exit 2 with one line and no file."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    keys = data.draw(st.lists(st.sampled_from(_MUTABLE[kind]), min_size=1, max_size=2))
    mutated = {k: data.draw(st.one_of(_SMALL, st.sampled_from(_VALID[k]))) for k in keys}
    with scratch() as tmp:
        (tmp / "c.toml").write_text(config_text([{**_TINY[kind], **mutated}]))
        err = io.StringIO()
        with redirect_stderr(err), redirect_stdout(io.StringIO()):
            code = main(["run", "c.toml", "--out", "o"])
        lines = err.getvalue().strip().splitlines()
        assert code in (0, 2), lines
        if code == 2:
            assert len(lines) == 1 and lines[0].startswith("dlnsim: error: bad "), lines
            assert os.listdir(tmp) == ["c.toml"]
        else:
            assert (tmp / "o" / "summary.txt").stat().st_size > 0
        event(f"exit {code}")


def test_max_steps_is_exact_in_float64():
    assert float(MAX_STEPS) == MAX_STEPS and float(MAX_STEPS + 1) == MAX_STEPS
