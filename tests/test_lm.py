"""Language models beyond the recurrent character model: the fixed-window MLP (windows, the
one-token shift, the bigram floor) and word tokens (tokenizer, vocabulary, bits per character,
samples at fractions of training). Tiny models on tiny texts."""
import math
import random

import h5py
import numpy as np
import pytest
import torch

from dynamics import cli
from dynamics.config import make
from dynamics.models.mlp import build_mlp, windows
from dynamics.sources.text import build_lm, load_corpus, stream_loss
from dynamics.train import checkpoint_path, train
from tasks.text import conditional_entropy
from tasks.words import UNK, WordCorpus, detokenize, tokenize

WORDS = ("the cat sat on a mat and the dog ran to the red door while a bird sang over "
         "one small tree in the old town by the sea").split()


def word_text(n_words=1500, seed=0):
    rng = random.Random(seed)
    lines = []
    while sum(len(l.split()) for l in lines) < n_words:
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 9))]
        if rng.random() < 0.5:
            words.insert(rng.randint(1, len(words) - 1), ",")
        lines.append(detokenize(words + ["."]).capitalize())
    return "\n".join(lines) + "\n"


def markov_text(n=4000, seed=0, k=6):
    """Characters of a first-order Markov chain over k letters with a fixed random transition matrix."""
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.full(k, 0.5), size=k)
    x = [0]
    for _ in range(n - 1):
        x.append(rng.choice(k, p=P[x[-1]]))
    return "".join("abcdef"[i] for i in x)


def lm_config(text_path, out_dir, **changes):
    values = dict(task="text", text=str(text_path), cell="mlp", window=3, n_hidden=32, embedding=8,
                  batch_size=4, min_length=20, max_length=20, optimizer="adam", lr=0.01, max_iters=20,
                  check_freq=10, eval_batch_size=400, sample_chars=10, seed=3, name="t", out_dir=str(out_dir))
    values.update(changes)
    return make(values)


# -- the window MLP ------------------------------------------------------------------------------
def test_windows_shapes_and_contents():
    T, B, W = 5, 2, 3
    x = torch.arange(T * B).view(T, B) + 10
    past = torch.full((W - 1, B), 99)
    ctx = windows(x, W, past)
    assert ctx.shape == (T, B, W)
    for t in range(T):
        for b in range(B):
            expect = [99] * max(0, W - 1 - t) + x[max(0, t - W + 1):t + 1, b].tolist()
            assert ctx[t, b].tolist() == expect          # x_{t-W+1..t}, oldest first, padded
    assert windows(x, 1, past[:0]).squeeze(-1).equal(x)   # W = 1: the token itself


@pytest.mark.parametrize("window", [1, 4])
def test_mlp_predicts_from_the_past_only_and_streams_in_windows(window):
    model = build_mlp(7, window, 4, 16, n_layers=2, seed=0)
    x = torch.randint(0, 7, (12, 3), generator=torch.Generator().manual_seed(0))
    logits = model(x).logits
    assert logits.shape == (12, 3, 7)
    t = 6
    changed = x.clone()
    changed[t] = (changed[t] + 1) % 7
    after = model(changed).logits
    assert torch.equal(after[:t], logits[:t])                      # the future does not leak back
    assert not torch.allclose(after[t], logits[t])                  # position t reads x_t ...
    if window > 1:
        assert not torch.allclose(after[t + window - 1], logits[t + window - 1])   # ... and W − 1 after
    assert torch.equal(after[t + window:], logits[t + window:])     # ... and nothing beyond W
    # two windows with the last W − 1 tokens carried = one long sequence
    first = model(x[:5]).logits
    second = model(x[5:], state=model.final_state).logits
    assert torch.allclose(torch.cat([first, second]), logits, atol=1e-6)


