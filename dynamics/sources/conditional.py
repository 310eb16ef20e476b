"""Class-conditioned generation (one-to-many): tasks `names_gen` and `sentiment_gen`.

The data are the examples of the classification family's generators (tasks/names.py: names of
N_NAME_CLASSES language families, characters; tasks/sentiment.py: snippets of a sentiment,
words): a fixed training set of TRAIN_EXAMPLES drawn once from [seed, 0], a validation set of
`eval_batch_size` from [seed, 1]. A sequence x_1..x_n of class c is read as the input
<s> x_1 .. x_n and the target x_1 .. x_n <s> (teacher forcing); batches are random training
examples, right-padded, with their lengths; padded steps carry no loss.

Per check: validation loss (nats per token, the closing <s> included) and error (percent wrong
next tokens); then SAMPLES_PER_CLASS sequences per class, drawn at temperature 0.8 from a fixed
seed, give `distinct` (percent of different sequences among them), `novel` (percent not in the
training set) and, with a judge (config `judge`: a classifier run of this harness, trained on real
data of the same classes), `controllability`: the percent that the judge assigns to the class
they were drawn for (`class_control` per class). A few samples per class are kept (`samples`).
"""
import math
from collections import namedtuple
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tasks.labelled import pad
from tasks.names import Names
from tasks.sentiment import Sentiment
from tasks.errors import InputError, bad_value

from ..models.conditional import build_conditional
from ..checkpoint import load_checkpoint, save_atomic
from ..runfile import read_only
from ..sampling import generate
from . import RECURRENT_CELLS, Source

N_NAME_CLASSES = 5          # the classification family's default: a judge of `names` has these
TRAIN_EXAMPLES = 5000
SAMPLES_PER_CLASS = 50
SHOWN = 5                   # samples per class kept in the run file at each check
TEMPERATURE = 0.8
BOUNDARY = "<s>"            # id 0: starts every input, ends every target
IGNORE = -100


def make_generator(task):
    return Names(N_NAME_CLASSES) if task == "names_gen" else Sentiment()


def max_tokens(generator):
    """The longest sequence the generator writes, plus the closing <s>."""
    return getattr(generator, "max_length", 20) + 1


class GenBatch(namedtuple("GenBatch", "ids lengths labels")):
    """Inputs ids (T, B) (<s> first, padded with 0), lengths (B,) with <s>, labels (B,)."""

    @property
    def shape(self):
        return self.ids.shape


def teacher_forcing(tokens, labels):
    """(GenBatch, targets): inputs <s> x_1..x_n, targets x_1..x_n <s>, ids shifted by one for <s>;
    padded targets are IGNORE."""
    inputs = [np.concatenate([[0], t + 1]) for t in tokens]
    ids, lengths = pad(inputs)
    targets = np.full_like(ids, IGNORE)
    for b, t in enumerate(tokens):
        targets[:len(t) + 1, b] = np.concatenate([t + 1, [0]])
    return (GenBatch(torch.from_numpy(ids), torch.from_numpy(lengths), torch.as_tensor(labels, dtype=torch.int64)),
            torch.from_numpy(targets))


@torch.no_grad()
def sample_sequences(model, labels, n_max, temperature=TEMPERATURE, top_k=None, top_p=None, seed=None):
    """One sequence per label (generator token ids, <s> removed), each ended at its first <s> or
    after n_max tokens. The same seed gives the same sequences."""
    device = next(model.parameters()).device
    labels = torch.as_tensor(labels, dtype=torch.int64, device=device)

    def step(ids, state):
        logits = model(ids.t(), labels, state=state).logits
        return logits[-1], model.final_state

    start = torch.zeros(len(labels), 1, dtype=torch.int64, device=device)
    new = generate(step, start, n_max, temperature, top_k, top_p, seed=seed).cpu().numpy()
    out = []
    for row in new:
        end = np.flatnonzero(row == 0)
        out.append(row[:end[0] if end.size else n_max] - 1)
    return out


# -- the judge: a classifier run of the classification family ------------------------------------
def judge_classes(path):
    """The class names of a classifier run file, or InputError saying why it is not one."""
    path = Path(path)
    allowed = "a classifier run file (.h5 of task names or sentiment)"
    if not path.is_file():
        raise bad_value("judge", str(path), f"{allowed}: no such file")
    try:
        with read_only(path) as f:
            fam, classes = f.attrs.get("family"), f.attrs.get("classes")
    except OSError:
        raise bad_value("judge", str(path), f"{allowed}: not an HDF5 run file") from None
    if fam != "classify" or classes is None:
        raise bad_value("judge", str(path), f"{allowed} (this is a {fam or 'non-run'} file)")
    return [str(k) for k in classes]


