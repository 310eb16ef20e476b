"""The lab chapter as a PDF, with its tables as one CSV and the whole chapter as Markdown.

`dynamics report runs/lab-quick/ -o report/lab.pdf` writes report/lab.pdf, report/lab.csv,
report/lab.md and the pages as PNGs under report/lab_figures/ (the Markdown shows them). Pages:
the answers on one page; per question 1–6 its answer above its figure, then its table; for 7 the
comparison paragraphs and the table of the presets, then each preset's dashboard.
"""
import math
import os
import textwrap

import numpy as np
import pandas as pd

from . import lab
from .canvas import freeze, new_figure
from .figures import figure_dashboard
from .report import PAGE, _md_table, _table_page, table_pages
from .stats import fmt_num

TEXT_WIDTH = 170                       # characters of answer text per line on a page
TABLE_WRAP = {"setting": 40, "sample": 34, "metric": 24, "model": 26, "schedule": 22}
PNG_DPI = 80
SUMMARY_SENTENCES = 3                  # of each answer on the first page; all of them on its own page


def cell_text(v):
    """A table value as a short string."""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "n/a"
        if float(v).is_integer() and abs(v) < 1e6:
            return str(int(v))
        return fmt_num(v, 4)
    if isinstance(v, str):
        return lab.one_line(v, 80) if "\n" in v else v
    return str(v)


#: the PDF's and the Markdown's columns of a question's table, renamed short so that a page holds
#: them (the CSV keeps every column under its own name); questions not listed show all
SHOWN = {
    3: {"n_layers": "layers", "clip": "clip", "seed": "seed", "best_valid_ppl": "best ppl",
        "max_grad_norm": "max ‖g‖", "median_grad_norm": "median ‖g‖", "norm_ratio": "max / median",
        "clipped": "clipped", "exploding": "exploding", "layer0_span": "g_T / g_1 layer 0",
        "layer0_vanishing": "vanishing layer 0", "layer1_span": "g_T / g_1 layer 1",
        "layer1_vanishing": "vanishing layer 1", "layer2_span": "g_T / g_1 layer 2",
        "layer2_vanishing": "vanishing layer 2"},
    7: {"run": "run", "task": "task", "cell": "cell", "clip": "clip", "status": "status", "updates": "updates",
        "final_valid_error": "valid error %", "final_valid_loss": "valid loss", "max_grad_norm": "max ‖g‖",
        "median_grad_norm": "median ‖g‖", "clipped": "clipped", "rho_end": "ρ end", "vanishing": "vanishing",
        "exploding": "exploding", "gate_saturated": "gates saturated", "decay_per_step": "g_t × per step back",
        "stalled": "stalled"},
}


def shown(df, number=None):
    """The table as short strings, with the columns of SHOWN[number] under their short names."""
    if number in SHOWN and len(df):
        cols = {k: v for k, v in SHOWN[number].items() if k in df}
        df = df[list(cols)].rename(columns=cols)
    return df.map(cell_text) if len(df) else df


def text_page(title, paragraphs, footer=None):
    fig = new_figure(*PAGE)
    fig.set_layout_engine(None)                # text only: nothing to lay out
    fig.suptitle(title, fontsize="large")
    body = "\n\n".join(textwrap.fill(p, TEXT_WIDTH) for p in paragraphs)
    fig.text(0.03, 0.93, body, va="top", ha="left", fontsize=8.5, family="DejaVu Sans")
    if footer:
        fig.text(0.03, 0.02, textwrap.fill(footer, TEXT_WIDTH + 20), fontsize=7, va="bottom")
    return fig


def answer_page(a):
    """The answer's sentences above its figure."""
    fig = new_figure(*PAGE)
    lines = sum(len(textwrap.wrap(t, TEXT_WIDTH)) for t in a.text) + len(a.text)
    text_h = min(0.5, 0.05 + 0.021 * lines)
    top, bottom = fig.subfigures(2, 1, height_ratios=[text_h, 1 - text_h])
    top.suptitle(f"{a.number}. {a.title}", fontsize="large")
    top.text(0.02, 0.80 if text_h > 0.2 else 0.7, "\n".join(textwrap.fill(t, TEXT_WIDTH) for t in a.text),
             va="top", ha="left", fontsize=8.5)
    a.draw(bottom)
    return fig


