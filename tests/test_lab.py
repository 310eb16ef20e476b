"""The lab chapter's answer generators on run files with known contents: every answer states the
numbers it was given, and turns when they turn."""
import json
import math

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from analysis import lab
from analysis.read import load
from analysis.synthetic import write_run

SMALL = dict(n_iter=200, check_freq=20, min_length=20, max_length=20, batch=4, nonfinite_steps=())
K = 10                                                  # checks of a SMALL run


def run(path, task="text", checks=None, iters=None, name=None, **config):
    """A synthetic run file whose config holds `config` and whose /check and /iter columns are
    replaced by `checks` and `iters` (arrays of K and 200 rows)."""
    keys = {k: config.pop(k) for k in list(config) if k in ("cell", "n_hidden", "n_layers", "clip", "cutoff",
                                                            "lr", "seed")}
    if keys.get("cell") == "mlp":                       # written as an RNN's file, recorded as the MLP's config
        keys["cell"], config["cell"] = "rnn", "mlp"
    path.parent.mkdir(parents=True, exist_ok=True)
    path = write_run(path, task=task, name=name, **keys, **SMALL)
    with h5py.File(path, "a") as f:
        c = json.loads(f.attrs["config"])
        c.update(config)
        f.attrs["config"] = json.dumps(c)
        for group, cols in (("check", checks or {}), ("iter", iters or {})):
            for col, values in cols.items():
                values = np.asarray(values, dtype=float)
                if col in f[group]:
                    f[group][col][...] = values
                else:
                    f[group].create_dataset(col, data=values, maxshape=(None,) + values.shape[1:])
    return load(path)


def curve(best, end=None, start=3.0):
    """A validation-loss curve falling to `best` at the 8th check, then to `end` at the last."""
    end = best if end is None else end
    c = np.linspace(start, best, 8)
    return np.concatenate([c, [best + (end - best) / 2, end]])


# ---------------------------------------------------------------------------- selecting runs

def test_series_is_the_largest_group_equal_but_for_the_free_keys(tmp_path):
    a = [run(tmp_path / f"h{h}.h5", n_hidden=h, seed=1) for h in (8, 16, 32)]
    b = run(tmp_path / "h8s2.h5", n_hidden=8, seed=2)                       # a second seed joins its value
    other = run(tmp_path / "lr.h5", n_hidden=16, lr=0.1, seed=1)            # another setting: left out
    by = lab.series(a + [b, other], ("n_hidden",))
    assert list(by) == [(8,), (16,), (32,)]
    assert {s.name for s in by[(8,)]} == {"h8", "h8s2"}
    assert lab.series([a[0], other], ("n_hidden",)) == {}                   # no group with two values


# ---------------------------------------------------------------------- 2. capacity

def capacity(tmp_path, best, last=None, seeds=(1,), jitter=0.0):
    """GRU runs at H = 16, 32, 64 with best validation losses `best` (seed s adds (s - 1)·jitter)."""
    last = last or best
    return [run(tmp_path / f"h{h}s{seed}.h5", cell="gru", n_hidden=h, seed=seed,
                checks={"valid_loss": curve(b + (seed - 1) * jitter, e + (seed - 1) * jitter),
                        "train_loss": curve(b, e) - 0.1 * (i + 1)})
            for i, (h, b, e) in enumerate(zip((16, 32, 64), best, last)) for seed in seeds]


def test_capacity_answer_compares_each_size_over_seeds(tmp_path):
    a = lab.q2(capacity(tmp_path / "a", (2.0, 1.8, 1.6), seeds=(1, 2, 3), jitter=0.01))
    assert a.text[0].startswith("Best validation perplexity by hidden size: ")
    assert f"{math.exp(1.61):.4g} [{math.exp(1.6):.4g}, {math.exp(1.62):.4g}] (n = 3) at H=64" in a.text[0]
    assert a.text[1].startswith("H=32 against H=16: H=32 ") and a.text[1].endswith("H=32 lower, the intervals apart.")
    assert a.text[2].endswith("H=64 lower, the intervals apart.")
    assert a.text[3].startswith("The validation − training loss gap at the end (nats/char): H=64 ")
    assert a.text[3].endswith("H=64 higher, the intervals apart.")
    assert a.text[4].startswith("No size overfits")
    noise = lab.q2(capacity(tmp_path / "b", (2.0, 1.99, 1.98), seeds=(1, 2, 3), jitter=0.05))
    assert noise.text[1].endswith(": within noise.") and "lower" not in noise.text[1]
    one = lab.q2(capacity(tmp_path / "c", (2.0, 1.8, 1.6)))
    assert one.text[1].endswith(": one seed, not compared.")
    values = a.values
    assert set(values.columns) == {"setting", "seed", "metric", "value"}
    assert len(values[values["metric"] == "best_valid_ppl"]) == 9
    assert values["value"].dtype == float


