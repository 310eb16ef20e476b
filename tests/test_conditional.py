"""Class-conditioned generation: teacher forcing, how the class enters the model, seeded sampling,
the judge (a classifier run of this harness) and bad input. Tiny models, few updates."""
import h5py
import numpy as np
import pytest
import torch

from dynamics import cli
from dynamics.config import make
from dynamics.models.conditional import build_conditional
from dynamics.sources.conditional import Judge, make_generator, sample_sequences, teacher_forcing
from dynamics.train import checkpoint_path, train


def gen_config(out_dir, **changes):
    values = dict(task="names_gen", cell="gru", n_hidden=24, embedding=8, batch_size=16, optimizer="adam",
                  lr=0.01, max_iters=10, check_freq=5, eval_batch_size=100, chunk_batch_size=100, seed=1,
                  name="g", out_dir=str(out_dir))
    values.update(changes)
    return make(values)


@pytest.fixture(scope="module")
def judge(tmp_path_factory):
    """A classifier of the five name families, trained briefly (it need not be good)."""
    out = tmp_path_factory.mktemp("judge")
    c = make(dict(task="names", cell="gru", n_hidden=16, embedding=8, batch_size=32, optimizer="adam", lr=0.01,
                  max_iters=20, check_freq=20, eval_batch_size=200, seed=2, name="clf", out_dir=str(out)))
    return train(c, progress=False)


def test_teacher_forcing_shifts_by_one_with_the_boundary_token():
    tokens = [np.array([3, 1, 4]), np.array([2])]
    x, y = teacher_forcing(tokens, np.array([1, 0]))
    assert x.ids.shape == (4, 2) and x.lengths.tolist() == [4, 2] and x.labels.tolist() == [1, 0]
    assert x.ids[:, 0].tolist() == [0, 4, 2, 5]          # <s>, then the tokens shifted by one
    assert y[:, 0].tolist() == [4, 2, 5, 0]              # the tokens, then <s> closes
    assert x.ids[:2, 1].tolist() == [0, 3] and y[:, 1].tolist() == [3, 0, -100, -100]   # padding: no loss


@pytest.mark.parametrize("condition", ["first", "every"])
def test_the_class_changes_the_output_distribution(condition):
    model = build_conditional("gru", 10, 3, 6, 12, n_layers=2, condition=condition, seed=0)
    ids = torch.randint(1, 10, (5, 1), generator=torch.Generator().manual_seed(0)).expand(5, 3)
    p = torch.softmax(model(ids, torch.tensor([0, 1, 2])).logits, -1)    # same tokens, three classes
    for t in range(5):
        assert (p[t, 0] - p[t, 1]).abs().sum() > 1e-3 and (p[t, 1] - p[t, 2]).abs().sum() > 1e-3
    # given a state, the class enters again only when it is fed at every step
    state = model.final_state
    a = model(ids[:2], torch.tensor([0, 0, 0]), state=state).logits
    b = model(ids[:2], torch.tensor([1, 2, 0]), state=state).logits
    assert torch.equal(a, b) == (condition == "first")


def test_a_trained_model_writes_different_names_per_class(tmp_path):
    """After training, the model's first-letter distributions of classes whose names begin
    differently in the data (total variation > 0.3) differ too (> 0.15)."""
    c = gen_config(tmp_path, max_iters=60, check_freq=60, condition="first")
    path = train(c, progress=False)
    model = build_conditional("gru", 27, 5, 8, 24, condition="first")
    model.load_state_dict(torch.load(checkpoint_path(c), weights_only=False)["model"])
    with torch.no_grad():
        p = torch.softmax(model(torch.zeros(1, 5, dtype=torch.int64), torch.arange(5)).logits[0], -1)[:, 1:]
    gen = make_generator("names_gen")
    rng = np.random.default_rng(0)
    data = np.array([np.bincount([ord(gen.name(k, rng)[0]) - 97 for _ in range(1000)], minlength=26) / 1000
                     for k in range(5)])
    tv_data = 0.5 * np.abs(data[:, None] - data[None, :]).sum(-1)
    tv_model = 0.5 * (p[:, None] - p[None, :]).abs().sum(-1).numpy()
    apart = tv_data > 0.3
    assert apart.sum() >= 10                                        # most pairs of families differ
    assert (tv_model[apart] > 0.15).all()
    with h5py.File(path, "r") as f:
        assert f["check/samples"].shape == (1, 5, 5) and np.isnan(f["check/controllability"][:]).all()
        assert f.attrs["judge"] == ""


