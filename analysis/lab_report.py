"""The lab chapter as a PDF, its per-seed numbers as one CSV and the whole chapter as Markdown.

`dynamics report runs/lab-quick/ -o report/lab.pdf` writes report/lab.pdf, report/lab.csv (one
row per question, setting, seed and metric), report/lab.md and the figures as PNGs under
report/lab_figures/ (the Markdown shows them; a PNG holds the figure alone, no page text). Pages:
the answers on one page; per question its answer above its figure (or, for a long answer, the
answer's page then the figure's), then its table; then each preset's dashboard (first seed).
"""
import math
import os
import textwrap

import numpy as np
import pandas as pd

from . import lab
from .canvas import freeze, new_figure
from .figures import PAGE_ROWS, figure_dashboard, n_dashboard_pages
from .report import PAGE, _md_table, _table_page, table_pages
from .stats import fmt_num

TEXT_WIDTH = 170                       # characters of answer text per line on a page
TABLE_WRAP = {"setting": 34, "sample": 34, "sample (first seed)": 34, "metric": 24, "model": 26,
              "schedule": 22, "best valid ppl": 16, "per seed": 14}
PNG_DPI = 80
SUMMARY_SENTENCES = 2                  # of each answer on the first pages; all of them on its own
MAX_LINES_ABOVE_FIGURE = 20            # a longer answer gets a page of its own before its figure
PAGE_LINES = 50                        # lines of 8.5-point text on a page below its title


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
#: them; questions not listed show all
SHOWN = {
    1: {"setting": "setting", "seeds": "seeds", "best valid ppl": "best valid ppl", "per seed": "per seed",
        "sample (first seed)": "sample (first seed)"},
    3: {"n_layers": "layers", "dropout": "dropout", "clip": "clip", "seed": "seed", "best_valid_ppl": "best ppl",
        "max_grad_norm": "max ‖g‖", "median_grad_norm": "median ‖g‖", "norm_ratio": "max / median",
        "clipped": "clipped", "exploding": "exploding", "layer0_span": "g_T / g_1 layer 0",
        "layer1_span": "g_T / g_1 layer 1", "layer2_span": "g_T / g_1 layer 2"},
    7: {"run": "run", "seed": "seed", "final_valid_error": "valid error %", "baseline_error": "input-blind error %",
        "final_valid_loss": "valid loss", "baseline_loss": "input-blind loss", "norm_ratio": "max / median ‖g‖",
        "clipped": "clipped (share)", "rho_end": "ρ end", "decay_per_step": "g_t × per step back",
        "horizon_1e3": "horizon 10⁻³", "gate_z_half": "z near 0.5 (share)"},
    9: {"setting": "setting", "seed": "seed", "greedy_exact": "greedy exact %", "beam_exact": "beam exact %",
        "beam_gain": "beam − greedy"},
}


def shown(df, number=None):
    """The table as short strings, with the columns of SHOWN[number] under their short names."""
    if number in SHOWN and len(df):
        cols = {k: v for k, v in SHOWN[number].items() if k in df}
        df = df[list(cols)].rename(columns=cols)
    return df.map(cell_text) if len(df) else df


def paginate(paragraphs, lines=PAGE_LINES):
    """The paragraphs wrapped to TEXT_WIDTH and cut into pages of at most `lines` lines (a blank
    line between paragraphs); a paragraph longer than a page continues on the next."""
    pages, page, used = [], [], 0
    for p in paragraphs:
        wrapped = textwrap.wrap(p, TEXT_WIDTH) or [""]
        while wrapped:
            room = lines - used - (1 if page else 0)
            if room <= 0:
                pages.append(page)
                page, used = [], 0
                continue
            take, wrapped = wrapped[:room], wrapped[room:]
            page.append("\n".join(take))
            used += len(take) + (1 if len(page) > 1 else 0)
    return pages + [page] if page else pages


def text_page(title, blocks):
    """A page of text: `blocks` are paginate's wrapped paragraphs of one page."""
    fig = new_figure(*PAGE)
    fig.set_layout_engine(None)                # text only: nothing to lay out
    fig.suptitle(title, fontsize="large")
    fig.text(0.03, 0.93, "\n\n".join(blocks), va="top", ha="left", fontsize=8.5, family="DejaVu Sans")
    return fig


def answer_page(a):
    """The answer's sentences above its figure."""
    fig = new_figure(*PAGE)
    text_h = min(0.5, 0.05 + 0.021 * text_lines(a))
    top, bottom = fig.subfigures(2, 1, height_ratios=[text_h, 1 - text_h])
    top.suptitle(f"{a.number}. {a.title}", fontsize="large")
    top.text(0.02, 0.80 if text_h > 0.2 else 0.7, "\n".join(textwrap.fill(t, TEXT_WIDTH) for t in a.text),
             va="top", ha="left", fontsize=8.5)
    a.draw(bottom)
    return fig


def text_lines(a):
    return sum(len(textwrap.wrap(t, TEXT_WIDTH)) for t in a.text) + len(a.text)


def figure_page(a):
    """The answer's figure alone: a page of the PDF, or a PNG of the Markdown."""
    fig = new_figure(*PAGE)
    a.draw(fig)
    return fig


def text_pages(title, paragraphs):
    """[("text", (title, blocks))] of the paragraphs over as many pages as they need."""
    chunks = paginate(paragraphs)
    return [("text", (title + (f" ({i} of {len(chunks)})" if len(chunks) > 1 else ""), blocks))
            for i, blocks in enumerate(chunks, 1)]


