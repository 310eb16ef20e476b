"""Figures fit to print: shares on 0–100 %, no text below 8 pt at a dashboard's size, no empty
axes, time axes that say "update", a lone check drawn as points, legends naming only what is
drawn, and no page text in a PNG. Checked on the figures' matplotlib objects."""
import numpy as np
import pytest
from matplotlib.colorbar import Colorbar
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Text

from analysis import canvas, figures
from analysis.compare import figure_compare
from analysis.read import load
from analysis.synthetic import write_run

SMALL = dict(n_iter=200, check_freq=20, n_hidden=8, min_length=20, max_length=40, batch=4)
MIN_PT = 8.0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("print")
    return {
        "rnn": load(write_run(d / "rnn.h5", cell="rnn", alpha=2.0, **SMALL)),
        "gru": load(write_run(d / "gru.h5", cell="gru", seed=1, **SMALL)),
        "lstm": load(write_run(d / "lstm.h5", cell="lstm", n_layers=2, seed=2, **SMALL)),
        # one check only: at update 20 of a run stopped there
        "one": load(write_run(d / "one.h5", cell="gru", seed=3, **{**SMALL, "n_iter": 20})),
    }


def all_figures(snap):
    out = {"dashboard": figures.figure_dashboard(snap)}
    for name, fn in figures.FIGURE_FUNCTIONS.items():
        fig = fn(snap)
        if fig is not None:
            out[name] = fig
    return out


@pytest.fixture(scope="module")
def figures_of(runs):
    """`figures_of(cell)`: all_figures of that run, drawn once for the tests that read them (laid out
    by the first that needs a layout; a layout changes no artist, label or limit)."""
    cache = {}

    def get(cell):
        if cell not in cache:
            cache[cell] = all_figures(runs[cell])
        return cache[cell]
    return get


def texts(fig):
    """Every visible, non-empty text of `fig` after its layout."""
    canvas.freeze(fig)
    fig.canvas.draw()
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def main_axes(fig):
    """The axes of the data, without colour bars and twins that only carry a second scale."""
    bars = {cb.ax for ax in fig.axes for cb in [getattr(ax, "_colorbar", None)] if isinstance(cb, Colorbar)}
    return [ax for ax in fig.axes if ax not in bars and ax.get_label() != "<colorbar>"]


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm", "one"])
def test_dashboard_text_is_at_least_8_points_at_print_width(figures_of, cell):
    fig = figures_of(cell)["dashboard"]
    assert fig.get_size_inches()[0] <= canvas.PAGE_W + 1e-9           # printed at its own size
    small = {(t.get_text()[:30], t.get_fontsize()) for t in texts(fig) if t.get_fontsize() < MIN_PT}
    assert not small


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm", "one"])
def test_no_axes_without_artists(figures_of, cell):
    for name, fig in figures_of(cell).items():
        for ax in main_axes(fig):
            drawn = ax.lines + ax.patches + ax.collections + ax.images + ax.texts
            assert drawn, (name, ax.get_title())


def _share_axes(fig):
    return [ax for ax in main_axes(fig)
            if "%" in ax.get_ylabel() or "share" in ax.get_ylabel()]


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm", "one"])
def test_share_and_accuracy_axes_stay_within_0_and_100(figures_of, cell):
    for name, fig in figures_of(cell).items():
        canvas.freeze(fig)
        for ax in _share_axes(fig):
            lo, hi = ax.get_ylim()
            assert 0 <= lo and hi <= 100, (name, ax.get_ylabel(), lo, hi)


