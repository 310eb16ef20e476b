"""Sequence-to-sequence tasks (copy, reverse, date) as a source for the trainer.

Training batches are fresh pairs from tasks/seq2seq.py. Teacher forcing follows a schedule over
updates i (scheduled sampling, Bengio et al. 2015), ε_0 = `teacher_forcing`, k = `tf_k`:

    constant: ε_i = ε_0              linear: ε_i = ε_0 · max(0, 1 − i/k)
    exponential: ε_i = ε_0 · k^i     inverse_sigmoid: ε_i = ε_0 · k / (k + exp(i/k))

At every decoder step of every sequence a coin with P(heads) = ε_i decides whether the input is the
target token or the model's own previous argmax. Per update the scheduled ε_i (`tf_ratio`) and the
share of target tokens actually fed (`tf_used`) are recorded, one row per check.

Each check decodes a fixed validation set (`eval_batch_size` pairs drawn with seed [seed, 1])
greedily and with beam search and reports token accuracy and exact match of both, the
teacher-forced token accuracy (its gap to greedy's is the exposure bias), greedy exact match per
input format and per source length, and the attention maps of a few fixed examples. The model
with the best greedy exact match (ties: lower validation loss) is saved to `<name>_best.pt`.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

from tasks.seq2seq import EOS, PAD, make
from tasks.errors import bad_value

from ..models.seq2seq import beam_search, build, greedy
from ..checkpoint import save_atomic
from . import Source

N_EXAMPLES = 4        # fixed examples of copy and reverse whose attention is recorded (date: one per format)
EXTRA_STEPS = 10      # decoding may run this many steps beyond the longest target
RECORDS = ("enc_record", "dec_record", "src_len", "tgt_len")   # what a model keeps of its forward for parts()


def teacher_ratio(schedule, start, k, i):
    """ε_i of the schedule at update i."""
    if schedule == "linear":
        return start * max(0.0, 1.0 - i / k)
    if schedule == "exponential":
        return start * k ** i
    if schedule == "inverse_sigmoid":
        return start * k / (k + math.exp(min(i / k, 700.0)))
    return start


def best_path(config):
    return config.run_path.with_name(f"{config.name}_best.pt")


def task_of(c):
    return make(c.task, c.alphabet, c.min_length, c.max_length)


def model_of(c, task, device=None):
    if c.cell == "transformer":
        from ..models.transformer_seq2seq import build as build_transformer
        return build_transformer(c, task, task.longest_target() + EXTRA_STEPS, device, getattr(torch, c.dtype))
    return build(c.cell, len(task.source_vocab), len(task.target_vocab), c.embedding or c.n_hidden, c.n_hidden,
                 c.n_layers, c.bidirectional, c.attention, c.activation, c.init, c.forget_bias, c.seed,
                 getattr(torch, c.dtype), device)


class Batch(tuple):
    """(src (T_s, B), src_len (B,), tgt_in (T_d, B), tgt_len (B,), teacher (T_d, B) bool or None)."""

    @property
    def shape(self):   # the loop records shape[0] as the batch's sequence length: the source's
        return self[0].shape


class Seq2Seq(Source):
    family = "seq2seq"
    keys = ("bidirectional", "alphabet", "attention", "teacher_forcing", "tf_schedule", "tf_k", "beam_size",
            "length_norm", "length_alpha")
    topic = "seq2seq"
    check_columns = ("greedy_token_acc", "greedy_exact", "beam_token_acc", "beam_exact", "tf_token_acc")

    @staticmethod
    def validate(c):
        if c.init not in ("uniform", "orthogonal"):
            raise bad_value("init", c.init, "uniform, orthogonal")
        allowed_k = {"linear": (lambda k: k > 0, "a number > 0 (updates until the ratio reaches 0)"),
                     "exponential": (lambda k: 0 < k < 1, "a number in (0, 1) (the decay per update)"),
                     "inverse_sigmoid": (lambda k: k >= 1, "a number >= 1")}.get(c.tf_schedule)
        if allowed_k and not allowed_k[0](c.tf_k):
            raise bad_value("tf_k", c.tf_k, f"{allowed_k[1]} for tf_schedule={c.tf_schedule}")
        if c.cell == "transformer":        # its own depth; dropout allowed
            from ..models.transformer_seq2seq import validate
            validate(c)
        elif not 1 <= c.n_layers <= 3:
            raise bad_value("n_layers", c.n_layers, "1, 2 or 3 for a seq2seq task")
        elif c.dropout != 0:
            raise bad_value("dropout", c.dropout, "0 for a seq2seq task")
        if c.attention == "luong_dot" and c.bidirectional:
            raise bad_value("attention", c.attention, "bahdanau or luong_general with a bidirectional encoder "
                                                      "(dot scores need decoder and encoder states of one size)")
        if c.task in ("copy", "reverse"):
            make(c.task, c.alphabet, c.min_length, c.max_length)
            if c.max_length > 200:
                raise bad_value("max_length", c.max_length, "at most 200 for copy and reverse")

    def __init__(self, config, device, dtype):
        self.c, self.device, self.dtype = config, device, dtype
        c = config
        self.task = task_of(c)
        self.rng = np.random.default_rng([c.seed, 2])
        self.valid = self.task.generate(c.eval_batch_size, np.random.default_rng([c.seed, 1]))
        self.max_steps = self.task.longest_target() + EXTRA_STEPS
        self.examples = self.pick_examples()
        self.n_lengths = self.task.longest_source() + 1
        self.check_arrays = {"tf_ratio": ((c.check_freq,), "f8"), "tf_used": ((c.check_freq,), "f8"),
                             "exact_by_length": ((self.n_lengths,), "f8"),
                             "exact_by_format": ((len(self.task.formats),), "f8")}
        if c.attention != "none":
            self.check_arrays.update(attention=((len(self.examples), self.max_steps, self.task.longest_source()), "f8"),
                                     attention_output=((len(self.examples),), "str"))
        self.static = {"example_source": np.array([s for s, _, _ in self.examples], dtype=object),
                       "example_target": np.array([t for _, t, _ in self.examples], dtype=object),
                       "formats": np.array(self.task.formats, dtype=object)}
        self.attrs = {"source_vocab": self.task.source_chars, "target_vocab": self.task.target_chars}
        self.updates, self.ratios = 0, []
        self.best = (-1.0, math.inf)
        self.n_checks = 0

    def pick_examples(self):
        """Fixed validation pairs: one per input format (date), or N_EXAMPLES of spread lengths."""
        if self.task.name == "date":
            return [next(p for p in self.valid if p[2] == k) for k in range(len(self.task.formats))]
        lengths = np.array([len(s) for s, _, _ in self.valid])
        wanted = np.linspace(self.c.min_length, self.c.max_length, N_EXAMPLES)
        return [self.valid[int(np.abs(lengths - w).argmin())] for w in wanted]

    # -- the loop's interface -----------------------------------------------------------------
    def build_model(self):
        model = model_of(self.c, self.task, self.device)
        if hasattr(model, "recurrent_matrix_name"):   # its key in weights(): ρ before training is read there
            self.attrs["recurrent_matrix"] = model.recurrent_matrix_name
        return model

    def example(self):
        """The first fixed example's source ids (T_s, 1), for a model that records diagnostics of its own."""
        return self.tensors(self.examples[:1])[0]

    def tensors(self, pairs):
        src, src_len = self.task.encode_source([s for s, _, _ in pairs])
        tgt_in, tgt_out, tgt_len = self.task.encode_target([t for _, t, _ in pairs])
        return [v.to(self.device) for v in (src, src_len, tgt_in, tgt_out, tgt_len)]

    def batch(self):
        src, src_len, tgt_in, tgt_out, tgt_len = self.tensors(self.task.generate(self.c.batch_size, self.rng))
        ratio = teacher_ratio(self.c.tf_schedule, self.c.teacher_forcing, self.c.tf_k, self.updates)
        teacher = None
        if self.c.tf_schedule != "constant" or ratio < 1:
            teacher = torch.from_numpy(self.rng.random(tgt_in.shape) < ratio).to(self.device)
            teacher[0] = True                                     # <sos> is always the first input
        valid = tgt_in != PAD
        valid[0] = True
        used = 1.0 if teacher is None else float((teacher & valid)[1:].sum() / max(int(valid[1:].sum()), 1))
        self.ratios.append((ratio, used))
        self.updates += 1
        return Batch((src, src_len, tgt_in, tgt_len, teacher)), tgt_out

    def forward(self, model, x):
        return model(*x)

    def loss(self, logits, y):
        """Mean cross-entropy over the target tokens, <eos> included, padding left out."""
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=PAD)

    @torch.no_grad()
    def evaluate(self, model):
        c, task = self.c, self.task
        n = len(self.valid)
        loss = tf_right = tokens = 0.0
        greedy_right, beam_right = 0.0, 0.0
        greedy_exact, beam_exact = np.zeros(n, bool), np.zeros(n, bool)
        kept = {k: getattr(model, k) for k in RECORDS if hasattr(model, k)}    # the last update's, for the probes
        for lo in range(0, n, c.chunk_batch_size):
            pairs = self.valid[lo:lo + c.chunk_batch_size]
            src, src_len, tgt_in, tgt_out, tgt_len = self.tensors(pairs)
            logits = model(src, src_len, tgt_in, tgt_len).logits
            valid = tgt_out != PAD
            loss += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1),
                                    ignore_index=PAD, reduction="sum").item()
            tf_right += ((logits.argmax(-1) == tgt_out) & valid).sum().item()
            tokens += valid.sum().item()
            target = tgt_out.t()                                                # (B, T_d)
            ids, _, _ = greedy(model, src, src_len, self.max_steps)
            right, exact = compare(ids, target, tgt_len)
            greedy_right += right
            greedy_exact[lo:lo + len(pairs)] = exact
            hyps = beam_search(model, src, src_len, c.beam_size, self.max_steps, c.length_norm, c.length_alpha)
            width = max(len(h[0][0]) + 1 for h in hyps)
            beam_ids = torch.full((len(pairs), width), PAD, dtype=torch.int64)
            for b, h in enumerate(hyps):
                seq = h[0][0] + [EOS]
                beam_ids[b, :len(seq)] = torch.tensor(seq)
            right, exact = compare(beam_ids.to(target.device), target, tgt_len)
            beam_right += right
            beam_exact[lo:lo + len(pairs)] = exact
        out = {"valid_loss": loss / tokens, "valid_error": 100.0 * (1 - greedy_exact.mean()),
               "greedy_token_acc": 100.0 * greedy_right / tokens, "greedy_exact": 100.0 * greedy_exact.mean(),
               "beam_token_acc": 100.0 * beam_right / tokens, "beam_exact": 100.0 * beam_exact.mean(),
               "tf_token_acc": 100.0 * tf_right / tokens}
        lengths = np.array([len(s) for s, _, _ in self.valid])
        formats = np.array([k for _, _, k in self.valid])
        out["exact_by_length"] = np.array([100.0 * greedy_exact[lengths == L].mean() if (lengths == L).any()
                                           else np.nan for L in range(self.n_lengths)])
        out["exact_by_format"] = np.array([100.0 * greedy_exact[formats == k].mean() if (formats == k).any()
                                           else np.nan for k in range(len(task.formats))])
        ratios = np.full((2, c.check_freq), np.nan)
        ratios[:, :len(self.ratios)] = np.array(self.ratios).T
        out["tf_ratio"], out["tf_used"], self.ratios = ratios[0], ratios[1], []
        if c.attention != "none":
            out.update(self.attention_maps(model))
        for k, v in kept.items():
            setattr(model, k, v)
        self.n_checks += 1
        if (out["greedy_exact"], -out["valid_loss"]) > (self.best[0], -self.best[1]):
            self.best = (out["greedy_exact"], out["valid_loss"])
            self.save_best(model, out)
        return out

    def attention_maps(self, model):
        """Greedy attention weights of the fixed examples, (n, max_steps, longest source), 0 beyond
        each example's output and source, and the output strings."""
        src, src_len, *_ = self.tensors(self.examples)
        ids, _, weights = greedy(model, src, src_len, self.max_steps)
        maps = np.zeros(self.check_arrays["attention"][0])
        outputs = []
        for b in range(len(self.examples)):
            row = ids[b].tolist()
            steps = row.index(EOS) + 1 if EOS in row else len(row)
            maps[b, :steps, :src.shape[0]] = weights[:steps, b].double().cpu().numpy()
            outputs.append(self.task.decode_target(row))
        return {"attention": maps, "attention_output": np.array(outputs, dtype=object)}

    def save_best(self, model, out):
        path = best_path(self.c)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_atomic({"model": model.state_dict(), "config": self.c.to_json(), "check": int(self.n_checks),
                     "greedy_exact": float(out["greedy_exact"]), "valid_loss": float(out["valid_loss"]),
                     "source_vocab": self.task.source_chars, "target_vocab": self.task.target_chars}, path)

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self):
        # plain numbers only: checkpoints are read back as data (weights_only)
        return {"rng": self.rng.bit_generator.state, "updates": int(self.updates),
                "ratios": [float(r) for r in self.ratios], "best": [float(b) for b in self.best],
                "n_checks": int(self.n_checks)}

    def load_state_dict(self, state):
        self.rng.bit_generator.state = state["rng"]
        self.updates, self.ratios = state["updates"], list(state["ratios"])
        self.best, self.n_checks = tuple(state["best"]), state["n_checks"]


def compare(ids, target, lengths):
    """Tokens right (up to and including <eos>) and per-sequence exact match of predictions ids
    (B, L) against targets (B, T) of `lengths` (B,)."""
    B, T = target.shape
    pred = torch.full((B, T), PAD, dtype=ids.dtype, device=ids.device)
    w = min(T, ids.shape[1])
    pred[:, :w] = ids[:, :w]
    valid = torch.arange(T, device=target.device)[None] < lengths[:, None]
    same = (pred == target) & valid
    return same.sum().item(), (same.sum(1) == lengths).cpu().numpy()


SOURCE = Seq2Seq
