"""Character-level text: the corpus, its vocabulary and splits, and the batches of truncated BPTT.

    corpus = Corpus.load("book.txt")            # or Corpus.load() for the default corpus
    batches = stream_batches(corpus.train, batch=32, seq_len=100)
    for x, y in batches:                        # (32, 100) int64 tensors, y = x shifted by one
        if batches.starts_epoch:
            h = None                            # the streams start afresh: drop the carried state
        ...

The default corpus (``path=None``) needs nothing beyond Python itself: it is the docstrings of a
fixed list of standard-library modules (``STDLIB_MODULES``), read with ``ast`` from the
installed standard-library source. It is the same text for the same Python version, which
``Corpus.source`` records; ``Corpus.sha256`` identifies the exact text.
"""

import ast
import functools
import gc
import hashlib
import os
import platform
import sysconfig
import warnings
from pathlib import Path

import numpy as np
import torch

from .errors import InputError, bad_value

DEFAULT_SPLITS = (0.9, 0.05, 0.05)

# Public standard-library modules and packages, present from Python 3.10 on. Left out: modules
# removed by 3.13 (PEP 594 and others), packages that some distributions ship separately
# (tkinter, turtle, idlelib, lib2to3, distutils, venv, ensurepip), and modules with next to no
# docstrings (encodings, html, struct, ...).
STDLIB_MODULES = (
    "abc", "argparse", "ast", "asyncio", "base64", "bdb", "bisect", "bz2", "cProfile",
    "calendar", "cmd", "code", "codecs", "codeop", "collections", "colorsys", "compileall",
    "concurrent", "configparser", "contextlib", "copy", "copyreg", "csv", "ctypes", "curses",
    "dataclasses", "datetime", "dbm", "difflib", "dis", "doctest", "email", "enum", "filecmp",
    "fileinput", "fnmatch", "fractions", "ftplib", "functools", "genericpath", "getopt",
    "getpass", "gettext", "glob", "graphlib", "gzip", "hashlib", "heapq", "hmac", "http",
    "imaplib", "importlib", "inspect", "io", "ipaddress", "json", "keyword", "linecache",
    "locale", "logging", "lzma", "mailbox", "mimetypes", "modulefinder", "multiprocessing",
    "netrc", "ntpath", "nturl2path", "numbers", "operator", "optparse", "os", "pathlib", "pdb",
    "pickle", "pickletools", "pkgutil", "platform", "plistlib", "poplib", "posixpath",
    "pprint", "profile", "pstats", "pty", "py_compile", "pyclbr", "pydoc", "queue", "quopri",
    "random", "re", "reprlib", "rlcompleter", "runpy", "sched", "secrets", "selectors",
    "shelve", "shlex", "shutil", "signal", "site", "smtplib", "socket", "socketserver",
    "sqlite3", "ssl", "stat", "statistics", "string", "subprocess", "symtable", "sysconfig",
    "tabnanny", "tarfile", "tempfile", "textwrap", "threading", "timeit", "tokenize", "trace",
    "traceback", "tracemalloc", "tty", "types", "typing", "unittest", "urllib", "uuid",
    "warnings", "wave", "weakref", "webbrowser", "wsgiref", "xml", "xmlrpc", "zipapp",
    "zipfile", "zipimport", "zoneinfo",
)
DEFAULT_MAX_CHARS = 2_000_000  # the default corpus is cut here, should a Python have more
DEFAULT_MIN_CHARS = 500_000  # fewer means the standard-library source is missing

_DOC_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
_SKIP_DIRS = {"test", "tests", "idle_test", "__pycache__"}


def _docstrings(node):
    """The docstrings under an ast node, in source order."""
    if isinstance(node, _DOC_NODES):
        doc = ast.get_docstring(node, clean=True)
        if doc:
            yield doc
    for child in ast.iter_child_nodes(node):
        yield from _docstrings(child)


def _module_files(root, name):
    """The source files of module `name`: name.py, or every .py file of package name/ sorted
    by path, tests left out. Empty when the module is not installed."""
    if (root / f"{name}.py").is_file():
        return [root / f"{name}.py"]
    files = sorted((root / name).rglob("*.py")) if (root / name).is_dir() else []
    return [f for f in files if not _SKIP_DIRS & set(f.relative_to(root).parts[:-1])]


