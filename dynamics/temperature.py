"""`dynamics temperature RUN.h5`: what the sampling temperature trades, diversity for coherence.

At each temperature the run's model writes `samples` continuations of `n` characters after the
fixed prompts of its run file (the prompts of /check/samples, so every run is asked the same).
Diversity is distinct-n: the share of distinct word n-grams among all word n-grams of those
samples (n = 1, 2). Coherence is the model's own loss on what it wrote: the mean negative
log-probability, at temperature 1, of each sampled character given everything before it
(nats/char). A low temperature repeats itself and scores well by its own measure; a high one
varies more and is less and less what the model itself expects.
"""
import csv
import math
from pathlib import Path

import click
import torch
import torch.nn.functional as F

from tasks.errors import bad_value
from .runfile import read_only
from .sample import load_model, read_config
from .sampling import generate
from .sources.text import PROMPT_TOKENS, step_fn

TEMPERATURES = (0.5, 0.75, 1.0, 1.25, 1.5)


def distinct(texts, n):
    """Distinct word n-grams over all n-grams of `texts` (NaN when there are none)."""
    grams = [tuple(words[i:i + n]) for words in (t.split() for t in texts) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else math.nan


@torch.no_grad()
def own_loss(model, ids, n_prompt):
    """Mean −log p(x_t | x_<t) in nats of the tokens after the first `n_prompt`, ids (B, t)."""
    logits = model(ids.t()).logits[n_prompt - 1:-1]              # predictions of tokens n_prompt..
    target = ids.t()[n_prompt:]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1)).item()


def run_prompts(path):
    """The fixed prompts of a text run: the starts of its last recorded samples."""
    with read_only(path) as f:
        if "check/samples" not in f or not f["check/samples"].shape[0]:
            return ["\n"]
        return [s[:PROMPT_TOKENS["char"]] for s in f["check/samples"].asstr()[-1]]


def temperature_table(run, temperatures=TEMPERATURES, n=300, samples=8, seed=0):
    """One row per temperature: distinct-1, distinct-2, the model's own loss, a sample."""
    config = read_config(run)
    if config.tokens != "char":
        raise bad_value("run", str(run), "a character-level text run (distinct words need the model to spell them)")
    model, vocab, _ = load_model(config, run)
    index = {ch: i for i, ch in enumerate(vocab)}
    prompts = [p for p in run_prompts(run) if all(ch in index for ch in p)] or [vocab[0]]
    width = min(len(p) for p in prompts)
    rows = [[index[ch] for ch in prompts[k % len(prompts)][:width]] for k in range(samples)]
    ids = torch.tensor(rows, dtype=torch.long)
    table = []
    for temperature in temperatures:
        new = generate(step_fn(model), ids, n, temperature=temperature, seed=seed)
        texts = ["".join(vocab[i] for i in row) for row in new.tolist()]
        table.append({"temperature": temperature, "distinct_1": distinct(texts, 1),
                      "distinct_2": distinct(texts, 2),
                      "own_loss": own_loss(model, torch.cat([ids, new], dim=1), width),
                      "sample": texts[0]})
    return table


def plot_table(table, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t = [r["temperature"] for r in table]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), layout="constrained")
    for key, label, marker in (("distinct_1", "distinct words (distinct-1)", "o"),
                               ("distinct_2", "distinct word pairs (distinct-2)", "s")):
        left.plot(t, [100 * r[key] for r in table], marker=marker, label=label)
    left.set(xlabel="sampling temperature", ylabel="distinct n-grams (% of all)", title="Diversity")
    left.legend(fontsize=8)
    right.plot(t, [r["own_loss"] for r in table], marker="o", color="#d62728")
    right.set(xlabel="sampling temperature", ylabel="model's own loss on its samples (nats/char)",
              title="Coherence (lower: more expected)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.set_xticks(t)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_temperatures(text):
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or not all(0 < v < math.inf for v in values):
        raise bad_value("--temperatures", text, "comma-separated numbers > 0, e.g. 0.5,1,1.5")
    return values


@click.command()
@click.argument("run", type=click.Path(dir_okay=False))
@click.option("--temperatures", default=",".join(f"{t:g}" for t in TEMPERATURES), show_default=True,
              help="comma-separated sampling temperatures")
@click.option("-n", "n", default=300, show_default=True, type=click.IntRange(min=2), help="characters per sample")
@click.option("--samples", default=8, show_default=True, type=click.IntRange(min=1), help="samples per temperature")
@click.option("--seed", default=0, show_default=True, type=int, help="the same seed draws the same samples")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="the figure (default: figures/<run>/temperature.png); a CSV is written beside it")
def temperature(run, temperatures, n, samples, seed, output):
    """Diversity (distinct word n-grams) and coherence (the model's own loss) of the text run
    RUN.h5's samples, against the sampling temperature."""
    values = parse_temperatures(temperatures)
    table = temperature_table(run, values, n, samples, seed)
    name = Path(run).stem
    out = Path(output) if output else Path("figures") / name / "temperature.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_table(table, out, f"{name}: {samples} samples of {n} characters per temperature, seed {seed}")
    with open(out.with_suffix(".csv"), "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    click.echo(f"{'temperature':>11}  {'distinct-1':>10}  {'distinct-2':>10}  {'own loss':>9}  sample")
    for r in table:
        snippet = " ".join(r["sample"].split())[:40]
        click.echo(f"{r['temperature']:>11g}  {100 * r['distinct_1']:>9.1f}%  {100 * r['distinct_2']:>9.1f}%  "
                   f"{r['own_loss']:>9.3f}  {snippet}")
    click.echo(f"figure: {out}")
