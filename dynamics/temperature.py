"""`dynamics temperature RUN.h5`: what the sampling temperature trades, diversity for coherence.

At each temperature (or, in `sampling_table`, each setting of temperature, top-k and top-p) the
run's model writes `samples` continuations of `n` characters after the
fixed prompts of its run file (the prompts of /check/samples, so every run is asked the same).
Diversity is distinct-n: the share of distinct word n-grams among all word n-grams of those
samples (n = 1, 2). Coherence is the model's own loss on what it wrote: the mean negative
log-probability, at temperature 1, of each sampled character given everything before it
(nats/char). A low temperature repeats itself and scores well by its own measure; a high one
varies more and is less and less what the model itself expects.
"""
import math

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
    rows = sampling_table(run, [{"temperature": t} for t in temperatures], n, samples, seed)
    return [{k: v for k, v in r.items() if k not in ("top_k", "top_p")} for r in rows]


def sampling_table(run, settings, n=300, samples=8, seed=0):
    """One row per setting ({"temperature", "top_k", "top_p"}; the last two optional): the setting,
    distinct-1, distinct-2, the model's own loss at temperature 1 on what it wrote, a sample. Every
    setting continues the same prompts from the same seed."""
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
    for s in settings:
        temperature, top_k, top_p = s.get("temperature", 1.0), s.get("top_k"), s.get("top_p")
        new = generate(step_fn(model), ids, n, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
        texts = ["".join(vocab[i] for i in row) for row in new.tolist()]
        table.append({"temperature": temperature, "top_k": top_k, "top_p": top_p,
                      "distinct_1": distinct(texts, 1), "distinct_2": distinct(texts, 2),
                      "own_loss": own_loss(model, torch.cat([ids, new], dim=1), width),
                      "sample": texts[0]})
    return table


def parse_temperatures(text):
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or not all(0 < v < math.inf for v in values):
        raise bad_value("--temperatures", text, "comma-separated numbers > 0, e.g. 0.5,1,1.5")
    return values