def test_overfitting_is_flagged_where_validation_turns_up(tmp_path):
    a = lab.q2(capacity(tmp_path, (2.0, 1.8, 1.6), last=(2.0, 1.8, 1.7)))  # H=64 ends 6% above its best
    assert a.text[-1].startswith("Overfitting: validation turned up")
    assert "H=64" in a.text[-1] and "H=32" not in a.text[-1]
    assert "best 1.6 at update 160, final 1.7" in a.text[-1]
    assert list(a.table["turned_up"]) == [False, False, True]


# -------------------------------------------------------------------------- 3. depth

def depth(tmp_path, ppl2, spike, seeds=(1,), dropout2=0.0):
    """RNN at 1 layer clipped and not, and at 2 layers clipped (dropout `dropout2`), per seed; the
    unclipped run's gradient norm has one spike of `spike`× its level; seed s adds 0.01·s nats."""
    out = []
    for L, clip, dropout in ((1, "rescale", 0.0), (1, "none", 0.0), (2, "rescale", dropout2)):
        for seed in seeds:
            gn = np.full(200, 0.5)
            if clip == "none":
                gn[100] = 0.5 * spike
            loss = (np.log(ppl2) if L == 2 else np.log(6.0)) + 0.01 * seed
            out.append(run(tmp_path / f"L{L}{clip}{seed}.h5", n_layers=L, clip=clip, cutoff=1.0, seed=seed,
                           dropout=dropout, checks={"valid_loss": curve(loss)}, iters={"grad_norm": gn}))
    return out


def test_depth_compares_one_key_at_a_time_and_states_explosions(tmp_path):
    helps = lab.q3(depth(tmp_path / "a", 5.0, 400, seeds=(1, 2, 3)))
    assert helps.text[0].startswith("Depth (dropout 0, clip 1), best validation perplexity: 2 layers ")
    assert helps.text[0].endswith("2 layers lower, the intervals apart.")
    assert helps.text[1].startswith("Clipping (layers 1, dropout 0), best validation perplexity: clip off ")
    assert helps.text[1].endswith(": a tie.")                  # the same losses, clipped or not
    lines = " ".join(helps.text[2:])
    assert "1 layer, dropout 0, clip off (3 seeds): exploding in 3 of 3; largest gradient norm 200 = 400× the median" in lines
    assert "1 layer, dropout 0, clip 1 (3 seeds): no explosion" in lines
    assert "cannot show whether the gradient of one loss vanishes" in helps.text[-1]
    hurts = lab.q3(depth(tmp_path / "b", 7.0, 50))
    assert hurts.text[0].endswith("one seed, not compared.")
    assert "exploding" not in " ".join(hurts.text[1:])          # 50× the median is below the threshold


def test_depth_with_dropout_is_not_compared_with_one_layer_without(tmp_path):
    a = lab.q3(depth(tmp_path, 5.0, 1, seeds=(1, 2), dropout2=0.2))
    assert not any(t.startswith("Depth") for t in a.text)        # 2 layers differ in depth and dropout
    assert a.table["dropout"].tolist().count(0.2) == 2


def test_depth_reads_each_layers_g_t(tmp_path):
    s = depth(tmp_path, 5.0, 1)[2]                              # 2 layers, clipped
    rows = lab.depth_rows([s])
    for layer in (0, 1):
        g = s.layers[layer].grad_time[-1]
        g = g[np.isfinite(g)]
        assert rows[f"layer{layer}_span"][0] == pytest.approx(g[-1] / g[0])


# ----------------------------------------------------------------------- 4. cell choice

def cell_runs(tmp_path, bpc):
    """Cells × seeds with the given best validation bits/char per cell and seed."""
    return [run(tmp_path / f"{cell}{seed}.h5", cell=cell, seed=seed,
                checks={"valid_bpc": curve(v, start=4.0)})
            for cell, b in bpc.items() for seed, v in enumerate(b, 1)]


def test_cell_answer_says_a_win_only_where_the_intervals_are_apart(tmp_path):
    a = lab.q4(cell_runs(tmp_path / "a", {"rnn": (2.4, 2.5, 2.6), "gru": (2.0, 2.05, 2.1),
                                            "lstm": (2.2, 2.25, 2.3)}), [])
    assert a.text[0] == ("Character LM (best validation bits/char), the best against the next: GRU 2.05 [2, 2.1] (n = 3) "
                         "against LSTM 2.25 [2.2, 2.3] (n = 3): GRU lower, the intervals apart. "
                         "Then RNN 2.5 [2.4, 2.6] (n = 3).")
    c = lab.q4(cell_runs(tmp_path / "c", {"rnn": (2.4, 2.5, 2.6), "gru": (2.0, 2.2, 2.4),
                                            "lstm": (2.1, 2.25, 2.4)}), [])
    assert c.text[0].split(": ", 1)[1].startswith("GRU 2.2") and c.text[0].endswith("within noise. Then RNN 2.5 [2.4, 2.6] (n = 3).")
    assert "wins" not in c.text[0]
    one = lab.q4(cell_runs(tmp_path / "d", {"rnn": (2.4, 2.5, 2.6), "gru": (2.0,)}), [])
    assert one.text[0].endswith("one seed, not compared.")
    row = a.table.set_index("model").loc["GRU"]
    assert (row["mean"], row["low"], row["high"], row["seeds"]) == (pytest.approx(2.05), 2.0, 2.1, 3)
    assert sorted(a.values["value"])[:3] == [2.0, 2.05, 2.1]