def test_mlp_parts_hold_the_gradient_of_each_hidden_layer():
    model = build_mlp(5, 2, 3, 8, n_layers=2, seed=1)
    x = torch.randint(0, 5, (6, 2), generator=torch.Generator().manual_seed(1))
    out = model(x)
    hs = [h for h, _ in model.layer_outputs]
    loss = out.logits.logsumexp(-1).sum()
    expect = torch.autograd.grad(loss, hs, retain_graph=True)
    loss.backward()
    parts = model.parts()
    assert [p.name for p in parts] == ["0", "1"] and all(p.cell == "mlp" for p in parts)
    for part, h, g in zip(parts, hs, expect):
        assert part.hidden.shape == (1, 12, 8)                       # one step, every position a sample
        assert torch.allclose(part.grad, g.reshape(1, 12, 8))
        assert torch.equal(part.hidden, h.detach().reshape(1, 12, 8))
    assert not hasattr(model, "recurrent_matrix")


def test_w1_training_loss_reaches_the_counted_bigram_entropy(tmp_path):
    """The pipeline check: a W = 1 MLP trained on the whole training split (one full-batch window)
    has a training loss over that split within 0.02 nats of H(x_t | x_{t−1}) counted directly,
    and never below it (below would mean the target leaked into the input)."""
    text = tmp_path / "markov.txt"
    text.write_text(markov_text())
    corpus = load_corpus(lm_config(text, tmp_path))
    n = len(corpus.train) - 1
    c = lm_config(text, tmp_path, window=1, n_hidden=32, embedding=8, batch_size=1, min_length=n, max_length=n,
                  lr=0.05, max_iters=150, check_freq=150, eval_batch_size=100, sample_chars=5)
    path = train(c, progress=False)
    model = build_lm(c, corpus.vocab_size)
    model.load_state_dict(torch.load(checkpoint_path(c), weights_only=False)["model"])
    loss = stream_loss(model, corpus.train, window=500)
    H = conditional_entropy(corpus.train)
    with h5py.File(path, "r") as f:
        assert f.attrs["train_bigram_entropy"] == pytest.approx(H)
    assert H > 0.5                                                    # a non-trivial chain
    assert -1e-4 < loss - H < 0.02


def test_mlp_run_records_probes_without_recurrence(tmp_path):
    from analysis.figures import available_panels
    from analysis.panels import PANELS
    from analysis.read import load
    text = tmp_path / "book.txt"
    text.write_text(word_text())
    path = train(lm_config(text, tmp_path), progress=False)
    snap = load(path)
    assert snap.cell == "mlp" and np.isnan(snap.check["rho"]).all()
    assert snap.grad_time.shape[1] == 1
    keys = available_panels(snap, list(PANELS))
    assert "saturation" in keys and "lm" in keys
    assert not {"grad_time", "grad_time_layers", "rho", "eigenvalues", "gates"} & set(keys)


# -- word tokens ----------------------------------------------------------------------------------
def test_tokenizer_round_trip_with_unknown_words():
    text = 'The cat sat, and "the dog" ran (to the mat).\nDon\'t go: 42% stay!\n'
    assert tokenize(text)[:4] == ["The", "cat", "sat", ","]
    assert "\n" in tokenize(text) and "Don't" in tokenize(text)
    assert detokenize(tokenize(text)) == text                         # normalised text comes back exactly
    corpus = WordCorpus("the cat sat on the mat. " * 40 + "the dog ran. " * 5, vocab_size=4)
    assert corpus.vocab[0] == UNK and len(corpus.vocab) == 5
    assert corpus.vocab[1:3] == ["the", "cat"] or corpus.vocab[1] == "the"
    ids = corpus.encode("the zebra sat on the mat.")
    words = [corpus.vocab[i] for i in ids]
    known = set(corpus.vocab)
    assert words == [w if w in known else UNK for w in tokenize("the zebra sat on the mat.")]
    assert corpus.decode(ids) == detokenize(words)
    assert "<unk>" in corpus.decode(ids) and "zebra" not in corpus.decode(ids)
    assert corpus.encode(corpus.decode(ids)).tolist() == ids.tolist()      # <unk> reads back as itself


