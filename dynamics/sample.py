"""`dynamics sample RUN.h5`: text from a trained character-level model.

The model is the best one by validation loss (`<name>_best.pt` beside the run file) or, failing
that, the last checkpoint (`<name>_checkpoint.pt`); it is rebuilt from the run file's config and
the vocabulary saved with it, then stepped one character at a time with its state carried.
"""
import json
from pathlib import Path

import click
import numpy as np
import torch

from .errors import InputError, bad_value
from .model import build_model
from .runfile import read_only
from .sampling import _check, generate
from .sources.text import step_fn
from .train import load_checkpoint


def read_config(path):
    """The config of the text run whose file is at `path`."""
    from .config import make
    path = Path(path)
    if not path.is_file():
        raise bad_value("run", str(path), "no such run file")
    try:
        with read_only(path) as f:
            task, recorded = f.attrs.get("task"), f.attrs.get("config")
    except OSError:
        raise bad_value("run", str(path), "not a run file (HDF5)") from None
    if recorded is None:
        raise bad_value("run", str(path), "not a run file (it has no config)")
    values = json.loads(recorded)
    if (task or values.get("task")) != "text":
        raise bad_value("run", str(path), f"a text run (this is a {task or values.get('task')} run)")
    return make(values, given=())


def same_run(saved, config):
    """Whether a saved config (JSON) is that of `config`, up to what a resume may change."""
    saved, now = json.loads(saved), json.loads(config.to_json())
    saved = {**json.loads(type(config)().to_json()), **saved}   # keys newer than the file: defaults
    return all(saved.get(k) == v for k, v in now.items() if k not in ("max_iters", "device"))


def load_model(config, run):
    """(model, vocab, source file) of the best model, or else the last checkpoint, of the run
    whose file is at `run`."""
    run = Path(run)
    best = run.with_name(f"{config.name}_best.pt")
    last = run.with_name(f"{config.name}_checkpoint.pt")
    state = vocab = None
    if best.is_file():
        saved = load_checkpoint(best, f"move it away to sample from {last.name!r}", map_location="cpu")
        if same_run(saved["config"], config):
            state, vocab, source = saved["model"], saved["vocab"], best
    if state is None and last.is_file():
        saved = load_checkpoint(last, "train the run again to sample from it", map_location="cpu")
        state, vocab, source = saved["model"], saved.get("source", {}).get("vocab"), last
        if vocab is None:
            from tasks.text import Corpus
            vocab = Corpus.load(config.text or None).vocab
    if state is None:
        raise InputError(f"run={str(run)!r} has no model to sample from: neither {best.name!r} "
                         f"nor {last.name!r} is beside it")
    c = config
    if c.cell == "transformer":   # it reads windows of the training length (min_length)
        from .models.transformer import build_transformer
        model = build_transformer(c, None, len(vocab), "softmax", c.min_length, len(vocab), dtype=getattr(torch, c.dtype))
    else:
        model = build_model(c.cell, c.embedding or c.n_hidden, c.n_hidden, len(vocab), "softmax", c.activation,
                            c.init, n_layers=c.n_layers, vocab_size=len(vocab), dropout=c.dropout,
                            tie_weights=c.tie_weights, forget_bias=c.forget_bias, dtype=getattr(torch, c.dtype))
    model.load_state_dict(state)
    model.eval()
    return model, vocab, source


def encode(prompt, vocab):
    missing = [ch for ch in dict.fromkeys(prompt) if ch not in vocab]
    if missing:
        raise bad_value("prompt", prompt, f"characters of the run's vocabulary of {len(vocab)} "
                        f"({''.join(missing)!r} not in it)")
    index = {ch: i for i, ch in enumerate(vocab)}
    return np.array([index[ch] for ch in prompt], dtype=np.int64)


def continuation(run, prompt, n=200, temperature=0.8, top_k=None, top_p=None, seed=0):
    """The `n` characters the run's model writes after `prompt`."""
    _check(temperature, top_k, top_p)
    model, vocab, _ = load_model(read_config(run), run)
    if not prompt:
        raise bad_value("prompt", prompt, "a non-empty string")
    ids = encode(prompt, vocab)
    new = generate(step_fn(model), torch.from_numpy(ids), n, temperature, top_k, top_p, seed=seed)
    return "".join(vocab[i] for i in new[0].tolist())


@click.command()
@click.argument("run", type=click.Path(dir_okay=False))
@click.option("--prompt", "-p", default="\n", show_default="a newline",
              help="text to continue; its characters must be in the run's vocabulary")
@click.option("-n", "n", default=200, show_default=True, type=click.IntRange(min=0), help="characters to write")
@click.option("--temperature", "-t", default=0.8, show_default=True, type=float, help="0 is greedy")
@click.option("--top-k", default=None, type=int, help="keep the k most probable characters")
@click.option("--top-p", default=None, type=float, help="keep the most probable characters up to mass p")
@click.option("--seed", default=0, show_default=True, type=int, help="the same seed writes the same text")
@click.option("--no-prompt", is_flag=True, help="print only the continuation, not the prompt before it")
def sample(run, prompt, n, temperature, top_k, top_p, seed, no_prompt):
    """Continue PROMPT with the model of the text run RUN.h5 (its best checkpoint by validation loss)."""
    text = continuation(run, prompt, n, temperature, top_k, top_p, seed)
    click.echo(text if no_prompt else prompt + text)