# -------------------------------------------------------------------- 5. sequence length

def by_position(T=64, p=13.0):
    """Zero-state loss 1.5 + e^{-(t-1)/3} against 1.5 with the whole past: within 0.02 from t = 13."""
    t = np.arange(1, T + 1)
    return np.stack([1.5 + np.exp(-(t - 1) / 3.0), np.full(T, 1.5)])


def test_useful_context_is_where_the_loss_reaches_the_whole_past():
    c = by_position()
    assert lab.useful_context(c) == int(np.ceil(1 - 3 * math.log(0.02)))          # 13
    c[0, -1] += 0.1                                        # a later position above it does not move it
    assert lab.useful_context(c) == 13
    assert lab.useful_context(np.stack([np.full(64, 2.0), np.full(64, 1.5)])) is None


def test_context_answer_turns_with_the_window_curve(tmp_path):
    def mlp(losses, seeds=(1, 2, 3)):
        return [run(tmp_path / f"w{w}{seed}.h5", cell="mlp", window=w, seed=seed,
                    checks={"valid_loss": curve(b + 0.01 * seed)})
                for w, b in zip((1, 2, 4, 8), losses) for seed in seeds]
    a = lab.q5(mlp((2.7, 2.2, 2.0, 2.005)), curves={})
    assert a.text[0].startswith("The window MLP's best validation loss (nats/char) by window: 2.72 [2.71, 2.73] (n = 3) at W=1")
    assert a.text[1] == ("W=4 is the best, against the next narrower: W=4 2.02 [2.01, 2.03] (n = 3) against "
                         "W=2 2.22 [2.21, 2.23] (n = 3): W=4 lower, the intervals apart.")
    assert a.text[2].endswith("W=8 2.025 [2.015, 2.035] (n = 3) against W=4 2.02 [2.01, 2.03] (n = 3): within noise; "
                              "as a fixed window, about 4 characters of context are useful.")
    flat = lab.q5(mlp((2.7, 2.2, 2.005, 2.0)), curves={})        # W=8 best, W=4 within noise of it
    assert flat.text[1] == ("The smallest window within noise of the best (W=8): W=4 2.025 [2.015, 2.035] (n = 3) "
                            "against W=8 2.02 [2.01, 2.03] (n = 3): within noise; as a fixed window, about 4 "
                            "characters of context are useful.")
    tmp_path = tmp_path / "b"
    b = lab.q5(mlp((2.7, 2.2, 2.0, 2.3)), curves={"GRU": np.stack([by_position(), by_position()]),
                                                   "RNN": np.stack([np.full(64, 2.0), np.full(64, 1.5)])})
    assert b.text[-3].startswith("The widest window against the best: W=8 ")
    assert b.text[-3].endswith("W=4 lower, the intervals apart; as a fixed window, about 4 characters of context are useful.")
    assert b.text[-2].startswith("GRU, 2 seeds: from the zero state its loss falls from 2.5 nats/char")
    assert "whole past cost 1.5; it comes within 0.02 nats of that at position 13 [13, 13] (n = 2) of 64" in b.text[-2]
    assert "stays more than 0.02 nats above it over all 64 positions" in b.text[-1]
    assert b.text[-1].startswith("RNN, one seed")


# ---------------------------------------------------------------------- 6. teacher forcing

def tf_runs(tmp_path, bias_ss, noise_ss):
    out = []
    for sched, bias, noise in (("constant", 10.0, 0.01), ("inverse_sigmoid", bias_ss, noise_ss)):
        for seed in (1, 2, 3):
            rng = np.random.default_rng(seed)
            out.append(run(tmp_path / f"{sched}{seed}.h5", task="reverse", seed=seed, tf_schedule=sched,
                           teacher_forcing=1.0, tf_k=80.0,
                           checks={"tf_token_acc": np.full(K, 90.0), "greedy_token_acc": np.full(K, 90.0 - bias - seed),
                                   "greedy_exact": np.full(K, 50.0 + bias)},
                           iters={"loss": 1.0 + noise * rng.normal(size=200)}))
    return out


def test_teacher_forcing_answer_turns_with_bias_and_noise(tmp_path):
    a = lab.q6(tf_runs(tmp_path / "a", 4.0, 0.1))
    assert a.text[0] == ("Exposure bias (teacher-forced minus greedy token accuracy at the end, points): "
                         "inverse sigmoid k=80 6 [5, 7] (n = 3) against teacher forcing 1 12 [11, 13] (n = 3): "
                         "inverse sigmoid k=80 lower, the intervals apart.")
    assert "inverse sigmoid k=80 higher" not in a.text[1] and "teacher forcing 1 lower, the intervals apart" in a.text[1]
    assert a.text[2].endswith("teacher forcing 1 decodes better.")
    b = lab.q6(tf_runs(tmp_path / "b", 15.0, 0.001))
    assert "teacher forcing 1 lower, the intervals apart" in b.text[0]
    assert b.text[2].endswith("inverse sigmoid k=80 decodes better.")
    c = lab.q6(tf_runs(tmp_path / "c", 10.0, 0.01))
    assert c.text[2].endswith(": a tie: neither decodes better.")


