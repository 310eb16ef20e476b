"""Language modelling on characters or words: the data source of task "text" for the training loop.

The model is the stacked recurrent model (cell rnn, gru, lstm) under an embedding, or the
fixed-window MLP (cell mlp, dynamics/models/mlp.py), which carries its last W − 1 tokens where a
recurrent model carries its state. Tokens are characters (`tokens = "char"`) or words
(`tokens = "word"`: tasks/words.py, the `vocab_size` most frequent training words plus <unk>);
below, "characters" means tokens of either kind unless said otherwise.

Training batches are windows of `min_length` characters, time-major (T, B) ids. With
`batching="stream"` the B rows are contiguous streams through the training split and the hidden
state is carried from one window to the next (truncated BPTT): `forward_args()` hands the loop
the model's final state of the previous update, or None at the start of every epoch. With
`batching="random"` every window starts at a random offset from a zero state.

Each check evaluates the first `eval_batch_size` characters of the validation split (a word run:
the words that end within them, so that char and word runs read the same text), cut into
contiguous streams and read with the state carried through them; it reports nats, bits and
perplexity per token, the percentage of wrongly predicted next tokens, and the training speed
since the previous check. Bits per character are the validation text's total nats over its
characters (for words: the characters the evaluated tokens span, spaces included), so char and
word models of one text compare. It also samples `sample_chars` tokens after each of a few fixed
prompts (`samples`), marks the first check at or past 20, 40, 60, 80 and 100 % of max_iters
(`sample_milestone`, the percentage; NaN at other checks) and saves the model to
`<out_dir>/<name>_best.pt` whenever the validation loss improves.
"""
import hashlib
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from tasks.text import Corpus, conditional_entropy, load_text, random_windows, stream_batches
from tasks.words import WordCorpus
from tasks.errors import bad_value

from ..checkpoint import save_atomic
from ..sampling import generate
from . import RECURRENT_CELLS, Source

N_PROMPTS = 3
PROMPT_TOKENS = {"char": 24, "word": 8}
SAMPLE_TEMPERATURE = 0.8
MILESTONES = (20, 40, 60, 80, 100)   # percent of max_iters: the checks whose samples a study reads


def best_path(config):
    return config.run_path.with_name(f"{config.name}_best.pt")


def load_corpus(c):
    """The corpus of config `c`: characters of `c.text` (or the default corpus), or its words."""
    if c.tokens == "char":
        return Corpus.load(c.text or None)
    text, source = load_text(c.text or None)
    corpus = WordCorpus(text, source, vocab_size=c.vocab_size)
    corpus.sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    for name in ("train", "valid"):
        if len(getattr(corpus, name)) < 2:
            raise bad_value("text", source, f"too short: its {name} split has {len(getattr(corpus, name))} words")
    return corpus


def build_lm(c, vocab_size, device=None, dtype=torch.float32, seed=None):
    """The language model of config `c` over `vocab_size` tokens: the Transformer, the window MLP or
    the stacked model."""
    if c.cell == "transformer":   # it reads one training window (min_length) at a time
        from ..models.transformer import build_transformer
        return build_transformer(c, None, vocab_size, "softmax", c.min_length, vocab_size, device=device, dtype=dtype)
    if c.cell == "mlp":
        from ..models.mlp import build_mlp
        return build_mlp(vocab_size, c.window, c.embedding or c.n_hidden, c.n_hidden, c.n_layers, c.dropout,
                         seed=seed, device=device, dtype=dtype)
    from ..models.recurrent import build_model
    return build_model(c.cell, c.embedding or c.n_hidden, c.n_hidden, vocab_size, "softmax", c.activation, c.init,
                       n_layers=c.n_layers, vocab_size=vocab_size, dropout=c.dropout, tie_weights=c.tie_weights,
                       forget_bias=c.forget_bias, seed=seed, device=device, dtype=dtype)