class Judge:
    """A trained classifier, rebuilt through its own family's source and its last checkpoint."""

    def __init__(self, path, classes, config):
        """`config`: the generating run's, whose class rebuilds the judge's recorded config."""
        from . import make_source
        self.path = Path(path).resolve()
        theirs = judge_classes(path)
        if theirs != list(classes):
            raise bad_value("judge", str(path), f"a classifier of the classes {', '.join(classes)} "
                            f"(it has {', '.join(theirs)})")
        with read_only(path) as f:
            attrs = dict(f.attrs)
            accuracy = f["check/accuracy"][-1] if "check/accuracy" in f and len(f["check/accuracy"]) else math.nan
        config = config.from_json(attrs["config"])
        ckpt = self.path.with_name(f"{config.name}_checkpoint.pt")
        if not ckpt.is_file():
            raise bad_value("judge", str(path), f"a classifier run with its model beside it ({ckpt.name} is missing)")
        self.source = make_source(config, torch.device("cpu"), torch.float32)
        self.model = self.source.build_model()
        saved = load_checkpoint(ckpt, "train the judge again", map_location="cpu")
        self.model.load_state_dict(saved["model"])
        self.model.eval()
        self.attrs = {"judge": str(self.path), "judge_name": str(attrs.get("name", "")),
                      "judge_created": str(attrs.get("created", "")),
                      "judge_checkpoint_iters": int(saved["iters"]),
                      "judge_valid_accuracy": float(accuracy)}

    @torch.no_grad()
    def predict(self, tokens):
        """The class the classifier assigns to each token sequence; -1 for an empty one."""
        out = np.full(len(tokens), -1, dtype=np.int64)
        keep = [i for i, t in enumerate(tokens) if len(t)]
        if keep:
            x, _ = self.source.tensors([tokens[i] for i in keep], np.zeros(len(keep), dtype=np.int64))
            out[keep] = self.model(x).logits.argmax(-1).numpy()
        return out


# -- the source -----------------------------------------------------------------------------------
class Conditional(Source):
    """Batches, loss and checks of class-conditioned generation (see the module)."""

    family = "conditional"
    keys = ("condition", "judge")
    topic = "conditional"
    cells = RECURRENT_CELLS
    check_columns = ("controllability", "distinct", "novel")

    @staticmethod
    def validate(c):
        if c.judge:
            classes = list(make_generator(c.task).classes)
            theirs = judge_classes(c.judge)
            if theirs != classes:
                raise bad_value("judge", c.judge, f"a classifier of the classes {', '.join(classes)} "
                                f"(it has {', '.join(theirs)})")

    def __init__(self, config, device, dtype):
        c = self.c = config
        self.device, self.dtype = device, dtype
        self.gen = make_generator(c.task)
        self.classes = list(self.gen.classes)
        self.K = len(self.classes)
        self.vocab = [BOUNDARY, *self.gen.vocab]
        self.n_max = max_tokens(self.gen)
        train = self.gen.generate(TRAIN_EXAMPLES, np.random.default_rng([c.seed, 0]))
        self.train_tokens, self.train_labels = train.tokens, train.labels
        self.train_texts = {self.gen.text(t) for t in train.tokens}
        valid = self.gen.generate(c.eval_batch_size, np.random.default_rng([c.seed, 1]))
        self.valid = [teacher_forcing(valid.tokens[i:i + c.chunk_batch_size], valid.labels[i:i + c.chunk_batch_size])
                      for i in range(0, len(valid.labels), c.chunk_batch_size)]
        self.rng = np.random.default_rng([c.seed, 2])
        self.judge = Judge(c.judge, self.classes, c) if c.judge else None
        self.attrs = {"classes": self.classes, "vocab_size": len(self.vocab), "train_examples": TRAIN_EXAMPLES,
                      **(self.judge.attrs if self.judge else {"judge": ""})}
        if self.judge:   # the judge on real data: the ceiling of controllability
            real = self.judge.predict(valid.tokens)
            self.attrs["judge_accuracy_on_real"] = float(100 * np.mean(real == valid.labels))
        self.static = {"classes": np.array(self.classes, dtype=object), "vocab": np.array(self.vocab, dtype=object)}
        self.check_arrays = {"class_control": ((self.K,), "f8"), "samples": ((self.K, SHOWN), "str")}
        self.best_loss, self.n_checks = math.inf, 0

    def build_model(self):
        c = self.c
        return build_conditional(c.cell, len(self.vocab), self.K, c.embedding or c.n_hidden, c.n_hidden, c.n_layers,
                                 c.condition, c.activation, c.init, c.forget_bias, seed=c.seed,
                                 device=self.device, dtype=self.dtype)

    def to_device(self, batch, targets):
        return GenBatch(*(t.to(self.device) for t in batch)), targets.to(self.device)

    def batch(self):
        pick = self.rng.integers(len(self.train_tokens), size=self.c.batch_size)
        return self.to_device(*teacher_forcing([self.train_tokens[i] for i in pick], self.train_labels[pick]))

    def forward(self, model, x):
        return model(x.ids, x.labels, lengths=x.lengths)

    def loss(self, logits, y):
        """Mean cross-entropy per valid token (nats)."""
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE)

    @torch.no_grad()
    def evaluate(self, model):
        loss = wrong = n = 0.0
        for batch, targets in self.valid:
            x, y = self.to_device(batch, targets)
            flat, y = model(x.ids, x.labels).logits.reshape(-1, len(self.vocab)), y.reshape(-1)
            loss += F.cross_entropy(flat, y, ignore_index=IGNORE, reduction="sum").item()
            valid = y != IGNORE
            wrong += (flat.argmax(-1)[valid] != y[valid]).sum().item()
            n += valid.sum().item()
        labels = np.repeat(np.arange(self.K), SAMPLES_PER_CLASS)
        tokens = sample_sequences(model, labels, self.n_max, seed=self.c.seed)
        texts = [self.gen.text(t) for t in tokens]
        row = {"valid_loss": loss / n, "valid_error": 100.0 * wrong / n,
               "distinct": 100.0 * len(set(texts)) / len(texts),
               "novel": 100.0 * np.mean([t not in self.train_texts for t in texts]),
               "samples": np.array([texts[k * SAMPLES_PER_CLASS:k * SAMPLES_PER_CLASS + SHOWN] for k in range(self.K)],
                                   dtype=object)}
        if self.judge:
            hit = self.judge.predict(tokens) == labels
            row["controllability"] = 100.0 * hit.mean()
            row["class_control"] = 100.0 * hit.reshape(self.K, SAMPLES_PER_CLASS).mean(axis=1)
        else:
            row["controllability"], row["class_control"] = math.nan, np.full(self.K, np.nan)
        self.n_checks += 1
        if row["valid_loss"] < self.best_loss:
            self.best_loss = row["valid_loss"]
            path = self.c.run_path.with_name(f"{self.c.name}_best.pt")
            path.parent.mkdir(parents=True, exist_ok=True)
            save_atomic({"model": model.state_dict(), "config": self.c.to_json(), "vocab": self.vocab,
                         "classes": self.classes, "valid_loss": row["valid_loss"], "check": self.n_checks}, path)
        return row

    def state_dict(self):
        return {"rng": self.rng.bit_generator.state, "best_loss": self.best_loss, "n_checks": self.n_checks}

    def load_state_dict(self, state):
        self.rng.bit_generator.state = state["rng"]
        self.best_loss, self.n_checks = state["best_loss"], state["n_checks"]


