"""`dynamics sample RUN.h5`: text from a trained language model (characters or words).

The model is the best one by validation loss (`<name>_best.pt` beside the run file) or, failing
that, the last checkpoint (`<name>_checkpoint.pt`); it is rebuilt from the run file's config and
the vocabulary saved with it, then stepped one token at a time with its state carried. A word
model's prompt is tokenized (unknown words become <unk>) and its output detokenized.
"""
import json
from pathlib import Path

import numpy as np
import torch

from tasks.errors import InputError, bad_value

from .runfile import read_only
from .sampling import _check, generate
from .sources import TASKS
from .sources.text import build_lm, step_fn
from .checkpoint import load_checkpoint
from .schema import CHECKPOINT_SUFFIX


def read_config(path, families=("text",)):
    """The config of the run whose file is at `path`, a run of one of `families`."""
    from .sources import family
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
    task = task or values.get("task")
    fam = family(task) if task in TASKS else None
    if fam not in families:
        raise bad_value("run", str(path), f"{' or '.join(f'a {f} run' for f in families)} (this is a {task} run)")
    return make(values, given=())


def same_run(saved, config):
    """Whether a saved config (JSON) is that of `config`, up to what a resume may change."""
    from .config import recorded
    saved, now = recorded(saved), json.loads(config.to_json())
    return all(saved.get(k) == v for k, v in now.items() if k not in ("max_iters", "device"))


def load_model(config, run):
    """(model, vocab, source file) of the best model, or else the last checkpoint, of the run
    whose file is at `run`."""
    run = Path(run)
    best = run.with_name(f"{config.name}_best.pt")
    last = run.with_name(config.name + CHECKPOINT_SUFFIX)
    state = vocab = None
    if best.is_file():
        saved = load_checkpoint(best, f"move it away to sample from {last.name!r}", map_location="cpu")
        if same_run(saved["config"], config):
            state, vocab, source = saved["model"], saved["vocab"], best
    if state is None and last.is_file():
        saved = load_checkpoint(last, "train the run again to sample from it", map_location="cpu")
        state, vocab, source = saved["model"], saved.get("source", {}).get("vocab"), last
        if vocab is None:
            from .sources.text import load_corpus
            vocab = load_corpus(config).vocab
    if state is None:
        raise InputError(f"run={str(run)!r} has no model to sample from: neither {best.name!r} "
                         f"nor {last.name!r} is beside it")
    model = build_lm(config, len(vocab), dtype=getattr(torch, config.dtype))
    model.load_state_dict(state)
    model.eval()
    return model, vocab, source


def encode(prompt, vocab, tokens="char"):
    if tokens == "word":
        from tasks.words import tokenize
        index = {w: i for i, w in enumerate(vocab)}
        ids = [index.get(w, 0) for w in tokenize(prompt)]
        if not ids:
            raise bad_value("prompt", prompt, "text with at least one word, mark or newline")
        return np.array(ids, dtype=np.int64)
    missing = [ch for ch in dict.fromkeys(prompt) if ch not in vocab]
    if missing:
        raise bad_value("prompt", prompt, f"characters of the run's vocabulary of {len(vocab)} "
                        f"({''.join(missing)!r} not in it)")
    index = {ch: i for i, ch in enumerate(vocab)}
    return np.array([index[ch] for ch in prompt], dtype=np.int64)


def continuation(run, prompt, n=200, temperature=0.8, top_k=None, top_p=None, seed=0):
    """The `n` tokens (characters or words) the run's model writes after `prompt`, as text: a
    word model's begin with a space where the detokenizer puts one after the prompt."""
    _check(temperature, top_k, top_p)
    config = read_config(run)
    model, vocab, _ = load_model(config, run)
    if not prompt:
        raise bad_value("prompt", prompt, "a non-empty string")
    ids = encode(prompt, vocab, config.tokens)
    new = generate(step_fn(model), torch.from_numpy(ids), n, temperature, top_k, top_p, seed=seed)
    if config.tokens == "word":
        from tasks.words import detokenize
        before = [vocab[i] for i in ids.tolist()]
        return detokenize(before + [vocab[i] for i in new[0].tolist()])[len(detokenize(before)):]
    return "".join(vocab[i] for i in new[0].tolist())