def test_the_teacher_forcing_ratio_is_read_as_a_sweep(tmp_path):
    out = []
    for ratio, exact in ((0.0, 20.0), (0.5, 45.0), (1.0, 30.0)):
        for seed in (1, 2, 3):
            out.append(run(tmp_path / f"r{ratio}-{seed}.h5", task="reverse", seed=seed, teacher_forcing=ratio,
                           tf_schedule="constant", tf_k=80.0,
                           checks={"tf_token_acc": np.full(K, 90.0), "greedy_token_acc": np.full(K, 80.0),
                                   "greedy_exact": np.full(K, exact + seed)}))
    a = lab.q6(out)
    assert a.text[0].startswith("Constant teacher-forcing ratio from 0 to 1: greedy exact match (%) "
                                "0: 22 [21, 23] (n = 3); 0.5: 47 [46, 48] (n = 3); 1: 32 [31, 33] (n = 3).")
    assert a.text[1] == ("The best ratio, 0.5, against 1, greedy exact match (%): ratio 0.5 47 [46, 48] (n = 3) "
                         "against ratio 1 32 [31, 33] (n = 3): ratio 0.5 higher, the intervals apart.")
    assert list(a.table["ratio"].unique()) == [0.0, 0.5, 1.0]


# ------------------------------------------------------------------------- 7. the presets

def presets(tmp_path, losses, c1_status="solved", seeds=(52,)):
    """A1–A3 on mem (unclipped A1 with a spike) and C0/C1 on torder, at `seeds`; seed s adds
    0.001·(s − 52) to A's losses."""
    out = []
    for seed in seeds:
        for name, clip, cutoff, spike, loss in (("A1", "none", 1.0, 300, losses[0]),
                                                ("A2", "rescale", 0.05, 20, losses[1]),
                                                ("A3", "rescale", 0.01, 5, losses[2])):
            gn = np.full(200, 0.2)
            gn[50] = 0.2 * spike
            out.append(run(tmp_path / f"{name}-{seed}.h5", task="mem", name=f"preset={name},seed={seed}", clip=clip,
                           cutoff=cutoff, seed=seed, min_length=20, max_length=20,
                           checks={"valid_loss": curve(loss + 0.001 * (seed - 52)), "valid_error": np.full(K, 100.0)},
                           iters={"grad_norm": gn}))
        for name, status in (("C0", "finished"), ("C1", c1_status)):
            s = run(tmp_path / f"{name}-{seed}.h5", task="torder", name=f"preset={name},seed={seed}", seed=seed,
                    min_length=20, max_length=20,
                    checks={"valid_error": np.r_[np.full(K - 1, 70.0), 0.0 if status == "solved" else 70.0]})
            with h5py.File(s.path, "a") as f:
                f.attrs["status"] = status
            out.append(load(s.path))
    return out


def test_preset_paragraphs_carry_their_numbers_and_turn(tmp_path):
    seeds = (52, 53, 54)
    a = lab.q7(presets(tmp_path / "a", (0.1, 0.2, 0.3), seeds=seeds))
    mem = a.text[0]
    assert mem.startswith("Memorization (A1, A2, A3; 3 seeds each; at most 200 updates): solved in 0 of 9 runs. "
                          "The input-blind predictor's validation error is 100%")
    assert "Validation error at the end (%): A1 100 [100, 100] (n = 3); A2 100 [100, 100] (n = 3)" in mem
    assert "A3 0.301 [0.3, 0.302] (n = 3) (below it)" in mem           # the input-blind loss at 20 steps: 0.402
    assert mem.endswith("memorization is unsolved in all of A1, A2 and A3.")
    clip = next(t for t in a.text if t.startswith("Clipping regimes"))
    assert "A1 explodes in 3 of 3 seeds, A2 explodes in 0 of 3 seeds, A3 explodes in 0 of 3 seeds (the norm before " \
           "clipping ≥ 100× its median)" in clip
    assert "Final validation loss, A2 against A1: A2 0.201 [0.2, 0.202] (n = 3) against A1 0.101 [0.1, 0.102] (n = 3): A1 lower, the intervals apart." in clip
    assert any(t.startswith("A1's largest blow-up (seed 52): the gradient norm reaches 60 at update") for t in a.text)
    c = a.text[-1]
    torder = a.text[1]
    assert "solved in 3 of 6 runs" in torder and "unsolved" not in torder
    assert c.startswith("C1 against C0 (temporal order, the same budget, at most 200 updates): solved in 3 of 3 against 0 of 3")
    assert "C1 0 [0, 0] (n = 3) against C0 70 [70, 70] (n = 3): C1 lower, the intervals apart" in c
    b = lab.q7(presets(tmp_path / "b", (0.3, 0.2, 0.1), c1_status="finished"))
    clip = next(t for t in b.text if t.startswith("Clipping regimes"))
    assert "one seed, not compared" in clip and "lower, the intervals apart" not in clip
    assert "C1 70 (one seed) against C0 70 (one seed): one seed, not compared" in b.text[-1]
    assert list(b.table["run"]) == ["A1", "A2", "A3", "C0", "C1"]
    assert [lab.preset_name(s) for s in a.notes] == ["A1", "A2", "A3", "C0", "C1"]        # one dashboard each


