"""Character-level sequence-to-sequence tasks: copy, reverse, and date translation.

    task = make("reverse", alphabet=20, min_length=5, max_length=30)
    pairs = task.generate(64, rng)        # [(source, target, format index), ...] strings
    src, lengths = task.encode_source([s for s, _, _ in pairs])   # (T, B) ids, (B,)

Token ids 0, 1, 2 are `<pad>`, `<sos>`, `<eos>` in both vocabularies; the characters follow.
`copy` and `reverse` draw a length uniformly in min_length..max_length and then each symbol
uniformly from the alphabet. `date` draws a day uniformly from 1900-01-01 to 2099-12-31 and one
of FORMATS uniformly; its target is always e.g. "Sep 30, 2025".
"""
import datetime

import numpy as np
import torch

from .errors import bad_value

PAD, SOS, EOS = 0, 1, 2
SPECIALS = ("<pad>", "<sos>", "<eos>")
SYMBOLS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

# name -> how a date is written in that format (English names, no locale)
FORMATS = {
    "iso": lambda d: f"{d.year:04d}-{d.month:02d}-{d.day:02d}",                       # 2025-09-30
    "dmy_slash": lambda d: f"{d.day:02d}/{d.month:02d}/{d.year:04d}",                 # 30/09/2025
    "month_day_year": lambda d: f"{MONTHS[d.month - 1]} {d.day}, {d.year}",           # September 30, 2025
    "day_mon_year": lambda d: f"{d.day} {MONTHS[d.month - 1][:3]} {d.year}",          # 30 Sep 2025
    "weekday_long": lambda d: f"{WEEKDAYS[d.weekday()]}, {d.day} {MONTHS[d.month - 1]} {d.year}",
}
FIRST_DAY, N_DAYS = datetime.date(1900, 1, 1).toordinal(), (datetime.date(2099, 12, 31) - datetime.date(1900, 1, 1)).days + 1


def date_target(d):
    return f"{MONTHS[d.month - 1][:3]} {d.day}, {d.year}"                             # Sep 30, 2025


def letters(words):
    return sorted(set("".join(words)))


class Seq2SeqTask:
    """A task's vocabularies, its sampler, and the encoding of strings into padded id tensors."""

    def __init__(self, name, alphabet=20, min_length=1, max_length=10):
        self.name = name
        if name == "date":
            self.formats = tuple(FORMATS)
            self.source_chars = "".join(sorted(set("0123456789-/ ,") | set(letters(MONTHS + WEEKDAYS))))
            self.target_chars = "".join(sorted(set("0123456789 ,") | set(letters(m[:3] for m in MONTHS))))
        else:
            if not 1 <= alphabet <= len(SYMBOLS):
                raise bad_value("alphabet", alphabet, f"an integer in 1..{len(SYMBOLS)}")
            self.formats = (name,)
            self.source_chars = self.target_chars = SYMBOLS[:alphabet]
        self.min_length, self.max_length = min_length, max_length
        self.source_vocab = SPECIALS + tuple(self.source_chars)
        self.target_vocab = SPECIALS + tuple(self.target_chars)
        self.source_index = {ch: i + len(SPECIALS) for i, ch in enumerate(self.source_chars)}
        self.target_index = {ch: i + len(SPECIALS) for i, ch in enumerate(self.target_chars)}

    def sample(self, rng):
        """One (source, target, format index) triple."""
        if self.name == "date":
            d = datetime.date.fromordinal(FIRST_DAY + int(rng.integers(N_DAYS)))
            k = int(rng.integers(len(FORMATS)))
            return FORMATS[self.formats[k]](d), date_target(d), k
        n = int(rng.integers(self.min_length, self.max_length + 1))
        source = "".join(self.source_chars[i] for i in rng.integers(len(self.source_chars), size=n))
        return source, (source if self.name == "copy" else source[::-1]), 0

    def generate(self, n, rng):
        return [self.sample(rng) for _ in range(n)]

    def longest_source(self):
        if self.name == "date":
            return max(len(f(datetime.date(2000, 9, 27))) for f in FORMATS.values())   # a Wednesday in September
        return self.max_length

    def longest_target(self):
        return len("Sep 30, 2025") if self.name == "date" else self.max_length

    def check_source(self, text, key="input"):
        """Refuse a string the source vocabulary cannot encode, naming the character and its position."""
        if not text:
            raise bad_value(key, text, "a non-empty string")
        for i, ch in enumerate(text):
            if ch not in self.source_index:
                raise bad_value(key, text, f"characters of the source vocabulary {self.source_chars!r} "
                                           f"({ch!r} at position {i} is not in it)")

    def encode_source(self, texts):
        """(T, B) int64 ids right-padded with <pad>, and the lengths (B,)."""
        lengths = torch.tensor([len(t) for t in texts])
        ids = torch.full((int(lengths.max()), len(texts)), PAD, dtype=torch.int64)
        for b, t in enumerate(texts):
            ids[:len(t), b] = torch.tensor([self.source_index[ch] for ch in t])
        return ids, lengths

    def encode_target(self, texts):
        """Decoder inputs `<sos> y_1 .. y_n` and outputs `y_1 .. y_n <eos>`, (T, B) each padded, and
        the lengths n + 1 (B,)."""
        lengths = torch.tensor([len(t) + 1 for t in texts])
        out = torch.full((int(lengths.max()), len(texts)), PAD, dtype=torch.int64)
        for b, t in enumerate(texts):
            out[:len(t) + 1, b] = torch.tensor([self.target_index[ch] for ch in t] + [EOS])
        inp = torch.cat([torch.full_like(out[:1], SOS), out[:-1]])
        inp[inp == EOS] = PAD
        return inp, out, lengths

    def decode_target(self, ids):
        """The characters of target ids up to the first <eos> (specials dropped)."""
        chars = []
        for i in ids:
            if i == EOS:
                break
            if i >= len(SPECIALS):
                chars.append(self.target_vocab[i])
        return "".join(chars)


def make(name, alphabet=20, min_length=1, max_length=10):
    if name not in ("copy", "reverse", "date"):
        raise bad_value("task", name, "copy, reverse, date")
    return Seq2SeqTask(name, alphabet, min_length, max_length)


def draw(task, n, seed):
    """n pairs from a fresh generator seeded with `seed` (fixed validation sets)."""
    return task.generate(n, np.random.default_rng(seed))