def plan(answers, presets):
    """[(kind, payload)] of every page, in order."""
    pages = [("summary", answers)]
    for a in answers:
        pages.append(("answer", a) if a.draw is not None else ("text", a))
        if len(a.table):
            for start, stop in table_pages(shown(a.table, a.number), TABLE_WRAP):
                pages.append(("table", (a, start, stop)))
    pages += [("dashboard", s) for s in presets]
    return pages


def write_lab(folder, pdf_path, curves=None):
    """Write the chapter of the study in `folder`; return the paths written."""
    from matplotlib.backends.backend_pdf import PdfPages
    study = lab.load_study(folder)
    answers = lab.answers(study, curves)
    stem = os.path.splitext(pdf_path)[0]
    figdir = stem + "_figures"
    os.makedirs(figdir, exist_ok=True)
    seconds, n = lab.cpu_seconds(study)
    waiting = len(study["unfinished"])
    head = (f"{n} finished runs under {folder}; their recorded run time (training, validation and checks) sums "
            f"to {seconds / 60:.1f} min. Numbers over seeds are mean ± standard deviation (seeds)."
            + (f" {waiting} runs are not finished (interrupted, running or failed) and left out: `make lab` "
               f"completes them." if waiting else ""))
    pages = plan(answers, answers[6].notes)
    pngs = {}
    with PdfPages(pdf_path, metadata={"Title": "dynamics: the lab study", "Creator": "dynamics"}) as pdf:
        for i, (kind, payload) in enumerate(pages, 1):
            if kind == "summary":
                fig = text_page("The lab study: the answers", [head] + [
                    f"{a.number}. {a.title}. " + " ".join(a.text[:SUMMARY_SENTENCES])
                    + (" …" if len(a.text) > SUMMARY_SENTENCES else "") for a in payload])
            elif kind == "answer":
                fig = answer_page(payload)
            elif kind == "text":
                fig = text_page(f"{payload.number}. {payload.title}", payload.text)
            elif kind == "table":
                a, start, stop = payload
                part = f" (rows {start + 1}–{stop} of {len(a.table)})" if (start, stop) != (0, len(a.table)) else ""
                fig = _table_page(f"{a.number}. {a.title}: the numbers{part}",
                                  shown(a.table, a.number).iloc[start:stop], TABLE_WRAP)
            else:
                fig = figure_dashboard(payload)
            fig.text(0.995, 0.995, f"page {i} of {len(pages)}", ha="right", va="top", fontsize=7)
            freeze(fig)
            pdf.savefig(fig)
            if kind in ("answer", "dashboard"):
                name = f"q{payload.number}.png" if kind == "answer" else f"{lab.preset_name(payload)}_dashboard.png"
                fig.savefig(os.path.join(figdir, name), dpi=PNG_DPI)
                pngs[payload.number if kind == "answer" else lab.preset_name(payload)] = name
    csv_path, md_path = stem + ".csv", stem + ".md"
    tables = [a.table.assign(question=a.number) for a in answers if len(a.table)]
    (pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()).to_csv(csv_path, index=False)
    with open(md_path, "w", encoding="utf-8") as fh:
        fh.write(markdown(answers, head, os.path.basename(figdir), pngs))
    return pdf_path, csv_path, md_path


def markdown(answers, head, figdir, pngs):
    parts = ["# The lab study", "", head, ""]
    for a in answers:
        parts += [f"## {a.number}. {a.title}", ""]
        parts += [f"- {t}" for t in a.text] + [""]
        if a.number in pngs:
            parts += [f"![{a.title}]({figdir}/{pngs[a.number]})", ""]
        if len(a.table):
            parts += [_md_table(shown(a.table, a.number)), ""]
        if a.number == 7:
            parts += [f"![{lab.preset_name(s)}]({figdir}/{pngs[lab.preset_name(s)]})"
                      for s in a.notes if lab.preset_name(s) in pngs] + [""]
    return "\n".join(parts)
