"""Sequence classification (tasks `names` and `sentiment`): the data source of the trainer.

Training batches are fresh examples from the task's generator (rng seeded by `seed`), right-padded
to the batch's longest sequence, with their lengths. Validation is one fixed set of
`eval_batch_size` examples (drawn once from [seed, 1]), read in chunks of `chunk_batch_size`.
Per check it reports the loss, error and accuracy (percent), macro-F1 and per-class recall
(percent), the confusion matrix (counts, rows true class, columns predicted) and, with attention
pooling, the attention weights over the tokens of a few fixed validation examples (the first
of each class, at most `N_EXAMPLES`), whose tokens are written once under /static.

`class_weighting = balanced` weights class k's loss by 1 / (K p_k), with p_k the generator's
class probability (`class_balance`), so every class carries the same expected weight.
"""
import numpy as np
import torch
import torch.nn.functional as F

from tasks.labelled import pad
from tasks.names import CLASS_NAMES, Names
from tasks.sentiment import Sentiment
from tasks.errors import InputError, bad_value

from ..models.classifier import Batch, build_classifier
from . import Source

N_EXAMPLES = 5
MAX_LAYERS = 3


def make_task(c):
    """The task's generator; bad options are refused with one line (InputError)."""
    try:
        if c.task == "names":
            return Names(c.n_classes or 5, list(c.class_balance) or None)
        return Sentiment(c.min_length, c.max_length, None if c.distance == -1 else c.distance)
    except ValueError as e:
        raise InputError(str(e)) from None


def confusion_matrix(truth, guess, K):
    """(K, K) counts, row = true class, column = predicted class."""
    return np.bincount(truth * K + guess, minlength=K * K).reshape(K, K)


def scores(confusion):
    """Accuracy, macro-F1 and per-class recall (all percent) of a confusion matrix."""
    C = confusion.astype(float)
    hits, support, predicted = np.diag(C), C.sum(1), C.sum(0)
    recall = np.divide(hits, support, out=np.zeros_like(hits), where=support > 0)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(hits),
                   where=precision + recall > 0)
    return 100 * hits.sum() / C.sum(), 100 * f1.mean(), 100 * recall