def make_prompts(valid, newline, n=N_PROMPTS, length=PROMPT_TOKENS["char"]):
    """`n` prompts of `length` token ids from the validation split: prompt k starts at the
    first line start after k/n of the split (at k/n itself where no newline follows soon)."""
    length = min(length, len(valid))
    prompts = []
    for k in range(n):
        start = min(k * len(valid) // n, len(valid) - length)
        if newline is not None:
            after = np.flatnonzero(valid[start:start + 400] == newline)
            if after.size and start + after[0] + 1 + length <= len(valid):
                start += int(after[0]) + 1
        prompts.append(valid[start:start + length])
    return prompts


def eval_streams(n_chars, batch_size, window):
    """How evaluation cuts n_chars characters: the number of streams, at most batch_size and
    at least 1, such that each stream holds four windows where the characters allow."""
    return max(1, min(batch_size, n_chars // (4 * window)))


class Text(Source):
    """Batches, loss and validation of language modelling (see the module)."""

    family = "text"
    keys = ("text", "batching", "sample_chars", "tie_weights", "alpha", "window", "tokens", "vocab_size")
    topic = "training"
    cells = RECURRENT_CELLS + ("transformer", "mlp")
    head = "softmax"
    check_columns = ("valid_bpc", "valid_ppl", "chars_per_sec", "sample_milestone")

    @staticmethod
    def validate(c):
        if c.cell == "mlp" and c.tie_weights:
            raise bad_value("tie_weights", True, "false for the mlp")

    def __init__(self, config, device, dtype):
        self.c, self.device, self.dtype = config, device, dtype
        c = config
        self.corpus = load_corpus(c)
        self.vocab_size = self.n_out = self.corpus.vocab_size
        # recorded in the run file: which text, exactly, and its bigram entropy (the W = 1 floor)
        self.attrs = {"corpus": self.corpus.source, "corpus_sha256": self.corpus.sha256, "tokens": c.tokens,
                      "train_bigram_entropy": conditional_entropy(self.corpus.train)}
        self.static = {"vocab": np.array(list(self.corpus.vocab), dtype=object)}
        self.n_in = c.embedding or c.n_hidden
        window, streams = c.min_length, (c.batch_size if c.batching == "stream" else 1)
        unit = "word" if c.tokens == "word" else "character"
        most = len(self.corpus.train) // streams - 1     # a window needs window + 1 tokens
        if window > most:
            cut = f" cut into batch_size={streams} streams" if streams > 1 else ""
            raise bad_value("min_length", window, f"{'at most %d' % most if most >= 1 else 'no window fits'}: "
                            f"the BPTT window must fit the {len(self.corpus.train)}-{unit} training "
                            f"split of {self.corpus.source}{cut}")
        self.rng = np.random.default_rng([c.seed, 2])
        if c.batching == "stream":
            self.batches = stream_batches(self.corpus.train, c.batch_size, window, name="training split")
        else:
            self.batches = random_windows(self.corpus.train, c.batch_size, window, self.rng,
                                          name="training split")
        newline = self.corpus.vocab.find("\n") if c.tokens == "char" else self.corpus.newline
        self.prompt_ids = make_prompts(self.corpus.valid, None if newline in (None, -1) else newline,
                                       length=PROMPT_TOKENS[c.tokens])
        self.prompts = [self.corpus.decode(p) for p in self.prompt_ids]
        # word runs report characters per second as words per second × characters per word
        self.chars_per_token = 1.0 if c.tokens == "char" else \
            self.corpus.chars("train", 0, len(self.corpus.train)) / len(self.corpus.train)
        # eval_batch_size counts characters: a word run reads the words within as many of them
        self.eval_tokens = c.eval_batch_size if c.tokens == "char" else self.corpus.words_within("valid", c.eval_batch_size)
        self.last_samples = None
        self.check_arrays = {"samples": ((len(self.prompts),), "str")}
        self.model = None
        self.state = None          # the state handed to the model for the current batch
        self.best_loss = math.inf
        self.n_checks = 0
        self.updates, self.milestone = 0, 0
        self.chars, self.t0 = 0, None

    # -- the loop's interface -----------------------------------------------------------------
    def build_model(self):
        """The model; its final state is carried from one training batch to the next."""
        self.model = build_lm(self.c, self.vocab_size, self.device, self.dtype, seed=self.c.seed)
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
        self.updates += 1
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
        """Validation loss (nats/token), bits/char, perplexity per token, error (percent wrong
        next tokens), training chars/sec since the last check; samples; the best model."""
        elapsed = time.perf_counter() - self.t0 if self.t0 is not None else 0.0
        speed = self.chars * self.chars_per_token / elapsed if elapsed > 0 and self.chars else math.nan
        kept = model.final_state, model.layer_outputs    # the training batch's, for the loop
        try:
            loss, wrong, n, chars = self.validation(model)
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
                "valid_bpc": loss / chars / math.log(2), "valid_ppl": math.exp(min(valid_loss, 700.0)),
                "chars_per_sec": speed, "sample_milestone": self.passed_milestone(),
                "samples": np.array(samples, dtype=object)}

    def passed_milestone(self):
        """The largest of MILESTONES passed since the last check (percent of max_iters), or NaN."""
        done = 100.0 * self.updates / self.c.max_iters
        due = [m for m in MILESTONES if self.milestone < m <= done + 1e-9]
        if not due:
            return math.nan
        self.milestone = due[-1]
        return float(due[-1])

    def validation(self, model):
        """Summed loss (nats), wrong predictions, predicted tokens and the characters they span,
        over the evaluated validation text."""
        valid = torch.from_numpy(self.corpus.valid)
        n = min(self.eval_tokens, len(valid) - 1)
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
        chars = B * L if self.c.tokens == "char" else self.corpus.chars("valid", 1, B * L + 1)
        return loss, wrong, B * L, chars

    def sample(self, model, seed):
        """`sample_chars` tokens after each prompt (prompt included), drawn with `seed`."""
        ids = torch.from_numpy(np.stack(self.prompt_ids)).to(self.device)
        new = generate(step_fn(model), ids, self.c.sample_chars, temperature=SAMPLE_TEMPERATURE, seed=seed)
        return [self.corpus.decode(np.concatenate([p, row.numpy()])) for p, row in zip(self.prompt_ids, new.cpu())]

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
                "best_loss": self.best_loss, "n_checks": self.n_checks, "vocab": self.corpus.vocab,
                "updates": self.updates, "milestone": self.milestone}

    def load_state_dict(self, state):
        if state["vocab"] != self.corpus.vocab:
            raise bad_value("text", self.c.text, "a text whose vocabulary differs from the checkpoint's")
        if state["position"] is not None:
            self.batches.position = state["position"]
        self.rng.bit_generator.state = state["rng"]
        self.best_loss, self.n_checks = state["best_loss"], state["n_checks"]
        self.updates, self.milestone = state.get("updates", 0), state.get("milestone", 0)
        self._carried = state["carried"]

    def after_resume(self, model):
        """Put the carried state of the checkpoint back into the model, for the next batch."""
        self.model = model
        carried = getattr(self, "_carried", None)
        model.final_state = None if carried is None else [
            tuple(s.to(self.device, self.dtype if s.is_floating_point() else s.dtype) for s in layer)
            for layer in carried]   # the mlp carries token ids


def step_fn(model):
    """generate()'s step: ids (B, t) and a state → logits (B, V) after the last id, new state."""
    def step(ids, state):
        logits = model(ids.t(), state=state).logits
        return logits[-1], model.final_state
    return step


@torch.no_grad()
def stream_loss(model, ids, window):
    """Mean nats per token of predicting ids[1:] from ids[:-1], read as one stream in windows of
    `window` tokens with the state (or the MLP's past tokens) carried: the loss over a whole split."""
    ids = torch.as_tensor(ids, dtype=torch.int64)
    x, y = ids[:-1, None], ids[1:, None]
    total, state = 0.0, None
    for i in range(0, len(x), window):
        logits = model(x[i:i + window], state=state).logits
        state = model.final_state
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[i:i + window].reshape(-1),
                                 reduction="sum").item()
    return total / len(y)


SOURCE = Text