def test_word_bits_per_character_against_a_direct_computation(tmp_path):
    text_path = tmp_path / "book.txt"
    text = word_text()
    text_path.write_text(text)
    c = lm_config(text_path, tmp_path, tokens="word", vocab_size=20, cell="gru", batch_size=1, min_length=10,
                  max_length=10, max_iters=10, check_freq=10, eval_batch_size=300)
    path = train(c, progress=False)
    corpus = load_corpus(c)
    model = build_lm(c, corpus.vocab_size)
    model.load_state_dict(torch.load(checkpoint_path(c), weights_only=False)["model"])
    model.eval()
    # the validation text, and the m words that end within its first 300 characters, counted on it
    n = len(text)
    valid_text = text[int(0.9 * n):int(0.9 * n) + int(0.05 * n)]
    ends, pos = [], 0
    for tok in tokenize(valid_text):
        pos = valid_text.index(tok, pos) + len(tok)
        ends.append(pos)
    m = sum(e <= 300 for e in ends)
    chars = ends[m] - ends[0]                  # the characters of words 1..m, the spaces before them included
    # one stream (batch_size 1): words 0..m-1 predict words 1..m
    with torch.no_grad():
        ids = torch.from_numpy(corpus.valid[:m + 1])
        logp = torch.log_softmax(model(ids[:-1, None]).logits[:, 0], dim=-1)
        nats = -logp[torch.arange(m), ids[1:]].sum().item()
    with h5py.File(path, "r") as f:
        bpc, ppl, loss = f["check/valid_bpc"][-1], f["check/valid_ppl"][-1], f["check/valid_loss"][-1]
        assert list(f["static/vocab"].asstr()[:]) == corpus.vocab
    assert m > 30
    assert loss == pytest.approx(nats / m, rel=1e-5)
    assert ppl == pytest.approx(math.exp(nats / m), rel=1e-5)
    assert bpc == pytest.approx(nats / chars / math.log(2), rel=1e-5)
    assert chars > m * 2                                              # words are longer than one character


def test_word_run_samples_readable_text_and_marks_fractions_of_training(tmp_path, capsys):
    text = tmp_path / "book.txt"
    text.write_text(word_text())
    c = lm_config(text, tmp_path, tokens="word", vocab_size=12, cell="lstm", max_iters=10, check_freq=2)
    path = train(c, progress=False)
    with h5py.File(path, "r") as f:
        assert f["check/sample_milestone"][:].tolist() == [20, 40, 60, 80, 100]
        assert f.attrs["tokens"] == "word"
    cli.main(["sample", str(path), "--prompt", "The zebra sat", "-n", "30", "--seed", "1", "--no-prompt"])
    out = capsys.readouterr().out
    assert out.strip() and " ," not in out and " ." not in out and "\n " not in out
    assert set(tokenize(out)) <= set(load_corpus(c).vocab)


def test_milestones_at_checks_that_pass_them(tmp_path):
    text = tmp_path / "book.txt"
    text.write_text(word_text())
    path = train(lm_config(text, tmp_path, max_iters=10, check_freq=3), progress=False)   # checks 3 6 9 10
    with h5py.File(path, "r") as f:
        marks = f["check/sample_milestone"][:]
    assert marks.tolist() == [20, 60, 80, 100]          # 30 % passes 20; 60 % passes 40 and 60


@pytest.mark.parametrize("flag, value, message", [
    ("window", "0", "window=0 is not allowed"),
    ("vocab_size", "1", "vocab_size=1 is not allowed"),
    ("tokens", "bytes", "tokens='bytes' is not allowed"),
])
def test_bad_language_model_keys(tmp_path, capsys, flag, value, message):
    text = tmp_path / "book.txt"
    text.write_text(word_text())
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--task", "text", "--text", str(text), "--cell", "mlp", "--out-dir", str(tmp_path),
                  "--set", f"{flag}={value}", "--quiet"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.h5"))


def test_mlp_only_for_text(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--task", "mem", "--cell", "mlp", "--out-dir", str(tmp_path), "--quiet"])
    assert e.value.code == 2 and "cell='mlp' is not allowed" in capsys.readouterr().err