def test_sampling_is_reproducible_with_a_seed():
    model = build_conditional("lstm", 27, 5, 8, 16, condition="every", seed=3)
    labels = [2] * 6
    a = sample_sequences(model, labels, 12, seed=7)
    b = sample_sequences(model, labels, 12, seed=7)
    c = sample_sequences(model, labels, 12, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    assert all(len(x) <= 12 and (x >= 0).all() and (x < 26).all() for x in a)


def test_sample_command_writes_n_sequences_of_a_class(tmp_path, capsys):
    path = train(gen_config(tmp_path), progress=False)
    cli.main(["sample", str(path), "--class", "2", "-n", "10", "--temperature", "0.8", "--seed", "4"])
    first = capsys.readouterr().out.splitlines()
    cli.main(["sample", str(path), "--class", "Cedar", "-n", "10", "--temperature", "0.8", "--seed", "4"])
    assert capsys.readouterr().out.splitlines() == first and len(first) == 10
    assert all(set(line) <= set("abcdefghijklmnopqrstuvwxyz") for line in first)
    with pytest.raises(SystemExit) as e:       # a prompt would be ignored: it is refused instead
        cli.main(["sample", str(path), "--class", "2", "--prompt", "Ma"])
    assert e.value.code == 2
    assert capsys.readouterr().err.strip() == (f"error: prompt='Ma' is not allowed: not given: {path} is a "
                                               f"conditional run, which writes whole sequences of the class --class K")


def test_judge_scores_the_samples_and_is_recorded(tmp_path, judge):
    c = gen_config(tmp_path, judge=str(judge), max_iters=10, check_freq=10)
    path = train(c, progress=False)
    with h5py.File(path, "r") as f:
        control, per_class = f["check/controllability"][-1], f["check/class_control"][-1]
        assert f.attrs["judge"] == str(judge.resolve()) and f.attrs["judge_name"] == "clf"
        assert 0 <= f.attrs["judge_accuracy_on_real"] <= 100
        distinct, novel = f["check/distinct"][-1], f["check/novel"][-1]
    # the same samples judged here, directly through the classifier's own model
    model = build_conditional("gru", 27, 5, 8, 24, condition="first")
    model.load_state_dict(torch.load(checkpoint_path(c), weights_only=False)["model"])
    labels = np.repeat(np.arange(5), 50)
    tokens = sample_sequences(model, labels, make_generator("names_gen").max_length + 1, seed=c.seed)
    clf = Judge(judge, ["Amber", "Birch", "Cedar", "Dune", "Ember"], c)
    guess = np.array([clf.model(clf.source.tensors([t], [0])[0]).logits.argmax().item() if len(t) else -1
                      for t in tokens])
    assert control == pytest.approx(100 * np.mean(guess == labels))
    assert per_class.mean() == pytest.approx(control)
    texts = ["".join(chr(97 + i) for i in t) for t in tokens]
    assert distinct == pytest.approx(100 * len(set(texts)) / len(texts))
    assert 0 <= novel <= 100


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(args)
    err = capsys.readouterr().err
    return e.value.code, err


def test_bad_input(tmp_path, judge, capsys):
    out = ["--out-dir", str(tmp_path), "--quiet"]
    code, err = run_cli(["train", "--task", "names_gen", "--condition", "middle", *out], capsys)
    assert code == 2 and "condition='middle' is not allowed" in err
    code, err = run_cli(["train", "--task", "sentiment_gen", "--judge", str(judge), *out], capsys)   # names classes
    assert code == 2 and "judge=" in err and "negative, positive" in err and len(err.strip().splitlines()) == 1
    text_run = tmp_path / "t.h5"
    with h5py.File(text_run, "w") as f:
        f.attrs.update(family="text", task="text")
    code, err = run_cli(["train", "--task", "names_gen", "--judge", str(text_run), *out], capsys)
    assert code == 2 and "a classifier run" in err
    code, err = run_cli(["train", "--task", "text", "--judge", str(judge), *out], capsys)
    assert code == 2 and "judge=" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.h5"]                      # nothing written
    path = train(gen_config(tmp_path, max_iters=5, check_freq=5), progress=False)
    for bad in ("5", "-1", "Oak"):
        code, err = run_cli(["sample", str(path), "--class", bad, "-n", "2"], capsys)
        assert code == 2 and f"class='{bad}' is not allowed" in err
