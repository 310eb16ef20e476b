"""A multi-page PDF report over many runs, with the summary table also as CSV and Markdown.

Pages, in order (`report_plan` lists them):
  1. the summary table, ROWS_PER_PAGE runs a page;
  2. each run's dashboard, cut into pages of figures.PAGE_ROWS panel rows;
  3. one comparison page per task that has at least two runs;
  4. for language-model runs (task "text"): the experiment table (perplexity, bpc, a sample).
"""
import math
import os
import textwrap

import numpy as np
import pandas as pd

from . import stats, verdicts as V
from .compare import figure_compare, group_by_task
from .canvas import PAGE_H, PAGE_W, config_parts, freeze, new_figure
from .figures import PAGE_ROWS, figure_dashboard, n_dashboard_pages
from .stats import fmt_num, fmt_pct

ROWS_PER_PAGE = 14                    # at most this many runs in one table page
PAGE = (PAGE_W, PAGE_H)               # A4 landscape, inches
TABLE_FONT = 8.0                      # points
LINE_H = 0.022                        # height of one text line in a table cell, axes fraction
CELL_PAD = 0.012                      # extra height per table row, axes fraction
TABLE_BUDGET = 0.9                    # share of the page's table axes the rows may fill
SUMMARY_WRAP = {"verdicts": 46, "run": 18, "clipping": 12}
LM_WRAP = {"config": 44, "sample (last check)": 36}
SAMPLE_CHARS = 60

#: short tags for the verdict column of the PDF table (the CSV has the full sentences)
TAGS = {"vanishing": "vanishing", "growing": "large g_t", "exploding": "exploding",
        "nonfinite": "non-finite", "clipped": "clipped", "saturated": "saturated h",
        "stalled": "stalled", "failed": "FAILED", "solved": "solved", "running": "running",
        "interrupted": "interrupted", "stopped": "stopped"}


def _tag(v):
    if v.kind in ("rho", "decay_rate"):
        return None
    if v.kind.startswith("gate_"):
        return f"saturated {v.kind[5:]}"
    if v.kind.startswith("vanishing_l"):
        return f"vanishing (layer {v.kind[11:]})"
    if v.kind == "clipped":
        return f"clipped {fmt_pct(v.value)}"
    if v.kind == "vanishing":
        return f"vanishing {fmt_pct(v.value)}"
    return TAGS.get(v.kind, v.kind)


def summary_table(snaps):
    """One row per run with the raw numbers (shares as 0..1, errors in percent)."""
    rows = []
    for s in snaps:
        sm = stats.summary(s)
        vs = V.verdicts(s)
        clip = s.cfg("clip", "clipstyle", "clipping")
        cutoff = s.cfg("cutoff", "clip_cutoff")
        rows.append({
            "name": s.name, "path": s.path, "status": s.status, "task": s.task, "cell": s.cell,
            "clipping": "none" if clip in (None, "", "none") else str(clip),
            "cutoff": float(cutoff) if cutoff is not None and clip not in (None, "", "none") else math.nan,
            "alpha": float(s.cfg("alpha", default=math.nan)),
            "iterations": sm["iterations"],
            "final_valid_error": sm["final_valid_error"],
            "best_valid_error": sm["best_valid_error"],
            "final_valid_loss": sm["final_valid_loss"],
            "max_grad_norm": sm["max_grad_norm"],
            "median_grad_norm": sm["median_grad_norm"],
            "share_clipped": sm["share_clipped"],
            "n_nonfinite": sm["n_nonfinite"],
            "rho_start": sm["rho_start"],
            "rho_end": sm["rho_end"],
            "wall_time": sm["wall_time"],
            "accuracy": stats.last_finite(s.check.get("accuracy")),     # classification runs
            "macro_f1": stats.last_finite(s.check.get("macro_f1")),
            "verdicts": "; ".join(v.text for v in vs),
            "_tags": ", ".join(t for t in (_tag(v) for v in vs) if t),
        })
    return pd.DataFrame(rows)