def test_the_input_blind_predictor_is_chance_on_temporal_order():
    from analysis.lab.q7_dynamics import baseline
    loss, error = baseline("torder", 50, 200)
    assert error == pytest.approx(75.0, abs=2.0)           # 4 balanced classes
    assert loss == pytest.approx(math.log(4), abs=0.01)


# ---------------------------------------------------------------------------- the chapter

def test_the_chapter_answers_every_question_in_order_even_without_runs():
    got = lab.answers({})
    assert [a.number for a in got] == list(range(1, 14))
    assert all(a.text and a.draw is None and not len(a.table) for a in got)
    assert got[0].text == ["No language-model runs."] and got[6].text == ["No preset runs."]


def test_report_of_a_study_folder_writes_the_chapter(tmp_path):
    study = tmp_path / "study"
    lm = study / "lm"
    lm.mkdir(parents=True)
    for h in (16, 32):
        for seed in (1, 2):
            run(lm / f"gru{h}-{seed}.h5", cell="gru", n_hidden=h, seed=seed,
                checks={"valid_loss": curve(2.0 - h / 100 + seed / 1000)})
    run(lm / "rnn.h5", cell="rnn", n_hidden=16, seed=1)
    (lm / "summary.csv").write_text("name,status\ngru16-1,finished\nlstm-s1,failed\n")
    (study / "presets").mkdir()
    for s in presets(tmp_path / "p", (0.1, 0.2, 0.3)):
        (study / "presets" / f"{s.name.split('=')[1].split(',')[0]}.h5").write_bytes(open(s.path, "rb").read())
    out = tmp_path / "report" / "lab.pdf"
    from dynamics.cli import cli as dynamics_cli
    result = CliRunner().invoke(dynamics_cli, ["report", str(study), "-o", str(out)])
    assert result.exit_code == 0, result.output
    md = (tmp_path / "report" / "lab.md").read_text()
    for n in range(1, 8):
        assert f"## {n}. " in md
    assert "H=32 against H=16: " in md and "mean [95 % interval] (n = seeds)" in md
    assert "Planned but without a run file (1): lm/lstm-s1 (failed)." in md
    assert "![Capacity against generalisation](lab_figures/q2.png)" in md
    assert (tmp_path / "report" / "lab_figures" / "q2.png").is_file()
    assert (tmp_path / "report" / "lab_figures" / "q7.png").is_file()
    assert (tmp_path / "report" / "lab_figures" / "A1_dashboard.png").is_file()
    import pandas as pd
    csv = pd.read_csv(tmp_path / "report" / "lab.csv")
    assert list(csv.columns) == ["question", "setting", "seed", "metric", "value"]
    assert csv["value"].dtype == float
    capacity_rows = csv[(csv["question"] == 2) & (csv["metric"] == "best_valid_ppl")]
    assert sorted(capacity_rows["seed"]) == [1, 1, 2, 2]
    assert out.read_bytes().startswith(b"%PDF")
    assert lab.is_study(study) and not lab.is_study(lm)


def test_position_loss_against_stepping_the_model_one_character_at_a_time(tmp_path):
    """Row 0: the loss at position t of a window is the model's loss after t characters from the
    zero state, the same as feeding the window one character at a time (the sampler's step).
    Row 1: the same characters' loss in one stream, as the validation loss reads the text."""
    import torch
    from dynamics.config import make
    from dynamics.sample import load_model, read_config
    from dynamics.sources.text import load_corpus, step_fn, stream_loss
    from dynamics.train import train
    text = tmp_path / "book.txt"
    rng = np.random.default_rng(0)
    text.write_text("".join(rng.choice(list("abcd \n"), size=6000)))
    path = train(make(dict(task="text", text=str(text), cell="gru", n_hidden=8, batch_size=4, min_length=12,
                           max_length=12, optimizer="adam", lr=0.01, max_iters=10, check_freq=5, eval_batch_size=200,
                           sample_chars=5, seed=1, name="p", out_dir=str(tmp_path))), progress=False)
    got = lab.position_loss(load(path), chars=132, stride=12, warm=12)
    config = read_config(path)
    model, _, _ = load_model(config, path)
    valid = load_corpus(config).valid
    step = step_fn(model)
    zero, full = np.zeros(12), np.zeros(132)
    with torch.no_grad():
        ids = torch.as_tensor(valid[:133], dtype=torch.int64)
        for w in range(1, 11):                                 # windows at 12, 24, ..., 120
            state = None
            for t in range(12):
                logits, state = step(ids[12 * w + t:12 * w + t + 1][None], state)
                zero[t] -= torch.log_softmax(logits[0].double(), dim=-1)[ids[12 * w + t + 1]].item() / 10
        state = None
        for i in range(132):                                   # one stream, the state carried
            logits, state = step(ids[i:i + 1][None], state)
            full[i] = -torch.log_softmax(logits[0].double(), dim=-1)[ids[i + 1]].item()
    assert got[0] == pytest.approx(zero, rel=1e-5)
    assert got[1] == pytest.approx(full[12:132].reshape(10, 12).mean(axis=0), rel=1e-5)
    assert full.mean() == pytest.approx(stream_loss(model, valid[:133], 12), rel=1e-5)


