"""What `dynamics info` prints of a run: name, status, provenance, config, final numbers and the
verdicts, as plain text (also of a run still being written)."""
import math

from . import stats
from .stats import fmt_duration, fmt_num, fmt_pct
from .verdicts import verdicts


# the per-check columns (percent) that some families record, with their labels
HEADLINES = {"accuracy": "valid accuracy", "macro_f1": "valid macro-F1", "greedy_exact": "exact match, greedy",
             "beam_exact": "exact match, beam", "greedy_token_acc": "token accuracy, greedy",
             "controllability": "controllability", "distinct": "distinct samples", "novel": "novel samples"}


def info_text(snap):
    s = stats.summary(snap)
    out = [f"name      {snap.name}", f"file      {snap.path}"]
    status = snap.status
    if status == "running":
        status += f" (snapshot at iteration {snap.iterations_done})"
    elif status == "stopped":
        status = snap.stopped_text
    out.append(f"status    {status}")
    if snap.error:
        out.append(f"error     {' '.join(snap.error.split())}")
    for key in ("command", "created", "finished", "device", "threads", "torch_version", "git_commit"):
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
    rows = [("iterations done", f"{s['iterations']} ({s['checks']} check{'s' if s['checks'] != 1 else ''})")]
    if math.isfinite(s["final_valid_error"]):
        rows.append(("valid error", f"{fmt_num(s['final_valid_error'])} % (best "
                     f"{fmt_num(s['best_valid_error'])} % at {snap.check_xlabel.split(' (')[0]} "
                     f"{int(s['best_valid_error_iter'])})"))
    for column, label in HEADLINES.items():   # what a family reports beside its error, where recorded
        value = stats.last_finite(snap.check.get(column))
        if math.isfinite(value):
            rows.append((label, f"{fmt_num(value)} % (last check)"))
    if math.isfinite(s["final_valid_loss"]):
        rows.append(("valid loss", fmt_num(s["final_valid_loss"], 4)))
    if not (math.isfinite(s["final_valid_error"]) or math.isfinite(s["final_valid_loss"])):
        rows.append(("validation", "none recorded"))
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