def display_table(df):
    """The summary table as strings for the PDF page and the Markdown file."""
    def clipping(r):
        if r["clipping"] == "none":
            return "none"
        return f"{r['clipping']} c={fmt_num(r['cutoff'])}" if math.isfinite(r["cutoff"]) else r["clipping"]

    out = pd.DataFrame({
        "run": df["name"],
        "task": df["task"],
        "cell": df["cell"],
        "clipping": [clipping(r) for _, r in df.iterrows()],
        "Ω α": [fmt_num(a) if math.isfinite(a) else "n/a" for a in df["alpha"]],
        "iterations": [str(int(i)) for i in df["iterations"]],
        "valid error (%)": [fmt_num(e) for e in df["final_valid_error"]],
        "grad norm max / median": [f"{fmt_num(a, 2)} / {fmt_num(b, 2)}"
                                   for a, b in zip(df["max_grad_norm"], df["median_grad_norm"])],
        "clipped": [fmt_pct(c) for c in df["share_clipped"]],
        "ρ start → end": [f"{fmt_num(a)} → {fmt_num(b)}" for a, b in zip(df["rho_start"], df["rho_end"])],
        "verdicts": df["_tags"] if "_tags" in df else df["verdicts"],
    })
    if "accuracy" in df and np.isfinite(df["accuracy"]).any():   # classification runs among them
        at = out.columns.get_loc("valid error (%)") + 1
        out.insert(at, "accuracy (%)", [fmt_num(a) if math.isfinite(a) else "n/a" for a in df["accuracy"]])
        out.insert(at + 1, "macro-F1 (%)", [fmt_num(a) if math.isfinite(a) else "n/a" for a in df["macro_f1"]])
    return out


def lm_table(snaps):
    """Language-model runs: config → validation perplexity, bpc, speed, a sample snippet."""
    rows = []
    for s in snaps:
        if s.task != "text":
            continue
        sm = stats.summary(s)
        sample = ""
        if s.samples is not None and s.samples.size:
            last = [x for x in s.samples[-1] if isinstance(x, str) and x]
            if last:
                sample = " ".join(last[0].split())
                sample = sample if len(sample) <= SAMPLE_CHARS else sample[:SAMPLE_CHARS - 1] + "…"
        p = config_parts(s)
        rows.append({
            "run": s.name,
            "config": " · ".join(v for k, v in p.items() if k != "task"),
            "iterations": sm["iterations"],
            "valid ppl": sm["valid_ppl"],
            "valid bpc": sm["valid_bpc"],
            "chars/s": sm["chars_per_sec"],
            "sample (last check)": sample,
        })
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------ drawing

def _wrap_cells(values, width):
    return ["\n".join(textwrap.wrap(str(v), width, break_on_hyphens=False)) or "" for v in values]


def _wrapped(df, wrap):
    cells = df.copy()
    for col, width in wrap.items():
        if col in cells:
            cells[col] = _wrap_cells(cells[col], width)
    return cells.astype(str)


def _row_lines(cells):
    return [max(v.count("\n") + 1 for v in row) for row in cells.values.tolist()]


def table_pages(df, wrap):
    """[(start, stop)] row slices of `df`, one per page: at most ROWS_PER_PAGE rows and no more
    wrapped lines than fit on the page."""
    lines = _row_lines(_wrapped(df, wrap))
    pages, start, used = [], 0, LINE_H * 2 + CELL_PAD
    for i, n in enumerate(lines):
        h = CELL_PAD + LINE_H * n
        if i > start and (used + h > TABLE_BUDGET or i - start >= ROWS_PER_PAGE):
            pages.append((start, i))
            start, used = i, LINE_H * 2 + CELL_PAD
        used += h
    if len(lines):
        pages.append((start, len(lines)))
    return pages