def plan(answers, presets, head=""):
    """[(kind, payload)] of every page, in order."""
    pages = text_pages("The lab study: the answers", [head] + [
        f"{a.number}. {a.title}. " + " ".join(a.text[:SUMMARY_SENTENCES])
        + (" …" if len(a.text) > SUMMARY_SENTENCES else "") for a in answers])
    for a in answers:
        if a.draw is None or text_lines(a) > MAX_LINES_ABOVE_FIGURE:
            pages += text_pages(f"{a.number}. {a.title}", a.text)
            if a.draw is not None:
                pages.append(("figure", a))
        else:
            pages.append(("answer", a))
        if len(a.table):
            for start, stop in table_pages(shown(a.table, a.number), TABLE_WRAP):
                pages.append(("table", (a, start, stop)))
    pages += [("dashboard", (s, k)) for s in presets for k in range(n_dashboard_pages(s))]
    return pages


HOW_TO_READ = ("How to read the numbers: a number over seeds is written mean [95 % interval] (n = seeds), the "
               "interval a percentile bootstrap of the mean over the seeds (with three seeds it is their range); "
               "one run is \"one seed\" and is not compared. Two settings are called different only where their "
               "intervals are apart; where they overlap the text says \"within noise\", where the means are equal "
               "\"a tie\". The per-seed numbers are in lab.csv. Where three seeds leave a comparison within "
               "noise, more seeds decide it: runs/sweeps/lab-lm.toml is the language-model grid at five seeds, "
               "for a cluster (`dynamics sweep ... --scheduler`).")


def budgets(study):
    """"language models 1000 updates; …": what each part of the study trained for."""
    parts = {"language models": study.get("lm", []),
             "classification, seq2seq and conditional generation": study.get("families", []),
             "presets": study.get("presets", [])}
    out = []
    for name, runs in parts.items():
        limits = sorted({int(s.config.get("max_iters", 0)) for s in runs})
        if limits:
            out.append(f"{name} {', '.join(f'{u:,}' for u in limits[:-1])}{' or ' if len(limits) > 1 else ''}"
                       f"{limits[-1]:,} updates per run")
    return "; ".join(out)


def some(names, most=8):
    """The names, at most `most` of them and how many more."""
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def header(folder, study):
    """The chapter's first paragraph: what was run, for how long, how to read it, and what is missing."""
    seconds, n = lab.cpu_seconds(study)
    text = (f"{n} finished runs under {folder}; their recorded run time (training, validation and checks) sums "
            f"to {seconds / 60:.1f} min. Budgets: {budgets(study)} (a solved preset stops earlier); every comparison "
            f"is between runs of the same budget. Ceilings: question 4 gives each task's chance level, question 7 "
            f"the input-blind predictor of each synthetic task. {HOW_TO_READ}")
    waiting = [s.name for s in study.get("unfinished", [])]
    missing = study.get("missing", [])
    if waiting:
        text += (f" Not finished and left out ({len(waiting)}): {some(waiting)}; `make lab` completes them.")
    gone = [m for m in missing if m.split("/", 1)[1].split(" (")[0] not in waiting]
    if gone:
        text += f" Planned but without a run file ({len(gone)}): {some(gone)}."
    return text


def write_lab(folder, pdf_path, curves=None):
    """Write the chapter of the study in `folder`; return the paths written."""
    from matplotlib.backends.backend_pdf import PdfPages
    study = lab.load_study(folder)
    answers = lab.answers(study, curves)
    stem = os.path.splitext(pdf_path)[0]
    figdir = stem + "_figures"
    os.makedirs(figdir, exist_ok=True)
    head = header(folder, study)
    pages = plan(answers, answers[6].notes, head)
    pngs = {}
    with PdfPages(pdf_path, metadata={"Title": "dynamics: the lab study", "Creator": "dynamics"}) as pdf:
        for i, (kind, payload) in enumerate(pages, 1):
            if kind == "answer":
                fig = answer_page(payload)
            elif kind == "figure":
                fig = figure_page(payload)
            elif kind == "text":
                fig = text_page(*payload)
            elif kind == "table":
                a, start, stop = payload
                part = f" (rows {start + 1}–{stop} of {len(a.table)})" if (start, stop) != (0, len(a.table)) else ""
                fig = _table_page(f"{a.number}. {a.title}: the numbers{part}",
                                  shown(a.table, a.number).iloc[start:stop], TABLE_WRAP)
            else:
                s, k = payload
                fig = figure_dashboard(s, rows=(k * PAGE_ROWS, (k + 1) * PAGE_ROWS))
            if kind == "dashboard" and payload[1] == 0:     # the Markdown's PNG: the whole dashboard, no page text
                name = f"{lab.preset_name(payload[0])}_dashboard.png"
                freeze(figure_dashboard(payload[0]), PNG_DPI).savefig(os.path.join(figdir, name), dpi=PNG_DPI)
                pngs[lab.preset_name(payload[0])] = name
            elif kind in ("answer", "figure") and payload.number not in pngs:
                name = f"q{payload.number}.png"
                freeze(figure_page(payload), PNG_DPI).savefig(os.path.join(figdir, name), dpi=PNG_DPI)
                pngs[payload.number] = name
            fig.text(0.995, 0.995, f"page {i} of {len(pages)}", ha="right", va="top", fontsize=7)
            freeze(fig)
            pdf.savefig(fig)
    csv_path, md_path = stem + ".csv", stem + ".md"
    values = [a.values.assign(question=a.number) for a in answers if a.values is not None and len(a.values)]
    table = (pd.concat(values, ignore_index=True) if values else
             pd.DataFrame(columns=["setting", "seed", "metric", "value", "question"]))
    table[["question", "setting", "seed", "metric", "value"]].to_csv(csv_path, index=False)
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
