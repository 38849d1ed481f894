"""Figures: no backend switch, no pyplot state, vector output, series apart without colour,
and `dlnsim plot` redrawing every saved dataset from the file alone."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap

import matplotlib.image
import numpy as np
import pytest
import xarray as xr
from matplotlib.figure import Figure

from dlnsim.analysis.cli import main
from dlnsim.analysis.plots import (
    SERIES_STYLES,
    check_formats,
    dataset_figures,
    relaxation_figure,
    repulsion_figure,
    save_figure,
)
from dlnsim.analysis.relaxation import relaxation_runs
from dlnsim.particles import Model, Schatten
from dlnsim.particles.datasets import load


def _repulsion_dataset(n_systems: int = 8, seed: int = 0) -> xr.Dataset:
    """A dataset with the layout of ``repulsion_comparison`` (the figure needs no more)."""
    rng = np.random.default_rng(seed)
    sp = rng.exponential(size=(n_systems, 300))
    ra = rng.uniform(size=(n_systems, 298))
    return xr.Dataset(
        {
            "spacings": (("system", "spacing"), sp),
            "ratios": (("system", "ratio"), ra),
            "gamma": ("system", rng.uniform(0, 2, n_systems)),
            "mean_ratio": ("system", rng.uniform(0.3, 0.6, n_systems)),
        },
        coords={"system": [f"system {k}" for k in range(n_systems)]},
        attrs={"kind": "repulsion"},
    )


def _series_keys(ax) -> dict[int, set[tuple]]:
    """Per series (lines tagged ``gid='series:k'``): the set of (linestyle, marker) drawn."""
    keys: dict[int, set[tuple]] = {}
    for line in ax.get_lines():
        gid = line.get_gid() or ""
        if gid.startswith("series:"):
            k = int(gid.split(":")[1])
            keys.setdefault(k, set()).add((line.get_linestyle(), line.get_marker()))
    return keys


def test_series_styles_are_pairwise_distinct():
    assert len(set(SERIES_STYLES)) == len(SERIES_STYLES) >= 8
    # every style is visible without colour: a line style and a real marker
    assert all(ls not in ("", "None", " ") and m not in ("", "None") for ls, m in SERIES_STYLES)


def test_repulsion_figure_series_distinguishable_without_colour():
    """The 8 systems of the repulsion figure have pairwise distinct (line style, marker) in
    each of the 3 panels (catches: one style for all, or styles cycling with period < 8)."""
    fig = repulsion_figure(_repulsion_dataset(8))
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3
    for ax in fig.axes:
        keys = _series_keys(ax)
        assert sorted(keys) == list(range(8)), ax.get_xlabel()
        styles = [next(iter(v)) for v in keys.values()]
        assert all(len(v) == 1 for v in keys.values())
        for a, b in itertools.combinations(styles, 2):
            assert a != b


def test_figures_leave_no_pyplot_state():
    """Drawing registers nothing with pyplot: no figure to close, nothing in a notebook."""
    import matplotlib.pyplot as plt

    plt.close("all")
    model = Model(2, 10, 5.0, Schatten(2))
    figs = [
        repulsion_figure(_repulsion_dataset(3)),
        relaxation_figure(relaxation_runs(model), model),
    ]
    assert all(isinstance(f, Figure) for f in figs)
    assert plt.get_fignums() == []


def test_import_and_drawing_do_not_touch_the_backend(tmp_path):
    """Importing dlnsim.analysis.plots and drawing keep the user's backend (here svg, as a
    notebook would keep its inline backend) and do not import pyplot."""
    code = textwrap.dedent(
        """
        import sys
        import matplotlib
        before = matplotlib.get_backend()
        import dlnsim.analysis.plots as plots
        import dlnsim.analysis.pipeline, dlnsim.analysis
        from dlnsim.particles import Model, Schatten
        from dlnsim.analysis.relaxation import relaxation_runs
        m = Model(2, 10, 5.0, Schatten(2))
        plots.relaxation_figure(relaxation_runs(m), m).savefig("r.png")
        assert "matplotlib.pyplot" not in sys.modules, "the library imported pyplot"
        after = matplotlib.get_backend()
        assert before == after == "svg", (before, after)
        print("ok")
        """
    )
    env = {**os.environ, "MPLBACKEND": "svg"}
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "ok"


def test_save_figure_writes_png_and_pdf(tmp_path):
    fig = repulsion_figure(_repulsion_dataset(2))
    paths = save_figure(fig, tmp_path / "sub" / "rep.png", "png,pdf")
    assert [p.name for p in paths] == ["rep.png", "rep.pdf"]
    assert (tmp_path / "sub" / "rep.pdf").read_bytes()[:5] == b"%PDF-"
    assert (tmp_path / "sub" / "rep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("bad", ["", ",", "png,jpgx", ["png", 3], 7, ["docx"]], ids=repr)
def test_check_formats_rejects_bad_lists(bad):
    with pytest.raises(ValueError, match=r"^bad format="):
        check_formats(bad)


def test_check_formats_normalizes():
    assert check_formats(" PNG, .pdf,png ") == ("png", "pdf")
    assert check_formats(["svg"]) == ("svg",)


def test_dataset_figures_unknown_kind():
    with pytest.raises(ValueError, match=r"^bad kind='nope'"):
        dataset_figures(xr.Dataset(attrs={"kind": "nope"}))
    with pytest.raises(ValueError, match=r"^bad kind=None"):
        dataset_figures(xr.Dataset())


# ------------------------------------------------------------------ the CLI, end to end
SMALL_CONFIG = """
[[experiment]]
kind = "flow"
width = 3
members = 3
t_end = 5.0
n_times = 21