def _table_page(title, df, wrap, footnote=None):
    """A page with `df` as a table; `wrap` {column: characters} wraps long cells."""
    fig = new_figure(*PAGE)
    ax = fig.add_subplot()
    ax.axis("off")
    cells = _wrapped(df, wrap)
    text = cells.values.tolist()
    lines = _row_lines(cells)
    headers = [textwrap.fill(c, 14) for c in df.columns]
    table = ax.table(cellText=text, colLabels=headers, loc="upper center", cellLoc="left",
                     colLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(TABLE_FONT)
    table.auto_set_column_width(list(range(len(df.columns))))
    header_lines = max(h.count("\n") + 1 for h in headers)
    for (r, c), cell in table.get_celld().items():
        n = header_lines if r == 0 else lines[r - 1]
        cell.set_height(CELL_PAD + LINE_H * n)
        if r == 0:
            cell.set_text_props(fontweight="bold")
            cell.set_facecolor("#e8e8e8")
    fig.suptitle(title, fontsize="large")
    if footnote:
        fig.text(0.01, 0.01, footnote, fontsize=8, va="bottom", ha="left", wrap=True)
    return fig


def _verdict_key():
    return ("verdicts: vanishing = at least {:.0%} of the final log10 g_t mass below {:g}; "
            "exploding = max gradient norm ≥ {:g} × median; saturated = at least {:.0%} of "
            "activations with d < {:g}; large g_t = at least {:.0%} of log10 g_t mass above {:g}; "
            "stalled = valid loss within {:.0%} of chance. Full sentences in the CSV and the "
            "dashboards.").format(V.VANISHING_MIN_SHARE, V.VANISHING_LOG10, V.EXPLODING_NORM_RATIO,
                                  V.SATURATED_MIN_SHARE, V.SATURATION_D, V.GROWING_MIN_SHARE,
                                  V.GROWING_LOG10, V.STALL_REL_TOL)


def report_plan(snaps):
    """[(kind, payload)] for every page of the PDF, in order."""
    shown = display_table(summary_table(snaps))
    pages = [("summary", ab) for ab in table_pages(shown, SUMMARY_WRAP)]
    pages += [("dashboard", (s, k)) for s in snaps for k in range(n_dashboard_pages(s))]
    for task, group in group_by_task(snaps).items():
        if len(group) >= 2:
            pages.append(("compare", (task, group)))
    lm = [s for s in snaps if s.task == "text"]
    if lm:
        for a, b in table_pages(_format_lm(lm_table(lm)), LM_WRAP):
            pages.append(("lm", lm[a:b]))
    return pages


def write_report(snaps, pdf_path):
    """Write the PDF, and `<stem>.csv` and `<stem>.md` beside it; return the three paths."""
    from matplotlib.backends.backend_pdf import PdfPages
    stem = os.path.splitext(pdf_path)[0]
    csv_path, md_path = stem + ".csv", stem + ".md"
    df = summary_table(snaps)
    shown = display_table(df)
    plan = report_plan(snaps)
    n_pages = len(plan)
    with PdfPages(pdf_path, metadata={"Title": "dynamics report", "Creator": "dynamics"}) as pdf:
        for page, (kind, payload) in enumerate(plan, 1):
            if kind == "summary":
                a, b = payload
                part = f" (runs {a + 1}–{b} of {len(snaps)})" if (a, b) != (0, len(snaps)) else ""
                fig = _table_page(f"Summary of {len(snaps)} run{'s' if len(snaps) != 1 else ''}{part}",
                                  shown.iloc[a:b], SUMMARY_WRAP, footnote=_verdict_key())
            elif kind == "dashboard":
                s, k = payload
                fig = figure_dashboard(s, rows=(k * PAGE_ROWS, (k + 1) * PAGE_ROWS))
            elif kind == "compare":
                task, group = payload
                fig = figure_compare(group, title=f"Task {task}: {len(group)} runs compared")
            else:
                fig = _table_page("Language-model runs: validation perplexity and bits per character",
                                  _format_lm(lm_table(payload)), LM_WRAP)
            if fig is None:
                fig = new_figure(*PAGE)
                fig.text(0.5, 0.5, f"{kind}: no data", ha="center")
            # the PDF's page only: a PNG of the same figure is never written from here
            fig.text(0.995, 0.003, f"page {page} of {n_pages}", ha="right", va="bottom", fontsize=8)
            pdf.savefig(freeze(fig))
    df.drop(columns=["_tags"]).to_csv(csv_path, index=False)
    with open(md_path, "w", encoding="utf-8") as fh:
        fh.write(markdown(snaps, df))
    return pdf_path, csv_path, md_path


def _format_lm(df):
    out = df.copy()
    for col in ("valid ppl", "valid bpc"):
        out[col] = [f"{v:.4g}" if math.isfinite(v) else "n/a" for v in df[col]]
    out["chars/s"] = [f"{v:,.0f}" if math.isfinite(v) else "n/a" for v in df["chars/s"]]
    return out


def _md_table(df):
    def cell(v):
        return str(v).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(cell(c) for c in df.columns) + " |",
             "| " + " | ".join("---" for _ in df.columns) + " |"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.values.tolist()]
    return "\n".join(lines)


def markdown(snaps, df=None):
    df = summary_table(snaps) if df is None else df
    parts = [f"# Report: {len(snaps)} run{'s' if len(snaps) != 1 else ''}", "",
             _md_table(display_table(df).drop(columns=["verdicts"])), "", "## Verdicts", ""]
    for s, text in zip(snaps, df["verdicts"]):
        parts.append(f"- **{s.name}** ({config_parts(s) and ' · '.join(config_parts(s).values())}): "
                     + (text or "none"))
    lm = lm_table(snaps)
    if len(lm):
        parts += ["", "## Language-model runs", "", _md_table(_format_lm(lm))]
    return "\n".join(parts) + "\n"
