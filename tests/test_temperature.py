"""`dynamics temperature`: distinct-n by a direct count, the model's own loss by a step-by-step
computation, and the trade itself on a trained model."""
import csv
import math

import pytest
import torch

from dynamics.cli import main
from dynamics.config import make
from dynamics.sample import load_model, read_config
from dynamics.temperature import distinct, own_loss, sampling_table, temperature_table
from dynamics.train import train
from test_text_training import corpus_text


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    book = tmp_path_factory.mktemp("text") / "book.txt"
    book.write_text(corpus_text(), encoding="utf-8")
    c = make(dict(task="text", text=str(book), cell="gru", n_hidden=32, batch_size=8, min_length=25,
                  optimizer="adam", lr=0.01, max_iters=80, check_freq=40, eval_batch_size=300, sample_chars=30,
                  seed=3, name="t", out_dir=str(tmp_path_factory.mktemp("runs"))))
    return train(c, progress=False)


def test_distinct_counts_word_ngrams():
    texts = ["the cat the cat", "a cat"]
    assert distinct(texts, 1) == 3 / 6                     # the, cat, a among 6 words
    assert distinct(texts, 2) == 3 / 4                     # (the cat) twice, (cat the), (a cat)
    assert math.isnan(distinct(["one"], 2))


def test_own_loss_equals_the_step_by_step_negative_log_probability(run):
    model, vocab, _ = load_model(read_config(run), run)
    ids = torch.tensor([[1, 4, 2, 7, 3, 3, 5], [2, 2, 6, 1, 0, 4, 4]])
    total, count = 0.0, 0
    for b in range(2):
        for t in range(3, 7):   # tokens after a 3-token prompt, each given all before it
            logits = model(ids[b:b + 1, :t].t()).logits[-1, 0]
            total -= torch.log_softmax(logits.double(), -1)[ids[b, t]].item()
            count += 1
    assert own_loss(model, ids, 3) == pytest.approx(total / count, rel=1e-5)


def test_hotter_samples_are_more_diverse_and_less_expected(run):
    table = temperature_table(run, (0.3, 1.5), n=200, samples=6, seed=1)
    cold, hot = table
    assert hot["own_loss"] > cold["own_loss"]
    assert hot["distinct_1"] > cold["distinct_1"]
    assert temperature_table(run, (0.3,), n=50, samples=2, seed=1)[0]["sample"] == \
        temperature_table(run, (0.3,), n=50, samples=2, seed=1)[0]["sample"]


def test_command_writes_figure_and_csv(run, tmp_path, capsys):
    out = tmp_path / "t.png"
    main(["temperature", str(run), "--temperatures", "0.5,1", "-n", "40", "--samples", "2", "-o", str(out)])
    assert out.stat().st_size > 10_000
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    assert [float(r["temperature"]) for r in rows] == [0.5, 1.0]
    assert "own loss" in capsys.readouterr().out


@pytest.mark.parametrize("value", ["0,1", "x", "1,-2", "nan"])
def test_bad_temperatures_are_one_line(run, tmp_path, capsys, value):
    with pytest.raises(SystemExit) as e:
        main(["temperature", str(run), "--temperatures", value, "-o", str(tmp_path / "t.png")])
    assert e.value.code == 2 and "--temperatures=" in capsys.readouterr().err
    assert not (tmp_path / "t.png").exists()


def test_top_k_of_one_and_a_tiny_top_p_are_greedy(run):
    rows = sampling_table(run, [{"temperature": 0}, {"top_k": 1}, {"top_p": 1e-9}, {"temperature": 1.0}],
                          n=40, samples=3, seed=2)
    assert rows[0]["sample"] == rows[1]["sample"] == rows[2]["sample"]
    assert rows[0]["own_loss"] == pytest.approx(rows[1]["own_loss"]) == pytest.approx(rows[2]["own_loss"])
    assert rows[3]["sample"] != rows[0]["sample"]
    assert (rows[1]["top_k"], rows[2]["top_p"]) == (1, 1e-9)