class Classify(Source):
    """Batches, loss and validation of sequence classification (see the module)."""

    family = "classify"
    keys = ("pooling", "n_classes", "class_balance", "class_weighting", "distance", "truncate", "bidirectional")
    topic = "classify"
    check_columns = ("accuracy", "macro_f1")

    @staticmethod
    def validate(c):
        if c.task == "names" and c.n_classes != 0 and not 2 <= c.n_classes <= len(CLASS_NAMES):
            raise bad_value("n_classes", c.n_classes, f"an integer from 2 to {len(CLASS_NAMES)} (0: 5)")
        if c.task == "sentiment":
            if c.n_classes not in (0, 2):
                raise bad_value("n_classes", c.n_classes, "2 for task sentiment (negative, positive)")
            if c.class_balance:
                raise bad_value("class_balance", list(c.class_balance), "empty for task sentiment (balanced)")
        if c.task == "names" and c.distance != -1:
            raise bad_value("distance", c.distance, "-1 for task names (distance is a sentiment option)")
        if c.n_layers > MAX_LAYERS:
            raise bad_value("n_layers", c.n_layers, f"1 to {MAX_LAYERS} for classification")
        make_task(c)

    def __init__(self, config, device, dtype):
        c = self.c = config
        self.device, self.dtype = device, dtype
        self.task = make_task(c)
        self.K = len(self.task.classes)
        self.rng = np.random.default_rng(c.seed)            # training batches
        valid = self.task.generate(c.eval_batch_size, np.random.default_rng([c.seed, 1]))
        self.valid = [self.tensors(valid.tokens[i:i + c.chunk_batch_size], valid.labels[i:i + c.chunk_batch_size])
                      for i in range(0, len(valid.labels), c.chunk_batch_size)]
        firsts = [np.flatnonzero(valid.labels == k) for k in range(self.K)]
        chosen = [int(f[0]) for f in firsts if len(f)][:N_EXAMPLES]
        self.examples = self.tensors([valid.tokens[i] for i in chosen], valid.labels[chosen])
        words = [self.cut(valid.tokens[i]) for i in chosen]
        T = max(len(w) for w in words)
        self.static = {"classes": np.array(self.task.classes, dtype=object),
                       "example_tokens": np.array([[self.task.vocab[i] for i in w] + [""] * (T - len(w))
                                                   for w in words], dtype=object),
                       "example_labels": valid.labels[chosen]}
        self.check_arrays = {"recall": ((self.K,), "f8"), "confusion": ((self.K, self.K), "i8")}
        if c.pooling == "attention":
            self.check_arrays["attention"] = ((len(chosen), T), "f8")
        balance = getattr(self.task, "balance", np.full(self.K, 1.0 / self.K))
        self.class_weight = None if c.class_weighting == "none" else \
            torch.as_tensor(1.0 / (self.K * balance), device=device, dtype=dtype)
        self.attrs = {"classes": list(self.task.classes), "grad_time_align": "end"}

    def build_model(self):
        c = self.c
        if c.cell == "transformer":
            from ..models.transformer import build_encoder
            return build_encoder(c, len(self.task.vocab), self.K, self.block_size, self.device, self.dtype)
        return build_classifier(c.cell, len(self.task.vocab), c.embedding or c.n_hidden, c.n_hidden, self.K,
                                c.n_layers, c.bidirectional, c.pooling, c.activation, c.dropout, c.init,
                                c.forget_bias, seed=c.seed, device=self.device, dtype=self.dtype)

    @property
    def block_size(self):
        """The longest sequence an encoder reads: the task's longest."""
        return self.task.max_length

    def example(self):
        """The first fixed example alone, (T, 1) ids (a Transformer's attention maps)."""
        x, _ = self.examples
        n = int(x.lengths[0])
        return Batch(x.ids[:n, :1], x.lengths[:1])

    def cut(self, tokens):
        """The last `truncate` tokens (all of them when truncate is 0)."""
        return tokens[-self.c.truncate:] if self.c.truncate else tokens

    def tensors(self, tokens, labels):
        ids, lengths = pad([self.cut(t) for t in tokens])
        return (Batch(torch.from_numpy(ids).to(self.device), torch.from_numpy(lengths).to(self.device)),
                torch.as_tensor(labels, device=self.device))

    def batch(self):
        ex = self.task.generate(self.c.batch_size, self.rng)
        return self.tensors(ex.tokens, ex.labels)

    def loss(self, logits, y):
        """Mean cross-entropy, weighted per class under `balanced` (normalised by the weights)."""
        return F.cross_entropy(logits, y, weight=self.class_weight)

    @torch.no_grad()
    def evaluate(self, model):
        loss, n, confusion = 0.0, 0, np.zeros((self.K, self.K), dtype=np.int64)
        for x, y in self.valid:
            logits = model(x).logits
            loss += F.cross_entropy(logits, y, reduction="sum").item()
            n += len(y)
            confusion += confusion_matrix(y.cpu().numpy(), logits.argmax(-1).cpu().numpy(), self.K)
        accuracy, macro_f1, recall = scores(confusion)
        out = {"valid_loss": loss / n, "valid_error": 100.0 - accuracy, "accuracy": accuracy,
               "macro_f1": macro_f1, "recall": recall, "confusion": confusion}
        if self.c.pooling == "attention":
            x, _ = self.examples
            model(x)
            out["attention"] = model.attention.t().double().cpu().numpy()   # (examples, T), 0 at padding
            out["attention"][~(np.arange(x.ids.shape[0]) < x.lengths.cpu().numpy()[:, None])] = np.nan
        return out

    def state_dict(self):
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state):
        self.rng.bit_generator.state = state["rng"]


SOURCE = Classify
