"""Character-level language modelling: the data source of task "text" for the training loop.

Training batches are windows of `min_length` characters, time-major (T, B) ids. With
`batching="stream"` the B rows are contiguous streams through the training split and the hidden
state is carried from one window to the next (truncated BPTT): `forward_args()` hands the loop
the model's final state of the previous update, or None at the start of every epoch. With
`batching="random"` every window starts at a random offset from a zero state.

Each check evaluates the first `eval_batch_size` characters of the validation split, cut into
contiguous streams and read with the state carried through them; it reports nats, bits and
perplexity per character, the percentage of wrongly predicted next characters, and the training
speed since the previous check. It also samples `sample_chars` characters after each of a few
fixed prompts (`samples`) and saves the model to `<out_dir>/<name>_best.pt` whenever the
validation loss improves.
"""
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from tasks.text import Corpus, random_windows, stream_batches

from ..errors import bad_value
from ..runfile import save_atomic
from ..sampling import generate
from . import Source

N_PROMPTS = 3
PROMPT_CHARS = 24
SAMPLE_TEMPERATURE = 0.8


def best_path(config):
    return config.run_path.with_name(f"{config.name}_best.pt")


def make_prompts(corpus, n=N_PROMPTS, length=PROMPT_CHARS):
    """`n` prompts of `length` characters from the validation split: prompt k starts at the
    first line start after k/n of the split (at k/n itself where no newline follows soon)."""
    valid = corpus.valid
    length = min(length, len(valid))
    newline = corpus.vocab.find("\n")
    prompts = []
    for k in range(n):
        start = min(k * len(valid) // n, len(valid) - length)
        if newline >= 0:
            after = np.flatnonzero(valid[start:start + 400] == newline)
            if after.size and start + after[0] + 1 + length <= len(valid):
                start += int(after[0]) + 1
        prompts.append(corpus.decode(valid[start:start + length]))
    return prompts


def eval_streams(n_chars, batch_size, window):
    """How evaluation cuts n_chars characters: the number of streams, at most batch_size and
    at least 1, such that each stream holds four windows where the characters allow."""
    return max(1, min(batch_size, n_chars // (4 * window)))


class Text(Source):
    """Batches, loss and validation of character-level language modelling (see the module)."""

    family = "text"
    head = "softmax"
    check_columns = ("valid_bpc", "valid_ppl", "chars_per_sec")

    def __init__(self, config, device, dtype):
        self.c, self.device, self.dtype = config, device, dtype
        c = config
        self.corpus = Corpus.load(c.text or None)
        self.vocab_size = self.n_out = self.corpus.vocab_size
        # recorded in the run file: which text, exactly
        self.attrs = {"corpus": self.corpus.source, "corpus_sha256": self.corpus.sha256}
        self.n_in = c.embedding or c.n_hidden
        window, streams = c.min_length, (c.batch_size if c.batching == "stream" else 1)
        most = len(self.corpus.train) // streams - 1     # a window needs window + 1 characters
        if window > most:
            cut = f" cut into batch_size={streams} streams" if streams > 1 else ""
            raise bad_value("min_length", window, f"{'at most %d' % most if most >= 1 else 'no window fits'}: "
                            f"the BPTT window must fit the {len(self.corpus.train)}-character training "
                            f"split of {self.corpus.source}{cut}")
        self.rng = np.random.default_rng([c.seed, 2])
        if c.batching == "stream":
            self.batches = stream_batches(self.corpus.train, c.batch_size, window, name="training split")
        else:
            self.batches = random_windows(self.corpus.train, c.batch_size, window, self.rng,
                                          name="training split")
        self.prompts = make_prompts(self.corpus)
        self.last_samples = None
        self.check_arrays = {"samples": ((len(self.prompts),), "str")}
        self.model = None
        self.state = None          # the state handed to the model for the current batch
        self.best_loss = math.inf
        self.n_checks = 0
        self.chars, self.t0 = 0, None

    # -- the loop's interface -----------------------------------------------------------------
    def build_model(self):
        """The stacked model; its final state is carried from one training batch to the next."""
        self.model = super().build_model()
        return self.model

    def batch(self):
        """(x, y): (T, B) int64 ids on the device, y the next character of each x."""
        if self.t0 is None:
            self.t0 = time.perf_counter()
        x, y = next(self.batches)
        if self.c.batching == "stream" and not self.batches.starts_epoch and self.model is not None:
            self.state = self.model.final_state
        else:
            self.state = None
        self.chars += x.numel()
        return x.t().to(self.device), y.t().to(self.device)

    def forward(self, model, x):
        return model(x, state=self.state)

    @property
    def block_size(self):
        """A Transformer reads one training window at a time."""
        return self.c.min_length

    def example(self):
        """The first window of the validation split, (T, 1) ids."""
        return torch.from_numpy(self.corpus.valid[:self.c.min_length].copy()).long()[:, None].to(self.device)

    def loss(self, logits, y):
        """Mean cross-entropy in nats per character."""
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    @torch.no_grad()
    def evaluate(self, model):
        """Validation loss (nats/char), bits/char, perplexity, error (percent wrong next
        characters), training chars/sec since the last check; samples; the best model."""
        speed = self.chars / (time.perf_counter() - self.t0) if self.t0 is not None and self.chars else math.nan
        kept = model.final_state, model.layer_outputs    # the training batch's, for the loop
        try:
            loss, wrong, n = self.validation(model)
            samples = self.last_samples = self.sample(model, seed=self.c.seed + self.n_checks)
        finally:
            model.final_state, model.layer_outputs = kept
        self.n_checks += 1
        valid_loss = loss / n
        if valid_loss < self.best_loss:
            self.best_loss = valid_loss
            self.save_best(model, valid_loss)
        self.chars, self.t0 = 0, None
        return {"valid_loss": valid_loss, "valid_error": 100.0 * wrong / n,
                "valid_bpc": valid_loss / math.log(2), "valid_ppl": math.exp(min(valid_loss, 700.0)),
                "chars_per_sec": speed, "samples": np.array(samples, dtype=object)}

    def validation(self, model):
        """Summed loss, wrong predictions and characters over the evaluated validation text."""
        valid = torch.from_numpy(self.corpus.valid)
        n = min(self.c.eval_batch_size, len(valid) - 1)
        T = self.c.min_length
        B = eval_streams(n, self.c.batch_size, T)
        L = n // B
        x = valid[:B * L].view(B, L).t().to(self.device)
        y = valid[1:B * L + 1].view(B, L).t().to(self.device)
        loss, wrong, state = 0.0, 0.0, None
        for i in range(0, L, T):
            logits = model(x[i:i + T], state=state).logits
            state = model.final_state
            target = y[i:i + T].reshape(-1)
            flat = logits.reshape(-1, logits.shape[-1])
            loss += F.cross_entropy(flat, target, reduction="sum").item()
            wrong += (flat.argmax(dim=-1) != target).sum().item()
        return loss, wrong, B * L

    def sample(self, model, seed):
        """`sample_chars` characters after each prompt (prompt included), drawn with `seed`."""
        ids = torch.from_numpy(np.stack([self.corpus.encode(p) for p in self.prompts])).to(self.device)
        new = generate(step_fn(model), ids, self.c.sample_chars, temperature=SAMPLE_TEMPERATURE, seed=seed)
        return [p + self.corpus.decode(row) for p, row in zip(self.prompts, new.cpu())]

    def save_best(self, model, valid_loss):
        path = best_path(self.c)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_atomic({"model": model.state_dict(), "config": self.c.to_json(), "vocab": self.corpus.vocab,
                     "valid_loss": valid_loss, "check": self.n_checks}, path)

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self):
        carried = self.model.final_state if self.model is not None and self.c.batching == "stream" else None
        return {"position": getattr(self.batches, "position", None), "rng": self.rng.bit_generator.state,
                "carried": None if carried is None else [tuple(s.cpu() for s in layer) for layer in carried],
                "best_loss": self.best_loss, "n_checks": self.n_checks, "vocab": self.corpus.vocab}

    def load_state_dict(self, state):
        if state["vocab"] != self.corpus.vocab:
            raise bad_value("text", self.c.text, "a text whose vocabulary differs from the checkpoint's")
        if state["position"] is not None:
            self.batches.position = state["position"]
        self.rng.bit_generator.state = state["rng"]
        self.best_loss, self.n_checks = state["best_loss"], state["n_checks"]
        self._carried = state["carried"]

    def after_resume(self, model):
        """Put the carried state of the checkpoint back into the model, for the next batch."""
        self.model = model
        carried = getattr(self, "_carried", None)
        model.final_state = None if carried is None else [
            tuple(s.to(self.device, self.dtype) for s in layer) for layer in carried]


def step_fn(model):
    """generate()'s step: ids (B, t) and a state → logits (B, V) after the last id, new state."""
    def step(ids, state):
        logits = model(ids.t(), state=state).logits
        return logits[-1], model.final_state
    return step