[[experiment]]
kind = "ensemble"
members = 8
t_end = 0.5
n_times = 11
temperatures = [0.2]
scheduler = "serial"

[[experiment]]
kind = "repulsion"
rows = 50
systems = [{kind = "chamber", width = 8, depth = 4, beta = 1.0}, {kind = "poisson", width = 8}]

[[experiment]]
kind = "depth"
depths = [16, 32, "inf"]
members = 0
n_times = 11
tau_end = 1.0

[[experiment]]
kind = "meanfield"
widths = [4, 8]
n_samples = 64
cells = 32
times = [0.0, 0.1]
moment_widths = [4, 8, 16]
moment_members = 8
"""

# dataset -> the figures `dlnsim plot` must draw from it
EXPECTED = {
    "flow.nc": ["flow_trajectories", "flow_relaxation"],
    "ensemble.zarr": ["ensemble_trajectories"],
    "ensemble_temperatures.nc": ["ensemble_temperatures_temperature"],
    "repulsion.nc": ["repulsion"],
    "depth.nc": ["depth_trajectories", "depth_convergence"],
    "meanfield.nc": ["meanfield_densities"],
    "meanfield_moments.nc": ["meanfield_moments"],
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("saved")
    config = folder / "small.toml"
    config.write_text(SMALL_CONFIG)
    assert main(["run", str(config), "--out", str(folder / "out"), "--format", "png,pdf"]) == 0
    return folder / "out"


def _non_trivial_png(path) -> None:
    assert path.stat().st_size > 10_000, path
    img = matplotlib.image.imread(path)
    # a drawn figure: many distinct colours, not a blank canvas
    colours = np.unique(img.reshape(-1, img.shape[-1]).round(3), axis=0)
    assert len(colours) > 50, path


def test_run_writes_pdf_beside_every_png(saved):
    pngs = sorted(saved.glob("*.png"))
    assert [p.stem for p in pngs] == [
        "depth_convergence",
        "depth_trajectories",
        "ensemble_temperature",
        "ensemble_trajectories",
        "flow_relaxation",
        "meanfield_densities",
        "meanfield_moments",
        "repulsion",
    ]
    for png in pngs:
        pdf = png.with_suffix(".pdf")
        assert pdf.read_bytes()[:5] == b"%PDF-", pdf


def test_ensemble_store_keeps_flow_and_sigma_star(saved):
    ds = load(saved / "ensemble.zarr")
    s_star = Model(4, 10, 5.0, Schatten(2)).equilibrium()
    assert ds.attrs["sigma_star"] == pytest.approx(s_star, rel=1e-15)
    assert ds.attrs["kind"] == "langevin_ensemble" and ds.attrs["seed"] == "0"
    assert ds.flow_sigma.dims == ("time", "particle")
    # the stored flow starts where every member starts
    np.testing.assert_allclose(ds.flow_sigma.values[0], ds.sigma.values[0, 0], rtol=1e-15)


@pytest.mark.parametrize("dataset", list(EXPECTED))
def test_plot_redraws_every_saved_dataset(saved, tmp_path, dataset, capsys):
    # vector output is checked for every figure by test_run_writes_pdf_beside_every_png;
    # here one kind writes it too, the others PNG only (PDF of histograms is slow to write)
    formats = ("png", "pdf") if dataset == "ensemble.zarr" else ("png",)
    argv = ["plot", str(saved / dataset), "--out", str(tmp_path), "--format", ",".join(formats)]
    assert main(argv) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(f"{n}.{ext}" for n in EXPECTED[dataset] for ext in formats)
    for name in EXPECTED[dataset]:
        _non_trivial_png(tmp_path / f"{name}.png")
    if "pdf" in formats:
        assert (tmp_path / "ensemble_trajectories.pdf").read_bytes()[:5] == b"%PDF-"
    assert "wrote" in capsys.readouterr().err


def test_plot_default_folder_is_the_datasets(saved, tmp_path):
    target = tmp_path / "rep.nc"
    target.write_bytes((saved / "repulsion.nc").read_bytes())
    assert main(["plot", str(target)]) == 0
    assert (tmp_path / "rep.png").exists() and not (tmp_path / "rep.pdf").exists()


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda d: d / "missing.nc", "bad path="),
        (lambda d: d / "notes.txt", "bad path="),
        (lambda d: (d / "junk.nc").write_text("not netcdf") and d / "junk.nc", "bad path="),
        (
            lambda d: (
                xr.Dataset(attrs={"kind": "other"}).to_netcdf(d / "o.nc", engine="h5netcdf")
                or d / "o.nc"
            ),
            "bad kind=",
        ),
    ],
    ids=["missing", "suffix", "not-a-dataset", "unknown-kind"],
)
def test_plot_bad_input_one_line_exit_2(tmp_path, capsys, make, pattern):
    path = make(tmp_path)
    assert main(["plot", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and pattern in err and "Traceback" not in err, err


def test_format_option_validated_by_every_figure_command(capsys):
    for argv in (
        ["plot", "x.nc", "--format", "png,docx"],
        ["run", "--format", ""],
        ["phase-portrait", "--format", "nope"],
        ["repulsion", "--format", "png;pdf"],
        ["depth", "--format", "png," + "bmpx"],
        ["meanfield", "--format", "gif9"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "format" in err, (argv, err)


def test_phase_portrait_command_writes_pdf(tmp_path):
    out = tmp_path / "pp.png"
    assert main(["phase-portrait", "--out", str(out), "--format", "png,pdf"]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "pp.pdf").read_bytes()[:5] == b"%PDF-"