@functools.lru_cache(maxsize=1)
def stdlib_docstrings(modules=STDLIB_MODULES, max_chars=DEFAULT_MAX_CHARS):
    """The default corpus: (text, source). The docstrings of `modules`, in the order given and
    in source order within a module, joined by blank lines and cut at `max_chars`. Missing
    modules are skipped; `source` says how many were found. Cached: built once a process."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs, found = [], 0
    gc_was_enabled = gc.isenabled()
    gc.disable()  # the parse trees make millions of objects: collecting them halves the speed
    try:
        for name in modules:
            files = _module_files(root, name)
            found += bool(files)
            for path in files:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # e.g. SyntaxWarning for old escapes
                    tree = ast.parse(path.read_bytes(), filename=str(path))
                docs.extend(_docstrings(tree))
    finally:
        if gc_was_enabled:
            gc.enable()
    text = "\n\n".join(docs)[:max_chars]
    source = (f"docstrings of {found}/{len(modules)} standard-library modules of "
              f"{platform.python_implementation()} {platform.python_version()} "
              f"(tasks.text.STDLIB_MODULES)")
    return text, source


def _read_text(path):
    """The UTF-8 text of the file at `path`; InputError for anything else."""
    path = Path(os.path.expanduser(os.fspath(path)))
    if not path.exists():
        raise bad_value("text", str(path), "no such file")
    if not path.is_file():
        raise bad_value("text", str(path), "not a regular file")
    data = path.read_bytes()
    if not data:
        raise bad_value("text", str(path), "the file is empty")
    if b"\x00" in data:
        raise bad_value("text", str(path), "a binary file (it contains NUL bytes), not UTF-8 text")
    try:
        return data.decode("utf-8"), str(path)
    except UnicodeDecodeError as e:
        raise bad_value("text", str(path), f"not UTF-8 text (byte {e.start}: {e.reason})") from None


def load_text(path=None):
    """(text, source): the UTF-8 text of the file at `path`, or the default corpus."""
    if path is None:
        text, source = stdlib_docstrings()
        if len(text) < DEFAULT_MIN_CHARS:
            raise bad_value("text", None, f"the default corpus needs the Python standard-"
                            f"library source under {sysconfig.get_paths()['stdlib']}, which "
                            f"gave only {len(text)} characters; pass a text file")
        return text, source
    return _read_text(path)


def conditional_entropy(ids):
    """H(x_t | x_{t−1}) in nats of a 1-D id sequence, counted directly over its adjacent pairs:
    −Σ_{a,b} p(a, b) log p(b | a), p the pair frequencies."""
    ids = np.asarray(ids, dtype=np.int64)
    prev = ids[:-1]
    pairs = prev * (int(ids.max()) + 1) + ids[1:]
    _, first, counts = np.unique(pairs, return_index=True, return_counts=True)   # n(a, b)
    p_next = counts / np.bincount(prev)[prev[first]]                              # n(a, b) / n(a)
    return float(-(counts * np.log(p_next)).sum() / counts.sum())


class Corpus:
    """A text as character ids: the vocabulary and the contiguous train/validation/test splits.

    Attributes: `vocab` (str: the sorted unique characters; id i is vocab[i]), `vocab_size`,
    `train`, `valid`, `test` (1-D int64 numpy arrays), `splits` (the fractions), `source` (the
    path, or what the default corpus is), `sha256` (hex digest of the text's UTF-8 bytes: for a
    file, the digest of the file).
    """

    def __init__(self, text, source="<string>", splits=DEFAULT_SPLITS):
        """Splits (f_train, f_valid, f_test): three positive fractions summing to 1. Of n
        characters, train is the first floor(f_train n), valid the next floor(f_valid n), and
        test the rest, in the order of the text."""
        if not isinstance(text, str) or not text:
            raise bad_value("text", source, "the text is empty")
        try:
            fractions = tuple(float(f) for f in splits)
        except (TypeError, ValueError):
            fractions = ()
        if len(fractions) != 3 or min(fractions) <= 0 or abs(sum(fractions) - 1) > 1e-6:
            raise bad_value("splits", splits, "three positive fractions that sum to 1")
        self.source, self.splits = source, fractions
        self.sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
        self.vocab = "".join(sorted(set(text)))
        self.vocab_size = len(self.vocab)
        self._codes = np.array([ord(c) for c in self.vocab], dtype=np.uint32)  # sorted
        ids = self.encode(text)
        n = len(ids)
        n_train, n_valid = int(fractions[0] * n), int(fractions[1] * n)
        self.train = ids[:n_train]
        self.valid = ids[n_train:n_train + n_valid]
        self.test = ids[n_train + n_valid:]
        for name in ("train", "valid", "test"):
            if len(getattr(self, name)) < 2:
                raise bad_value("text", source, f"too short: {n} characters leave a {name} split "
                                f"of {len(getattr(self, name))} (at least 2 are needed)")

    @classmethod
    def load(cls, path=None, splits=DEFAULT_SPLITS):
        """The corpus of the UTF-8 text file at `path`; with no path, the default corpus (see
        `stdlib_docstrings`). Splits default to 90% train, 5% validation, 5% test."""
        return cls(*load_text(path), splits)

    def encode(self, s):
        """The ids of the characters of str `s`, as a 1-D int64 array."""
        codes = np.frombuffer(s.encode("utf-32-le"), dtype=np.uint32)
        ids = np.minimum(np.searchsorted(self._codes, codes), self.vocab_size - 1)
        unknown = self._codes[ids] != codes
        if unknown.any():
            c = chr(int(codes[np.argmax(unknown)]))
            raise InputError(f"text: {c!r} is not in the vocabulary of {self.vocab_size} "
                             f"characters of {self.source}")
        return ids.astype(np.int64)

    def decode(self, ids):
        """The str of a sequence of ids (list, numpy array or tensor)."""
        if isinstance(ids, torch.Tensor):
            ids = ids.detach().cpu().numpy()
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"ids must lie in [0, {self.vocab_size}), "
                             f"got {ids.min()}..{ids.max()}")
        return self._codes[ids].astype("<u4").tobytes().decode("utf-32-le")


def _as_ids(data):
    ids = torch.as_tensor(np.asarray(data), dtype=torch.int64)
    if ids.dim() != 1:
        raise ValueError(f"data must be a 1-D sequence of ids, got shape {tuple(ids.shape)}")
    return ids


def _positive(key, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise bad_value(key, value, "a positive integer")
    return int(value)


class StreamBatches:
    """Contiguous streams for truncated BPTT with a carried hidden state.

    The data is cut into `batch` streams of L = len(data) // batch consecutive characters (the
    remainder is dropped); stream b is data[b L:(b + 1) L]. Window k holds characters
    [k T, (k + 1) T) of every stream as x and the next character of each as y, so window k + 1
    continues each stream where window k ended: a state carried from one window to the next
    has seen exactly the stream's past. An epoch is the (L - 1) // T full windows; a last,
    shorter piece is dropped so every batch is (batch, seq_len).

    Iterating yields (x, y), int64 tensors of shape (batch, seq_len), from `position` on, epoch
    after epoch (`epochs` of them in all, or without end when None). `position` counts the
    windows yielded so far, across epochs: save it, and StreamBatches(..., position=saved)
    continues identically. `starts_epoch` is True when the window just yielded is the first of
    an epoch: the streams start afresh there, so the carried state should be reset.
    """

    def __init__(self, data, batch, seq_len, position=0, epochs=None, name="data"):
        ids = _as_ids(data)
        self.batch, self.seq_len = _positive("batch", batch), _positive("seq_len", seq_len)
        length = len(ids) // self.batch
        if length - 1 < self.seq_len:
            raise InputError(f"text: seq_len={self.seq_len} does not fit the {name}: its "
                             f"{len(ids)} characters give batch={self.batch} streams of {length}, "
                             f"and a window needs seq_len + 1")
        self.streams = ids[:length * self.batch].view(self.batch, length)
        self.windows = (length - 1) // self.seq_len
        self.position = int(position)
        self.epochs = epochs

    def __len__(self):
        """The number of windows in an epoch."""
        return self.windows

    def window(self, k):
        """Window k of an epoch, 0 <= k < len(self): (x, y), each (batch, seq_len)."""
        i = k * self.seq_len
        chunk = self.streams[:, i:i + self.seq_len + 1]
        return chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()

    @property
    def epoch(self):
        """The epoch of the next window to be yielded."""
        return self.position // self.windows

    @property
    def starts_epoch(self):
        """Whether the window just yielded is the first of an epoch."""
        return self.position > 0 and (self.position - 1) % self.windows == 0

    def __iter__(self):
        return self

    def __next__(self):
        if self.epochs is not None and self.position >= self.epochs * self.windows:
            raise StopIteration
        x, y = self.window(self.position % self.windows)
        self.position += 1
        return x, y


def stream_batches(data, batch, seq_len, position=0, epochs=None, name="data"):
    """The contiguous-stream batches of `data`: see StreamBatches. `name` (e.g. "validation
    split") is used in the message when seq_len does not fit."""
    return StreamBatches(data, batch, seq_len, position=position, epochs=epochs, name=name)


def random_windows(data, batch, seq_len, rng, name="data"):
    """Batches of `batch` windows at independent uniformly random offsets, without end: (x, y)
    int64 tensors of shape (batch, seq_len), y = x shifted by one character. No state carries
    over between them. `rng` is a numpy Generator (or a seed for one); its state
    (rng.bit_generator.state) is all a resumed run needs."""
    ids = _as_ids(data).numpy()
    batch, seq_len = _positive("batch", batch), _positive("seq_len", seq_len)
    if len(ids) - 1 < seq_len:
        raise InputError(f"text: seq_len={seq_len} does not fit the {name}: its {len(ids)} "
                         f"characters are fewer than seq_len + 1")
    rng = np.random.default_rng(rng)
    offsets = np.arange(seq_len + 1)

    def batches():
        while True:
            starts = rng.integers(0, len(ids) - seq_len, size=batch)
            chunk = torch.from_numpy(ids[starts[:, None] + offsets])
            yield chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()

    return batches()
