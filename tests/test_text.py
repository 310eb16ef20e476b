import hashlib
import itertools
import sys

import numpy as np
import pytest
import torch

from tasks.errors import InputError
from tasks.text import Corpus, StreamBatches, random_windows, stdlib_docstrings, stream_batches

TEXT = "Grüße, naïve café — 日本語 🙂!\nThe quick brown fox jumps over the lazy dog. " \
    * 20


def test_vocab_is_sorted_unique_characters():
    corpus = Corpus(TEXT)
    assert corpus.vocab == "".join(sorted(set(TEXT)))
    assert corpus.vocab_size == len(set(TEXT))
    assert "ü" in corpus.vocab and "🙂" in corpus.vocab


def test_encode_decode_round_trip_with_non_ascii():
    corpus = Corpus(TEXT)
    s = "naïve 日本語 🙂 café\n"
    ids = corpus.encode(s)
    assert ids.dtype == np.int64 and ids.shape == (len(s),)
    assert [corpus.vocab[i] for i in ids] == list(s)
    assert corpus.decode(ids) == s
    assert corpus.decode(torch.from_numpy(ids)) == s
    assert corpus.decode(list(ids)) == s
    whole = np.concatenate([corpus.train, corpus.valid, corpus.test])
    assert corpus.decode(whole) == TEXT


def test_encode_rejects_unknown_characters():
    corpus = Corpus(TEXT)
    with pytest.raises(InputError, match="'€'"):
        corpus.encode("fox €")


def test_splits_are_contiguous_with_documented_sizes():
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    corpus = Corpus(text, splits=(0.8, 0.15, 0.05))
    assert (len(corpus.train), len(corpus.valid), len(corpus.test)) == (800, 150, 50)
    assert corpus.decode(corpus.train) == text[:800]
    assert corpus.decode(corpus.valid) == text[800:950]
    assert corpus.decode(corpus.test) == text[950:]
    default = Corpus(text)
    assert (len(default.train), len(default.valid), len(default.test)) == (900, 50, 50)
    assert all(a.dtype == np.int64 for a in (default.train, default.valid, default.test))


def test_load_file(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text(TEXT, encoding="utf-8")
    corpus = Corpus.load(path)
    assert corpus.source == str(path)
    assert corpus.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert corpus.decode(np.concatenate([corpus.train, corpus.valid, corpus.test])) == TEXT
    assert Corpus.load(str(path), splits=(0.5, 0.25, 0.25)).valid.shape == (len(TEXT) // 4,)


@pytest.fixture(scope="module")
def default_corpus():
    return Corpus.load()


def test_default_corpus_is_large_english_and_records_its_python(default_corpus):
    corpus = default_corpus
    n = len(corpus.train) + len(corpus.valid) + len(corpus.test)
    assert n >= 500_000
    assert ".".join(map(str, sys.version_info[:3])) in corpus.source
    text = corpus.decode(np.concatenate([corpus.train, corpus.valid, corpus.test]))
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == corpus.sha256
    assert " the " in text and "Return" in text
    assert corpus.vocab_size < 200


def test_default_corpus_is_deterministic(default_corpus):
    text, source = stdlib_docstrings.__wrapped__()  # built again, not from the cache
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == default_corpus.sha256
    assert source == default_corpus.source
    assert Corpus.load().sha256 == default_corpus.sha256


def _message(excinfo):
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path):
    path = tmp_path / "nope.txt"
    with pytest.raises(InputError) as e:
        Corpus.load(path)
    assert "text=" in _message(e) and str(path) in _message(e) and "no such file" in _message(e)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    with pytest.raises(InputError) as e:
        Corpus.load(path)
    assert "text=" in _message(e) and "is not allowed: the file is empty" in _message(e)


@pytest.mark.parametrize("data, problem", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 10, "NUL bytes"),
    (b"valid UTF-8 apart from the NUL\x00" * 10, "NUL bytes"),
    ("café au lait, s'il vous plaît".encode("latin-1") * 10, "not UTF-8"),
])
def test_binary_or_non_utf8_file(tmp_path, data, problem):
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    with pytest.raises(InputError) as e:
        Corpus.load(path)
    assert "text=" in _message(e) and str(path) in _message(e) and problem in _message(e)


def test_text_too_short_for_three_splits():
    with pytest.raises(InputError, match="text=.*too short"):
        Corpus("abcdefghij")


@pytest.mark.parametrize("splits", [(0.9, 0.1), (0.9, 0.1, 0.0), (0.5, 0.3, 0.3), "abc"])
def test_bad_splits(splits):
    with pytest.raises(InputError, match="splits="):
        Corpus(TEXT, splits=splits)