# ------------------------------------------------------------- 8–12. the newer questions

def classify_runs(tmp_path, acc):
    """GRU name classifiers, 3 seeds each: {(key, value): accuracy} around pooling=last."""
    out = []
    for (key, value), a in acc.items():
        for seed in (1, 2, 3):
            extra = {key: value} if key != "class_balance" else {"class_balance": value[0], "class_weighting": value[1]}
            recall = np.tile([90.0, 80.0, 70.0, 60.0, a / 2 + seed], (K, 1))
            out.append(run(tmp_path / f"{key}{value}{seed}.h5".replace(" ", ""), task="names", cell="gru", seed=seed,
                           pooling=extra.pop("pooling", "last"), **extra,
                           checks={"accuracy": np.full(K, a + seed), "macro_f1": np.full(K, a - 10 + seed),
                                   "recall": recall, "confusion": np.tile(np.eye(5) * 10, (K, 1, 1))}))
    return out


def test_classification_choices_each_against_its_reference(tmp_path):
    skew = (0.6, 0.2, 0.1, 0.06, 0.04)
    a = lab.q8(classify_runs(tmp_path, {("pooling", "last"): 80.0, ("pooling", "mean"): 85.0,
                                        ("pooling", "max"): 80.5, ("truncate", 3): 60.0,
                                        ("class_balance", (skew, "none")): 70.0,
                                        ("class_balance", (skew, "balanced")): 75.0}))
    pooling = next(t for t in a.text if t.startswith("Pooling against last pooling"))
    assert "mean pooling: accuracy, mean pooling 87 [86, 88] (n = 3) against last pooling 82 [81, 83] (n = 3): " \
           "mean pooling higher, the intervals apart" in pooling
    assert "max pooling: accuracy, max pooling 82.5 [81.5, 83.5] (n = 3) against last pooling 82 [81, 83] (n = 3): " \
           "within noise" in pooling
    trunc = next(t for t in a.text if t.startswith("Truncate against every character"))
    assert "the last 3 characters 62 [61, 63] (n = 3) against every character 82 [81, 83] (n = 3): every character " \
           "higher" in trunc
    assert any(t.startswith("Class imbalance, prior 0.6/0.2/0.1/0.06/0.04 against the uniform prior: macro-F1") for t in a.text)
    weighted = next(t for t in a.text if t.startswith("The balanced loss on the skewed prior"))
    assert "balanced 39.5 [38.5, 40.5] (n = 3) against unweighted 37 [36, 38] (n = 3): balanced higher" in weighted
    assert not any(t.startswith("Bidirectional") for t in a.text)                        # no such runs
    assert set(a.values["metric"]) == {"accuracy", "macro_f1", "rarest_recall"}


def test_seq2seq_attention_and_beam_against_greedy(tmp_path):
    out = []
    for task, attention, greedy, beam in (("copy", "bahdanau", 90.0, 92.0), ("copy", "none", 40.0, 40.0),
                                          ("date", "bahdanau", 70.0, 69.0), ("date", "none", 69.0, 69.0)):
        for seed in (1, 2, 3):
            out.append(run(tmp_path / f"{task}{attention}{seed}.h5", task=task, cell="gru", seed=seed,
                           attention=attention, beam_size=3,
                           checks={"greedy_exact": np.full(K, greedy + seed), "beam_exact": np.full(K, beam + 2 * seed)}))
    a = lab.q9(out)
    assert a.text[0] == ("Copy (200 updates), greedy exact match (%): bahdanau attention 92 [91, 93] (n = 3) against "
                         "no attention 42 [41, 43] (n = 3): bahdanau attention higher, the intervals apart.")
    assert a.text[1].endswith("no attention 71 [70, 72] (n = 3): within noise.")
    assert a.text[2].startswith("Beam search (beam 3) minus greedy exact match of the same model, points: "
                                "Copy, bahdanau attention 4 [3, 5] (n = 3) (beam better)")
    assert "Dates, bahdanau attention 1 [0, 2] (n = 3) (within noise of 0)" in a.text[2]
    assert "Dates, no attention 2 [1, 3] (n = 3) (beam better)" in a.text[2]