def test_histogram_axes_never_above_100_even_with_one_full_bin(runs):
    """The final-state histogram of a run with its mass in one bin: the bar is 100 % high."""
    s = load(runs["gru"].path)
    counts = np.zeros_like(s.hists["log10_grad"][-1])
    counts[len(counts) // 2] = 1000
    s.hists["log10_grad"][-1] = counts
    fig = figures.figure(s, "grad_hist")
    hist = [ax for ax in fig.axes if ax.get_title().endswith("at the end")][0]
    assert hist.get_ylim() == (0, 100)


@pytest.mark.parametrize("cell", ["rnn", "one"])
def test_time_axes_say_update(figures_of, cell):
    labels = {ax.get_xlabel() for fig in figures_of(cell).values() for ax in fig.axes}
    assert "update" in labels
    assert not [l for l in labels if "iteration" in l or "SGD" in l]


def test_a_run_with_one_check_draws_points_on_a_plain_axis(runs, figures_of):
    s = runs["one"]
    assert len(s.check_x) == 1
    fig = figures_of("one")["dashboard"]
    canvas.freeze(fig)
    for ax in main_axes(fig):
        for line in ax.lines:
            x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
            if len(x) == len(y) and np.sum(np.isfinite(x) & np.isfinite(y)) == 1:
                assert line.get_marker() not in (None, "None", "", " "), (ax.get_title(), line.get_label())
        if ax.get_xlabel() == "update":
            lo, hi = ax.get_xlim()
            assert lo <= 0 and hi >= 20 and hi - lo >= 1, (ax.get_title(), lo, hi)


def _legend_handles(fig):
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + list(fig.legends)
    for legend in legends:
        assert isinstance(legend, Legend)
        yield from zip(legend.legend_handles, (t.get_text() for t in legend.get_texts()))


def _draws_something(handle):
    if isinstance(handle, Line2D):
        return handle.get_linestyle() not in ("None", "", " ") or handle.get_marker() not in (None, "None", "", " ")
    if isinstance(handle, Patch):
        return handle.get_facecolor()[3] > 0 or handle.get_linewidth() > 0 and handle.get_edgecolor()[3] > 0
    return True


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm", "one"])
def test_legend_entries_are_drawn_artists(figures_of, cell):
    for name, fig in figures_of(cell).items():
        for handle, label in _legend_handles(fig):
            assert _draws_something(handle), (name, label)


def test_compare_legend_names_only_what_is_drawn_and_runs_differ_by_marker(runs):
    fig = figure_compare([runs["rnn"], runs["gru"]])
    for handle, label in _legend_handles(fig):
        assert _draws_something(handle), label
    run_handles = fig.legends[0].legend_handles
    assert len({h.get_marker() for h in run_handles}) == 2          # not told apart by colour alone
    plain = runs["rnn"], load(write_run(runs["rnn"].path.replace("rnn.h5", "noclip.h5"), clip="none", **SMALL))
    labels = [t.get_text() for ax in figure_compare(list(plain)).axes if ax.get_legend()
              for t in ax.get_legend().get_texts()]
    assert "cutoff c (run colour)" in labels      # one of the two runs clips
    none = figure_compare([plain[1]])
    assert "cutoff c (run colour)" not in [t.get_text() for ax in none.axes if ax.get_legend()
                                           for t in ax.get_legend().get_texts()]


def test_overlapping_gate_curves_differ_in_style(runs):
    fig = figures.figure(runs["lstm"], "gates")
    for ax in main_axes(fig):
        styles = {(l.get_linestyle(), l.get_marker()) for l in ax.lines if not l.get_label().startswith("_")}
        artists = [l for l in ax.lines if not l.get_label().startswith("_")]
        assert len(styles) == len(artists), ax.get_title()


def test_png_of_a_dashboard_holds_no_page_text(runs, tmp_path):
    fig = figures.figure_dashboard(runs["gru"])
    canvas.save(fig, tmp_path / "d.png", dpi=30)
    assert not [t.get_text() for t in texts(fig) if t.get_text().startswith("page ")]


def test_report_pdf_pages_keep_their_page_text(runs, tmp_path):
    from analysis.report import write_report
    pdf, _, _ = write_report([runs["rnn"], runs["gru"]], str(tmp_path / "r.pdf"))
    assert open(pdf, "rb").read(4) == b"%PDF"


def test_dashboard_pages_hold_every_panel_once_at_about_a_printed_page(tmp_path):
    from analysis.figures import PAGE_ROWS, dashboard_layout, dashboard_pages, figure_dashboard
    from analysis.read import load
    from analysis.synthetic import write_run
    s = load(write_run(tmp_path / "g.h5", cell="gru"))
    pages = dashboard_pages(s)
    assert len(pages) == -(-len(dashboard_layout(s)) // PAGE_ROWS) > 1
    titles = sorted(a.get_title() for f in pages for a in f.get_axes() if a.get_title())
    assert titles == sorted(a.get_title() for a in figure_dashboard(s).get_axes() if a.get_title())   # none lost
    assert all(f.get_size_inches()[1] <= 9.0 + 1e-9 for f in pages)
    assert "page 1 of" in pages[0].get_suptitle()