def test_seq_len_larger_than_split():
    corpus = Corpus(TEXT)  # a validation split of len(TEXT) // 20 = 72 characters
    assert len(corpus.valid) == 72
    with pytest.raises(InputError) as e:
        stream_batches(corpus.valid, batch=1, seq_len=72, name="validation split")
    assert "text: seq_len=72" in _message(e) and "validation split" in _message(e)
    stream_batches(corpus.valid, batch=1, seq_len=71)  # the largest that fits one stream
    with pytest.raises(InputError, match="text: seq_len=18"):
        stream_batches(corpus.valid, batch=4, seq_len=18)  # streams of 18
    with pytest.raises(InputError, match="text: seq_len=72"):
        random_windows(corpus.valid, batch=4, seq_len=72, rng=0)
    with pytest.raises(InputError, match="seq_len=0"):
        stream_batches(corpus.train, batch=4, seq_len=0)
    with pytest.raises(InputError, match="batch=0"):
        random_windows(corpus.train, batch=0, seq_len=4, rng=0)


# Batches: the data are ids 0..n-1, so an id is its position in the data.
N, B, T = 1003, 4, 10
L = N // B  # 250 characters a stream; (L - 1) // T = 24 windows an epoch
DATA = np.arange(N, dtype=np.int64)


def test_stream_batch_shapes_and_shift():
    batches = stream_batches(DATA, B, T)
    assert len(batches) == 24
    for k, (x, y) in enumerate(itertools.islice(batches, 30)):
        assert x.shape == y.shape == (B, T) and x.dtype == y.dtype == torch.int64
        assert torch.equal(y[:, :-1], x[:, 1:])
        start = torch.arange(B)[:, None] * L + (k % 24) * T
        assert torch.equal(x, start + torch.arange(T))  # stream b is DATA[b L:(b + 1) L]
        assert torch.equal(y[:, -1], x[:, -1] + 1)  # y continues the stream


def test_stream_batches_continue_each_stream():
    batches = stream_batches(DATA, B, T)
    (x1, y1), (x2, y2) = next(batches), next(batches)
    assert torch.equal(x2[:, 0], y1[:, -1])  # window 2 starts where window 1's targets ended
    assert torch.equal(x2[:, 0], x1[:, -1] + 1)
    epoch = list(itertools.islice(stream_batches(DATA, B, T), len(batches)))
    xs = torch.cat([x for x, _ in epoch], dim=1)
    for b in range(B):  # an epoch of x is the stream, in order, less its last piece
        assert torch.equal(xs[b], torch.from_numpy(DATA[b * L:b * L + 24 * T]))


def test_stream_batches_epochs_and_resume():
    batches = stream_batches(DATA, B, T, epochs=2)
    seen = []
    for x, y in batches:
        seen.append((x, y, batches.starts_epoch, batches.epoch))
    assert len(seen) == 48 and batches.position == 48
    assert [k for k, s in enumerate(seen) if s[2]] == [0, 24]
    assert torch.equal(seen[24][0], seen[0][0])
    resumed = StreamBatches(torch.from_numpy(DATA), B, T, position=23, epochs=2)
    rest = list(resumed)
    assert len(rest) == 25
    for (x, y), (x0, y0, *_) in zip(rest, seen[23:]):
        assert torch.equal(x, x0) and torch.equal(y, y0)
    assert list(stream_batches(DATA, B, T, position=48, epochs=2)) == []


def test_random_windows_shift_and_reproducible_by_seed():
    a = list(itertools.islice(random_windows(DATA, 8, T, np.random.default_rng(7)), 5))
    b = list(itertools.islice(random_windows(DATA, 8, T, np.random.default_rng(7)), 5))
    c = list(itertools.islice(random_windows(DATA, 8, T, np.random.default_rng(8)), 5))
    for (x, y), (xb, yb) in zip(a, b):
        assert x.shape == y.shape == (8, T) and x.dtype == torch.int64
        assert torch.equal(x, xb) and torch.equal(y, yb)
        assert torch.equal(x, x[:, :1] + torch.arange(T))  # a window of the data
        assert torch.equal(y, x + 1)
        assert int(y.max()) < N
    assert not all(torch.equal(x, xc) for (x, _), (xc, _) in zip(a, c))
    starts = torch.cat([x[:, 0] for x, _ in itertools.islice(random_windows(DATA, 64, T, 1), 50)])
    assert int(starts.min()) < 50 and int(starts.max()) > N - T - 50  # offsets span the data