def test_tying_states_parameters_and_compares_perplexity(tmp_path):
    out = [run(tmp_path / f"t{tied}{seed}.h5", cell="gru", seed=seed, tie_weights=tied,
               checks={"valid_loss": curve(1.5 - 0.1 * tied + 0.01 * seed)})
           for tied in (False, True) for seed in (1, 2, 3)]
    a = lab.q10(out)
    assert a.text[0] == "The runs keep no checkpoint to count their parameters."
    assert a.text[1].endswith(": tied lower, the intervals apart.")
    assert list(a.table["setting"]) == ["untied"] * 3 + ["tied"] * 3


def test_cells_are_compared_at_their_best_learning_rate(tmp_path):
    out = []
    for cell, by_lr in (("rnn", {0.001: 3.0, 0.01: 2.5}), ("gru", {0.001: 2.2, 0.01: 2.6})):
        for lr, bpc in by_lr.items():
            for seed in (1, 2, 3):
                out.append(run(tmp_path / f"{cell}{lr}{seed}.h5", cell=cell, lr=lr, seed=seed,
                               checks={"valid_bpc": curve(bpc + 0.01 * seed, start=4.0),
                                       "valid_loss": curve((bpc + 0.01 * seed) * math.log(2))}))
    a = lab.q11(out)
    assert a.text[0] == ("Rates tried: 0.001, 0.01; each cell's best (lowest mean best validation bits/char): "
                         "RNN at 0.01, 2.52 [2.51, 2.53] (n = 3); GRU at 0.001, 2.22 [2.21, 2.23] (n = 3).")
    assert a.text[1] == ("GRU against the RNN, each at its best rate: GRU 2.22 [2.21, 2.23] (n = 3) against "
                         "RNN 2.52 [2.51, 2.53] (n = 3): GRU lower, the intervals apart.")


def test_sampling_answer_reads_its_table():
    import pandas as pd
    rows = pd.DataFrame([{"setting": name, "seed": seed, "distinct_1": d1 + seed, "distinct_2": d2 + seed,
                          "own_loss": loss + 0.01 * seed, "sample": "the cat"}
                         for name, d1, d2, loss in (("T 0.5", 20, 30, 0.8), ("T 1.2", 60, 90, 2.0),
                                                    ("T 1", 50, 80, 1.5), ("top-p 0.9", 45, 79.5, 1.3))
                         for seed in (0, 1, 2)])
    a = lab.q12([], rows=rows)
    assert a.text[1] == ("Temperature 1.2 against 0.5: distinct words (%), T 1.2 61 [60, 62] (n = 3) against "
                         "T 0.5 21 [20, 22] (n = 3): T 1.2 higher, the intervals apart; the model's own loss "
                         "(nats/char), T 1.2 2.01 [2, 2.02] (n = 3) against T 0.5 0.81 [0.8, 0.82] (n = 3): "
                         "T 0.5 lower, the intervals apart.")
    assert a.text[2] == ("top-p 0.9 against plain sampling at T 1: own loss, top-p 0.9 1.31 [1.3, 1.32] (n = 3) "
                         "against T 1 1.51 [1.5, 1.52] (n = 3): top-p 0.9 lower, the intervals apart; distinct words "
                         "(%), top-p 0.9 46 [45, 47] (n = 3) against T 1 51 [50, 52] (n = 3): T 1 higher, the "
                         "intervals apart.")


def test_conditional_generation_first_against_every_step(tmp_path):
    out = []
    for condition, control in (("first", 60.0), ("every", 80.0)):
        for seed in (1, 2, 3):
            s = run(tmp_path / f"{condition}{seed}.h5", task="names_gen", seed=seed, condition=condition,
                    checks={"controllability": np.full(K, control + seed), "distinct": np.full(K, 90.0),
                            "novel": np.full(K, 70.0 + seed)})
            with h5py.File(s.path, "a") as f:
                f.attrs["family"], f.attrs["judge_accuracy_on_real"] = "conditional", 91.5
            out.append(load(s.path))
    a = lab.q13(out)
    assert a.text[0] == ("Controllability at the last check (200 updates; % of generated names the judge assigns to the "
                         "class asked for): class at every step 82 [81, 83] (n = 3) against class at the first step "
                         "62 [61, 63] (n = 3): class at every step higher, the intervals apart. The judge classifies "
                         "real validation names at 91.5 [91.5, 91.5] (n = 3)%: the most a controllability here can "
                         "show. Against it: class at every step 82 [81, 83] (n = 3) against the "
                         "judge on real names 91.5 [91.5, 91.5] (n = 3): the judge on real names higher, the "
                         "intervals apart.")
    assert a.text[1].startswith("Distinct names (%): class at every step 90 [90, 90] (n = 3) against class at the first "
                                "step 90 [90, 90] (n = 3): a tie; novel names")


