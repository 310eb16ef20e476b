"""Character-level language modelling in the training loop: carried state, learning, sampling,
resume, bad input. Tiny models on a tiny generated corpus, so the file runs in seconds."""
import json
import math
import random

import h5py
import numpy as np
import pytest
import torch

from dynamics import cli
from dynamics.config import Config, make
from dynamics.train import Run, train

WORDS = ("the cat sat on a mat and the dog ran to the red door while a bird sang over "
         "one small tree in the old town by the sea").split()


def corpus_text(n_chars=8000, seed=0):
    rng = random.Random(seed)
    lines, size = [], 0
    while size < n_chars:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9))).capitalize() + "."
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)[:n_chars]


@pytest.fixture(scope="module")
def book(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "book.txt"
    path.write_text(corpus_text(), encoding="utf-8")
    return path


def config(book, out_dir, **changes):
    values = dict(task="text", text=str(book), cell="gru", n_hidden=32, batch_size=8, min_length=25,
                  optimizer="adam", lr=0.01, clip="rescale", cutoff=1.0, max_iters=60, check_freq=20,
                  eval_batch_size=300, sample_chars=20, dropout=0.1, seed=3, name="t", out_dir=str(out_dir))
    values.update(changes)
    return make(values)


def record_states(model):
    """Replace model.forward by one that records the state it is given."""
    seen, forward = [], model.forward

    def recording(x, state=None):
        seen.append(state)
        return forward(x, state)
    model.forward = recording
    return seen


def same_state(a, b):
    return len(a) == len(b) and all(torch.equal(s, t) for la, lb in zip(a, b) for s, t in zip(la, lb))


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_state_carried_across_batches_and_reset_at_epoch_start(book, tmp_path, cell):
    run = Run(config(book, tmp_path, cell=cell, n_layers=2))
    seen = record_states(run.model)
    windows = len(run.source.batches)
    finals = []
    for _ in range(windows + 2):
        run.step()
        finals.append(run.model.final_state)
    assert seen[0] is None                                   # the first batch starts from zero
    for k in range(1, windows):
        assert same_state(seen[k], finals[k - 1])            # batch k+1 starts where batch k ended
    assert seen[windows] is None                             # a new epoch starts afresh
    assert same_state(seen[windows + 1], finals[windows])
    assert len(finals[0]) == 2 and len(finals[0][0]) == (2 if cell == "lstm" else 1)


def test_check_keeps_the_training_state(book, tmp_path):
    """Validation and sampling run the model too; the next batch still gets the training state."""
    run = Run(config(book, tmp_path))
    seen = record_states(run.model)
    run.step()
    final = run.model.final_state
    hidden = run.model.layer_outputs[-1][0]
    _, row, layers = run.check(0.0)
    assert run.model.layer_outputs[-1][0] is hidden         # the diagnostics read the training batch
    assert list(layers.values())[-1]["grad_time"].shape == (25,)
    run.step()
    assert same_state(seen[-1], final)
    assert len(run.source.last_samples) == len(run.source.prompts) == 3


def test_random_windows_start_from_zero(book, tmp_path):
    run = Run(config(book, tmp_path, batching="random"))
    seen = record_states(run.model)
    for _ in range(3):
        run.step()
    assert seen == [None, None, None]


@pytest.fixture(scope="module")
def trained(book, tmp_path_factory):
    c = config(book, tmp_path_factory.mktemp("runs"), max_iters=60, check_freq=20, dropout=0.0)
    return train(c, progress=False), c


def test_short_run_lowers_validation_loss(trained):
    path, c = trained
    with h5py.File(path, "r") as f:
        check = {k: f["check"][k][:] for k in ("iter", "valid_loss", "valid_error", "valid_bpc", "valid_ppl",
                                                "chars_per_sec")}
        samples = f["check/samples"][:]
        vocab_size = len(set(corpus_text()))
        assert f.attrs["status"] == "finished"
        assert (f["iter/seq_len"][:] == 25).all()
    loss = check["valid_loss"]
    assert list(check["iter"]) == [20, 40, 60]
    assert loss[-1] < loss[0] and loss[-1] < math.log(vocab_size) - 1.0
    assert np.allclose(check["valid_bpc"], loss / math.log(2))
    assert np.allclose(check["valid_ppl"], np.exp(loss))
    assert ((0 < check["valid_error"]) & (check["valid_error"] < 100)).all()
    assert (check["chars_per_sec"] > 0).all()
    assert samples.shape == (3, 3)
    prompts = Run(c).source.prompts
    for row in samples:
        for prompt, text in zip(prompts, row):
            text = text.decode()
            assert text.startswith(prompt) and len(text) == len(prompt) + c.sample_chars
    best = torch.load(path.with_name("t_best.pt"), weights_only=False)
    assert best["valid_loss"] == pytest.approx(loss.min())
    assert json.loads(best["config"]) == json.loads(c.to_json())


def sample(capsys, *args):
    cli.main(["sample", *map(str, args)])
    return capsys.readouterr().out


def test_sample_is_reproducible_by_seed(trained, capsys):
    path, _ = trained
    a = sample(capsys, path, "--prompt", "The cat", "-n", 40, "--seed", 1)
    b = sample(capsys, path, "--prompt", "The cat", "-n", 40, "--seed", 1)
    c = sample(capsys, path, "--prompt", "The cat", "-n", 40, "--seed", 2)
    assert a == b != c
    assert a.startswith("The cat") and len(a) == len("The cat") + 40 + 1
    greedy = sample(capsys, path, "--prompt", "The", "-n", 10, "-t", 0, "--no-prompt")
    assert len(greedy) == 11
    assert sample(capsys, path, "--prompt", "The", "-n", 10, "--top-k", 1, "--no-prompt") == greedy


def test_sample_falls_back_to_the_last_checkpoint(trained, capsys, tmp_path):
    path, c = trained
    import shutil
    for name in ("t.h5", "t_checkpoint.pt"):
        shutil.copy(path.with_name(name), tmp_path / name)
    text = sample(capsys, tmp_path / "t.h5", "--prompt", "A", "-n", 5)
    assert len(text) == 7


@pytest.mark.parametrize("args, message", [
    (["--prompt", "The €"], "'€' not in it"),
    (["--top-k", "0"], "top_k=0"),
    (["--top-p", "1.5"], "top_p=1.5"),
])
def test_sample_bad_input(trained, capsys, args, message):
    path, _ = trained
    with pytest.raises(SystemExit) as e:
        sample(capsys, path, *args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_sample_needs_a_text_run(tmp_path, capsys):
    synthetic = tmp_path / "s.h5"
    with h5py.File(synthetic, "w") as f:
        f.attrs.update(task="torder", config=Config().to_json())
    for run, message in ((tmp_path / "missing.h5", "no such run file"), (synthetic, "a text run"),
                         (tmp_path, "")):
        with pytest.raises(SystemExit) as e:
            sample(capsys, run)
        assert e.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("batching", ["stream", "random"])
def test_resume_continues_identically(book, tmp_path, batching):
    # 40 updates of 35 windows per epoch: the interruption falls after an epoch boundary
    whole = train(config(book, tmp_path / "a", batching=batching, max_iters=60), progress=False)
    train(config(book, tmp_path / "b", batching=batching, max_iters=40), progress=False)
    resumed = train(config(book, tmp_path / "b", batching=batching, max_iters=60), resume=True, progress=False)
    with h5py.File(whole, "r") as f, h5py.File(resumed, "r") as g:
        for name in ("iter/loss", "iter/grad_norm", "check/valid_loss", "check/valid_error", "check/samples"):
            assert np.array_equal(f[name][:], g[name][:]), name
        assert g["check/iter"].shape == (3,)
    a, b = (torch.load(p.with_name("t_best.pt"), weights_only=False) for p in (whole, resumed))
    assert a["valid_loss"] == b["valid_loss"] and a["check"] == b["check"]


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"\x00\x01\x02binary\x00" * 50, "binary"),
    ("short text. " * 20, "min_length=100"),
])
def test_bad_text_input_exits_2_without_a_run_file(tmp_path, capsys, content, message):
    path = tmp_path / "input.txt"
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--task", "text", "--text", str(path), "--min-length", "100", "--batch-size", "4",
                  "--out-dir", str(tmp_path / "runs"), "--name", "bad", "--quiet"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_run_file_records_the_corpus(tmp_path):
    import hashlib
    import h5py
    from dynamics import config as cfg
    from dynamics.train import train
    text = "the quick brown fox jumps over the lazy dog.\n" * 200
    corpus = tmp_path / "c.txt"
    corpus.write_text(text)
    c = cfg.make(dict(task="text", text=str(corpus), cell="rnn", n_hidden=8, batch_size=4, min_length=8,
                      max_length=8, max_iters=2, check_freq=2, eval_batch_size=64, sample_chars=5,
                      out_dir=str(tmp_path), name="prov"))
    path = train(c, progress=False)
    with h5py.File(path, "r") as f:
        assert f.attrs["corpus_sha256"] == hashlib.sha256(text.encode()).hexdigest()
        assert str(corpus) in f.attrs["corpus"]
