"""Question 12: sampling, diversity against coherence. One trained language model (the first seed
of question 4's GRU) continues the same prompts at several temperatures, and at temperature 1
with top-k and top-p (nucleus) truncation. Diversity is distinct-n, the share of distinct word
n-grams among all of them (words: distinct pairs are near 100 % from temperature 1 on); coherence is the model's own loss on what it wrote (nats/char: low
is what the model itself expects). Each setting is drawn with three generator seeds."""
import pandas as pd

from ..intervals import estimate, sentence
from ..stats import fmt_num
from .common import Answer, cells, has_model, lm_label, one_line, over_seeds, per_seed

TITLE = "Sampling: temperature, top-k and top-p against diversity and coherence"
SETTINGS = ({"temperature": 0.5}, {"temperature": 0.8}, {"temperature": 1.0}, {"temperature": 1.2},
            {"temperature": 1.0, "top_k": 5}, {"temperature": 1.0, "top_k": 20},
            {"temperature": 1.0, "top_p": 0.5}, {"temperature": 1.0, "top_p": 0.9})
SEEDS = (0, 1, 2)
CHARS, SAMPLES = 200, 8
METRICS = ("distinct_1", "distinct_2", "own_loss")


def setting_name(s):
    if s.get("top_k"):
        return f"top-k {s['top_k']}"
    if s.get("top_p"):
        return f"top-p {fmt_num(s['top_p'])}"
    return f"T {fmt_num(s['temperature'])}"


def sampled(run_path, settings=SETTINGS, seeds=SEEDS):
    """One row per setting and generator seed: distinct-1, distinct-2 (percent), own loss, a sample."""
    from dynamics.temperature import sampling_table
    rows = []
    for seed in seeds:
        for r in sampling_table(run_path, settings, n=CHARS, samples=SAMPLES, seed=seed):
            rows.append({"setting": setting_name(r), "seed": seed, "distinct_1": 100 * r["distinct_1"],
                         "distinct_2": 100 * r["distinct_2"], "own_loss": r["own_loss"], "sample": r["sample"]})
    return pd.DataFrame(rows)


def model_run(lm):
    """The first seed of question 4's GRU (else of its first cell) that kept a model."""
    by = cells([s for s in lm if s.config.get("cell") != "mlp"])
    return next((s for cell in ("gru",) + tuple(by)
                 for s in sorted(by.get(cell, []), key=lambda s: s.config.get("seed") or 0) if has_model(s)), None)


def q12_text(rows, label):
    if not len(rows):
        return ["No language-model run with a model to sample from."]
    est = {m: over_seeds(rows, "setting", m) for m in METRICS}
    names = list(est["own_loss"])
    temps = sorted((n for n in names if n.startswith("T ")), key=lambda n: float(n[2:]))
    out = [f"{label}; {SAMPLES} samples of {CHARS} characters per setting and generator seed ({len(SEEDS)} seeds)."]
    if len(temps) >= 2:
        lo, hi = temps[0], temps[-1]
        out.append(f"Temperature {hi[2:]} against {lo[2:]}: distinct words (%), "
                   + sentence(hi, est["distinct_1"][hi], lo, est["distinct_1"][lo], False)
                   + "; the model's own loss (nats/char), "
                   + sentence(hi, est["own_loss"][hi], lo, est["own_loss"][lo], True) + ".")
    base = "T 1"
    for n in (n for n in names if not n.startswith("T ")):
        if base in est["own_loss"]:
            out.append(f"{n} against plain sampling at T 1: own loss, "
                       + sentence(n, est["own_loss"][n], base, est["own_loss"][base], True)
                       + "; distinct words (%), "
                       + sentence(n, est["distinct_1"][n], base, est["distinct_1"][base], False) + ".")
    return out


def draw(fig, rows):
    """Coherence (own loss) against diversity (distinct word pairs), one marker per setting: the
    temperatures joined by a line, top-k and top-p apart; error bars are the 95 % intervals."""
    ax = fig.subplots()
    names = list(dict.fromkeys(rows["setting"]))
    pts = {}
    for k, n in enumerate(names):
        g = rows[rows["setting"] == n]
        x, y = estimate(g["distinct_1"]), estimate(g["own_loss"])
        pts[n] = (x.mean, y.mean)
        marker = "o" if n.startswith("T ") else "s" if n.startswith("top-k") else "^"
        ax.errorbar([x.mean], [y.mean], xerr=[[x.mean - x.low], [x.high - x.mean]],
                    yerr=[[y.mean - y.low], [y.high - y.mean]], fmt=marker, color=f"C{k}", capsize=2, label=n)
    temps = [pts[n] for n in names if n.startswith("T ")]
    if len(temps) > 1:
        ax.plot(*zip(*temps), color="grey", lw=0.8, ls="--", zorder=0)
    ax.set_xlabel("diversity: distinct words among all the words written (%)")
    ax.set_ylabel("coherence: the model's own loss on its samples (nats/char, lower is more expected)")
    ax.legend(fontsize="small", ncol=2)
    ax.set_title(TITLE, fontsize="medium")


def q12(lm, rows=None):
    """`rows`: sampled()'s table when given (the tests); None to sample the model now."""
    run = model_run(lm)
    label = (f"The model: {lm_label(run)}, seed {run.config.get('seed')}" if run is not None else "")
    if rows is None:
        rows = sampled(run.path) if run is not None else pd.DataFrame()
    table = (rows.groupby("setting", sort=False).agg(
        distinct_1=("distinct_1", "mean"), distinct_2=("distinct_2", "mean"), own_loss=("own_loss", "mean"),
        sample=("sample", lambda v: one_line(v.iloc[0], 60))).reset_index() if len(rows) else rows)
    return Answer(12, TITLE, q12_text(rows, label), table, (lambda fig: draw(fig, rows)) if len(rows) else None,
                  values=per_seed(rows, "setting", METRICS) if len(rows) else None)