def test_cell_answer_gives_chance_and_the_bayes_rate_for_scale(tmp_path):
    from analysis.names_bayes import bayes
    out = [run(tmp_path / f"{cell}{seed}.h5", task="names", cell=cell, seed=seed, n_classes=5, eval_batch_size=500,
               pooling="last", checks={"accuracy": np.full(K, a + seed)})
           for cell, a in (("rnn", 80.0), ("gru", 85.0)) for seed in (1, 2, 3)]
    a = lab.q4([], out)
    rate = bayes(out[0])["prior"][0]
    assert 85 < rate < 100
    assert a.text[0].endswith(f"For scale: chance is 20% (5 balanced classes), the Bayes-optimal accuracy on this "
                              f"validation set {rate:.3g}%.")


def test_hidden_saturation_is_the_histogram_mass_below_the_bound(tmp_path):
    from analysis.lab.q7_dynamics import hidden_saturation
    s = presets(tmp_path, (0.1, 0.2, 0.3))[0]
    hist = s.layers[0].hists["saturation"]
    edges = s.layers[0].edges["saturation"]
    k = max(i for i in range(len(hist)) if hist[i].sum() > 0)
    assert np.allclose(edges[:4], [0, 0.02, 0.04, 0.06])      # 0.05 halves the third bin
    below = (hist[k][:2].sum() + 0.5 * hist[k][2]) / hist[k].sum()
    assert hidden_saturation(s) == pytest.approx(below)
    text = next(t for t in lab.q7([s]).text if t.startswith("Hidden units saturated at the end"))
    assert f"A1 {100 * below:.2g} (one seed)" in text or f"A1 {100 * below:.3g} (one seed)" in text


@pytest.mark.parametrize("horizon, short", [(20.0, True), (120.0, False)])
def test_vanishing_explains_only_where_the_horizon_is_short(tmp_path, horizon, short):
    out = [run(tmp_path / f"{name}{seed}.h5", task="mul", name=f"preset={name},seed={seed}", seed=seed,
               cell=cell, min_length=50, max_length=200,
               checks={"horizon_1e3": np.full(K, horizon + seed - 52), "horizon_1e6": np.full(K, 140.0),
                       "horizon_steps": np.full(K, 140.0)})
           for name, cell in (("B1", "rnn"), ("B2", "gru")) for seed in (52, 53)]
    text = next(t for t in lab.q7(out).text if t.startswith("How far the gradient reaches in B1 and B2"))
    from analysis.intervals import estimate
    assert f"the gradient falls below 10⁻³ of its value at the loss {estimate([horizon, horizon + 1]).text(3)} " \
           f"steps back (of 140)" in text
    assert ("falls a thousandfold within half of the 50–200 steps" in text) == short
    assert ("vanishing alone does not explain" in text) == (not short)


def test_long_text_is_cut_into_pages_without_losing_a_word():
    from analysis.lab_report import PAGE_LINES, TEXT_WIDTH, paginate
    paragraphs = [" ".join(f"w{i}-{j}" for j in range(40 * i + 10)) for i in range(1, 12)]
    pages = paginate(paragraphs)
    assert len(pages) > 1
    for blocks in pages:
        lines = "\n\n".join(blocks).split("\n")
        assert len(lines) <= PAGE_LINES and max(map(len, lines)) <= TEXT_WIDTH
    assert " ".join(" ".join(b.split()) for page in pages for b in page).split() == " ".join(paragraphs).split()


def test_every_answer_figure_keeps_its_text_at_8_points_and_inside_the_page(tmp_path):
    from matplotlib.text import Text
    from analysis.canvas import freeze
    from analysis.lab_report import figure_page
    runs = (capacity(tmp_path / "c", (2.0, 1.8, 1.6), seeds=(1, 2, 3), jitter=0.01)
            + cell_runs(tmp_path / "cells", {"rnn": (2.4, 2.5, 2.6), "gru": (2.0, 2.05, 2.1)}))
    families = classify_runs(tmp_path / "k", {("pooling", "last"): 80.0, ("pooling", "mean"): 85.0})
    drawn = [a for a in lab.answers({"lm": runs, "families": families, "presets": presets(tmp_path / "p", (0.1, 0.2, 0.3))})
             if a.draw is not None]
    assert {a.number for a in drawn} >= {1, 2, 4, 7, 8}
    for a in drawn:
        fig = freeze(figure_page(a))
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        page = fig.bbox
        hidden = {id(lab_) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)       # ticks outside the view
                  for tick in axis.get_major_ticks() if tick not in axis._update_ticks()
                  for lab_ in (tick.label1, tick.label2)}
        for t in fig.findobj(Text):
            if not (t.get_visible() and t.get_text().strip()) or id(t) in hidden:
                continue
            assert t.get_fontsize() >= 8, (a.number, t.get_text()[:40], t.get_fontsize())
            box = t.get_window_extent(renderer)
            assert box.x0 >= page.x0 - 1 and box.x1 <= page.x1 + 1, (a.number, t.get_text()[:40])
