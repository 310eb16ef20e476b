"""The analysis commands: `info`, `plot`, `compare`, `report` (plain click commands, added to
the `dynamics` group by dynamics/cli.py). Bad input gives one line on stderr and exit status 2,
also when a command runs on its own (`python -m analysis.commands plot RUN.h5`). Every input
is read before anything is written, so a bad input leaves no file behind."""
import functools
import math
import os
import sys

import click

from tasks.errors import InputError

IMAGE_SUFFIXES = (".png", ".pdf", ".svg")


def cli_errors(fn):
    """Turn InputError (and an unwritable output) into `error: <one line>` and exit status 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            click.echo(f"error: {' '.join(str(exc).split())}", err=True)
            sys.exit(2)
    return wrapper


def _load_all(paths):
    from .read import load
    if not paths:
        raise InputError("no run files given")
    return [load(p) for p in paths]


def _writable_dir(path):
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{path}: cannot create the output folder ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK):
        raise InputError(f"{path}: the output folder is not writable")


def _output_file(path, suffixes, what):
    ext = os.path.splitext(path)[1].lower()
    if ext not in suffixes:
        raise InputError(f"-o {path!r} is not allowed: {what} must end in {' or '.join(suffixes)}")
    if os.path.isdir(path):
        raise InputError(f"-o {path!r} is a folder; give a file name")


def _save(fn, *args):
    try:
        return fn(*args)
    except OSError as exc:
        raise InputError(f"cannot write the output ({exc.strerror or exc}: "
                         f"{getattr(exc, 'filename', '') or ''})") from None


# ----------------------------------------------------------------------------------- info

def info_text(snap):
    from . import stats
    from .stats import fmt_duration, fmt_num, fmt_pct
    from .verdicts import verdicts
    s = stats.summary(snap)
    out = [f"name      {snap.name}", f"file      {snap.path}"]
    status = snap.status
    if status == "running":
        status += f" (snapshot at iteration {snap.iterations_done})"
    out.append(f"status    {status}")
    if snap.error:
        out.append(f"error     {' '.join(snap.error.split())}")
    for key in ("command", "created", "finished", "device", "torch_version", "git_commit"):
        value = snap.attrs.get(key)
        if value:
            out.append(f"{key:<9} {value}")
    out.append("")
    out.append("config")
    if snap.config:
        width = max(len(k) for k in snap.config)
        for key in sorted(snap.config):
            out.append(f"  {key:<{width}} = {snap.config[key]}")
    else:
        out.append("  (none recorded)")
    out.append("")
    out.append("final")
    rows = [("iterations done", f"{s['iterations']} ({s['checks']} checks)")]
    if math.isfinite(s["final_valid_error"]):
        rows.append(("valid error", f"{fmt_num(s['final_valid_error'])} % (best "
                     f"{fmt_num(s['best_valid_error'])} % at {snap.check_xlabel.split(' (')[0]} "
                     f"{int(s['best_valid_error_iter'])})"))
    if math.isfinite(s["final_valid_loss"]):
        rows.append(("valid loss", fmt_num(s["final_valid_loss"], 4)))
    if math.isfinite(s["valid_ppl"]):
        rows.append(("valid perplexity", fmt_num(s["valid_ppl"], 4)))
    if math.isfinite(s["valid_bpc"]):
        rows.append(("valid bits/char", fmt_num(s["valid_bpc"], 4)))
    if math.isfinite(s["max_grad_norm"]):
        rows.append(("gradient norm", f"max {fmt_num(s['max_grad_norm'])}, median "
                                      f"{fmt_num(s['median_grad_norm'])}"))
    if math.isfinite(s["share_clipped"]):
        rows.append(("clipped", f"{fmt_pct(s['share_clipped'], 1)} of steps"))
    if s["n_nonfinite"]:
        rows.append(("non-finite steps", str(s["n_nonfinite"])))
    if math.isfinite(s["rho_start"]) or math.isfinite(s["rho_end"]):
        rows.append((f"ρ({snap.recurrent_matrix})", f"{fmt_num(s['rho_start'])} → {fmt_num(s['rho_end'])}"))
    if math.isfinite(s["wall_time"]):
        rows.append(("wall time", fmt_duration(s["wall_time"])))
    width = max(len(r[0]) for r in rows)
    out += [f"  {k:<{width}}  {v}" for k, v in rows]
    out.append("")
    out.append("verdicts")
    vs = verdicts(snap)
    out += [f"  - {v.text}" for v in vs] or ["  (none)"]
    return "\n".join(out)


@click.command()
@click.argument("run", metavar="RUN.h5")
@cli_errors
def info(run):
    """Name, status, config, final figures and verdicts of a run (also while it runs)."""
    from .read import load
    click.echo(info_text(load(run)))


# ----------------------------------------------------------------------------------- plot

@click.command()
@click.argument("run", metavar="RUN.h5")
@click.option("-o", "--out", "out_dir", default=None, metavar="DIR",
              help="output folder (default: figures/<run name>/)")
@click.option("--dpi", default=100, show_default=True, type=click.IntRange(20, 600),
              help="resolution of the PNG files")
@cli_errors
def plot(run, out_dir, dpi):
    """The dashboard <name>_dashboard.png and one PNG per figure of a run."""
    from .figures import plot_run
    from .read import load
    snap = load(run)
    out_dir = out_dir or os.path.join("figures", snap.name)
    _writable_dir(out_dir)
    for path in _save(plot_run, snap, out_dir, dpi):
        click.echo(path)


# -------------------------------------------------------------------------------- compare

@click.command()
@click.argument("runs", nargs=-1, required=True, metavar="RUN.h5 ...")
@click.option("-o", "--out", "out", default=os.path.join("figures", "compare.png"),
              show_default=True, metavar="FILE.png", help="output image (.png, .pdf or .svg)")
@click.option("--dpi", default=100, show_default=True, type=click.IntRange(20, 600))
@cli_errors
def compare(runs, out, dpi):
    """Overlay runs: validation error, gradient norms, ρ, final log10 g_t, g_t against t."""
    from .compare import describe, figure_compare
    from .figures import save
    _output_file(out, IMAGE_SUFFIXES, "the comparison")
    snaps = _load_all(runs)
    _writable_dir(os.path.dirname(out) or ".")
    fig = figure_compare(snaps)
    if fig is None:
        raise InputError("none of the runs has data to compare (no checks and no updates recorded)")
    _save(save, fig, out, dpi)
    for line in describe(snaps):
        click.echo(line)
    click.echo(out)


# --------------------------------------------------------------------------------- report

@click.command()
@click.argument("runs", nargs=-1, required=True, metavar="RUN.h5|FOLDER ...")
@click.option("-o", "--out", "out", default=os.path.join("report", "report.pdf"),
              show_default=True, metavar="FILE.pdf",
              help="the PDF; FILE.csv and FILE.md are written beside it")
@cli_errors
def report(runs, out):
    """A PDF report: summary table, each run's dashboard, comparisons by task, LM table.

    A folder stands for its run files; a lab study's folder (`make lab`: runs/lab-quick/, with
    lm/, families/, presets/) gets the lab chapter instead, the answers to its questions."""
    from .lab import is_study
    _output_file(out, (".pdf",), "the report")
    if len(runs) == 1 and is_study(runs[0]):
        from .lab_report import write_lab
        _writable_dir(os.path.dirname(out) or ".")
        for path in _save(write_lab, runs[0], out):
            click.echo(path)
        return
    from .context import run_files
    from .report import write_report
    snaps = _load_all(run_files(runs))
    _writable_dir(os.path.dirname(out) or ".")
    for path in _save(write_report, snaps, out):
        click.echo(path)


COMMANDS = {"info": info, "plot": plot, "compare": compare, "report": report}


def run_cli(args=None):
    """Run one analysis command from an argument list; return its exit status."""
    group = click.Group("dynamics", commands=COMMANDS,
                        help="Read dynamics run files: info, plot, compare, report.")
    try:
        group.main(args=args, prog_name="dynamics", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli())