# -- `dynamics sample RUN.h5 --class K` ------------------------------------------------------------
def load_generator(run, config):
    """(model, classes) of a conditional run: its best model by validation loss, else its last
    checkpoint, rebuilt from the run file's config and /static."""
    run = Path(run)
    with read_only(run) as f:
        classes = [str(k) for k in f["static/classes"].asstr()[:]]
        vocab = [str(k) for k in f["static/vocab"].asstr()[:]]
    state = None
    for name in (f"{config.name}_best.pt", f"{config.name}_checkpoint.pt"):
        if run.with_name(name).is_file():
            state = load_checkpoint(run.with_name(name), "train the run again to sample from it",
                                    map_location="cpu")["model"]
            break
    if state is None:
        raise InputError(f"run={str(run)!r} has no model to sample from: neither {config.name}_best.pt "
                         f"nor {config.name}_checkpoint.pt is beside it")
    c = config
    model = build_conditional(c.cell, len(vocab), len(classes), c.embedding or c.n_hidden, c.n_hidden, c.n_layers,
                              c.condition, c.activation, dtype=getattr(torch, c.dtype))
    model.load_state_dict(state)
    return model.eval(), classes


def sample_class(run, config, label, n, temperature=TEMPERATURE, top_k=None, top_p=None, seed=0):
    """`n` sequences (as text) that the run's model writes for class `label` (an index or a name)."""
    from ..sampling import _check
    _check(temperature, top_k, top_p)
    model, classes = load_generator(run, config)
    allowed = f"a class of this run: 0 to {len(classes) - 1} or a name ({', '.join(classes)})"
    if label is None:
        raise bad_value("class", label, allowed)
    k = classes.index(label) if label in classes else None
    if k is None:
        try:
            k = int(label)
        except ValueError:
            raise bad_value("class", label, allowed) from None
        if not 0 <= k < len(classes):
            raise bad_value("class", label, allowed)
    gen = make_generator(config.task)
    tokens = sample_sequences(model, [k] * n, max_tokens(gen), temperature, top_k, top_p, seed=seed)
    return [gen.text(t) for t in tokens]


SOURCE = Conditional
