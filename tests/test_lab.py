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
                    f[group].create_dataset(col, data=values, maxshape=(None,))
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


def test_spread_is_mean_and_sample_standard_deviation():
    m, sd, n = lab.spread([1.0, 2.0, 3.0, math.nan])
    assert (m, n) == (2.0, 3) and sd == pytest.approx(1.0)
    assert lab.spread([5.0]) == (5.0, 0.0, 1)
    assert lab.clear((1.0, 0.1, 3), (2.0, 0.2, 3)) and not lab.clear((1.0, 0.6, 3), (2.0, 0.5, 3))


# ----------------------------------------------------------------------- 2. capacity

def capacity(tmp_path, best, last=None):
    last = last or best
    return [run(tmp_path / f"h{h}.h5", cell="gru", n_hidden=h, seed=1,
                checks={"valid_loss": curve(b, e), "train_loss": curve(b, e) - 0.1 * (i + 1)})
            for i, (h, b, e) in enumerate(zip((16, 32, 64), best, last))]


def test_capacity_answer_follows_the_numbers(tmp_path):
    a = lab.q2(capacity(tmp_path / "a", (2.0, 1.8, 1.6)))
    assert "falls with every size up to the largest" in a.text[0]
    assert f"{math.exp(1.6):.4g} (H=64)" in a.text[0]
    assert "grows from +0.100 nats/char at H=16 to +0.300 at H=64" in a.text[1]
    assert a.text[2].startswith("No size overfits")
    b = lab.q2(capacity(tmp_path / "b", (1.6, 1.8, 2.0)))
    assert "is lowest at the smallest size" in b.text[0]
    c = lab.q2(capacity(tmp_path / "c", (2.0, 1.5, 1.7)))
    assert "is lowest at H=32" in c.text[0]


def test_overfitting_is_flagged_where_validation_turns_up(tmp_path):
    a = lab.q2(capacity(tmp_path, (2.0, 1.8, 1.6), last=(2.0, 1.8, 1.7)))  # H=64 ends 6% above its best
    assert a.text[2].startswith("Overfitting: validation turned up")
    assert "H=64" in a.text[2] and "H=32" not in a.text[2]
    assert "best 1.6 at update 160, final 1.7" in a.text[2]
    assert list(a.table["turned_up"]) == [False, False, True]


# -------------------------------------------------------------------------- 3. depth

def depth(tmp_path, ppl2, spike):
    """RNN at 1 and 2 layers, clipped at 1 and not; the unclipped 1-layer run's gradient norm has
    one spike of `spike`× its level."""
    out = []
    for L in (1, 2):
        for clip in ("rescale", "none"):
            gn = np.full(200, 0.5)
            if clip == "none" and L == 1:
                gn[100] = 0.5 * spike
            loss = np.log(ppl2) if L == 2 else np.log(6.0)
            out.append(run(tmp_path / f"L{L}{clip}.h5", n_layers=L, clip=clip, cutoff=1.0, seed=1,
                           dropout=0.2 if L > 1 else 0.0, checks={"valid_loss": curve(loss)}, iters={"grad_norm": gn}))
    return out


def test_depth_answer_turns_with_the_perplexity_and_states_explosions(tmp_path):
    helps = lab.q3(depth(tmp_path / "a", 5.0, 400))
    assert helps.text[0] == ("With clipping at 1, 2 layers instead of 1 helps: validation perplexity 5 against 6.")
    assert "2 layers instead of 1 helps" in helps.text[1] and helps.text[1].startswith("With clipping off")
    lines = " ".join(helps.text[2:])
    assert "1 layer without clipping (seed 1): exploding, largest gradient norm 200 = 400× the median" in lines
    assert "1 layer clipped at 1 (seed 1): no explosion" in lines
    hurts = lab.q3(depth(tmp_path / "b", 7.0, 50))
    assert "2 layers instead of 1 hurts: validation perplexity 7 against 6" in hurts.text[0]
    assert "exploding" not in " ".join(hurts.text[2:])          # 50× the median is below the threshold


def test_depth_reads_each_layers_g_t(tmp_path):
    s = depth(tmp_path, 5.0, 1)[2]                              # 2 layers, clipped
    rows = lab.depth_rows([s])
    for layer in (0, 1):
        g = s.layers[layer].grad_time[-1]
        g = g[np.isfinite(g)]
        assert rows[f"layer{layer}_span"][0] == pytest.approx(g[-1] / g[0])


# ----------------------------------------------------------------------- 4. cell choice

def cell_runs(tmp_path, bpc):
    """Three cells × three seeds with the given best validation bits/char per cell and seed."""
    return [run(tmp_path / f"{cell}{seed}.h5", cell=cell, seed=seed,
                checks={"valid_bpc": curve(b[seed - 1], start=4.0)})
            for cell, b in bpc.items() for seed in (1, 2, 3)]


def test_cell_answer_names_the_winner_and_whether_the_spread_resolves_it(tmp_path):
    a = lab.q4(cell_runs(tmp_path / "a", {"rnn": (2.4, 2.5, 2.6), "gru": (2.0, 2.05, 2.1),
                                            "lstm": (2.2, 2.25, 2.3)}), [])
    assert a.text[0].startswith("Character LM (best validation bits/char): GRU wins with 2.05 ± 0.05 (3) "
                                "against LSTM 2.25 ± 0.05 (3), a gap of 0.2, more than both spreads")
    assert "then RNN 2.5 ± 0.1 (3)" in a.text[0]
    b = lab.q4(cell_runs(tmp_path / "b", {"rnn": (2.4, 2.5, 2.6), "gru": (2.3, 2.35, 2.4),
                                            "lstm": (2.0, 2.05, 2.1)}), [])
    assert "LSTM wins" in b.text[0]
    c = lab.q4(cell_runs(tmp_path / "c", {"rnn": (2.4, 2.5, 2.6), "gru": (2.0, 2.2, 2.4),
                                            "lstm": (2.1, 2.25, 2.4)}), [])
    assert "GRU wins" in c.text[0] and "not resolved at this many seeds" in c.text[0]
    row = a.table.set_index("model").loc["GRU"]
    assert (row["mean"], row["seeds"]) == (pytest.approx(2.05), 3)


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
    def mlp(losses):
        return [run(tmp_path / f"w{w}{i}.h5", cell="mlp", window=w, seed=1, checks={"valid_loss": curve(b)})
                for i, (w, b) in enumerate(zip((1, 2, 4, 8), losses))]
    a = lab.q5(mlp((2.7, 2.2, 2.0, 2.005)), curves={})
    assert "falls from 2.7 nats/char at W=1 to 2 at W=4; wider windows gain less than 0.01 nats" in a.text[0]
    assert "about 4 characters" in a.text[0]
    tmp_path = tmp_path / "b"
    b = lab.q5(mlp((2.7, 2.2, 2.0, 2.3)), curves={"GRU": by_position(),
                                                   "RNN": np.stack([np.full(64, 2.0), np.full(64, 1.5)])})
    assert "the widest, W=8, is worse again (2.3)" in b.text[0]
    assert b.text[1].startswith("GRU: from the zero state its loss falls from 2.5 nats/char")
    assert "whole past cost 1.5; it comes within 0.02 nats of that at position 13 of 64" in b.text[1]
    assert "stays more than 0.02 nats above it over all 64 positions" in b.text[2]


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
    assert a.text[0].startswith("Exposure bias (teacher-forced minus greedy token accuracy at the end, points): "
                                "inverse sigmoid k=80 lowers it, 6 ± 1 (3) against 12 ± 1 (3) with teacher forcing 1")
    assert "the training loss is noisier" in a.text[1]
    assert a.text[2].endswith("teacher forcing 1 decodes better.")
    b = lab.q6(tf_runs(tmp_path / "b", 15.0, 0.001))
    assert "inverse sigmoid k=80 raises it" in b.text[0] and "smoother" in b.text[1]
    assert b.text[2].endswith("inverse sigmoid k=80 decodes better.")


# ------------------------------------------------------------------------- 7. the presets

def presets(tmp_path, losses, c1_status="solved"):
    out = []
    for name, clip, cutoff, spike, loss in (("A1", "none", 1.0, 300, losses[0]), ("A2", "rescale", 0.05, 20, losses[1]),
                                            ("A3", "rescale", 0.01, 5, losses[2])):
        gn = np.full(200, 0.2)
        gn[50] = 0.2 * spike
        out.append(run(tmp_path / f"{name}.h5", task="mem", name=f"preset={name}", clip=clip, cutoff=cutoff,
                       checks={"valid_loss": curve(loss)}, iters={"grad_norm": gn}))
    for name, status in (("C0", "finished"), ("C1", c1_status)):
        s = run(tmp_path / f"{name}.h5", task="torder", name=f"preset={name}",
                checks={"valid_error": np.r_[np.full(K - 1, 70.0), 0.0 if status == "solved" else 70.0]})
        with h5py.File(s.path, "a") as f:
            f.attrs["status"] = status
        out.append(load(s.path))
    return out


def test_preset_paragraphs_carry_their_numbers_and_turn(tmp_path):
    a = lab.q7(presets(tmp_path / "a", (0.1, 0.2, 0.3)))
    assert a.text[0].startswith("Clipping regimes (A1, A2, A3): the largest gradient norm is A1 (clip off) 60, "
                                "A2 (clip 0.05) 4, A3 (clip 0.01) 1; only A1 explodes")
    assert "tighter clipping slows learning" in a.text[0]
    assert a.text[-1].startswith("C1 against C0 (temporal order): C1 is solved at update 200 (0% error), "
                                 "C0 ends at 70% error after 200 updates")
    b = lab.q7(presets(tmp_path / "b", (0.3, 0.2, 0.1), c1_status="finished"))
    assert "tighter clipping speeds learning" in b.text[0]
    assert "C1 ends at 0% error" not in b.text[-1] and "C1 ends at" in b.text[-1]
    assert [r for r in a.table["run"]] == ["A1", "A2", "A3", "C0", "C1"]


# ---------------------------------------------------------------------------- the chapter

def test_the_chapter_answers_every_question_in_order_even_without_runs():
    got = lab.answers({})
    assert [a.number for a in got] == list(range(1, 8))
    assert all(a.text and a.draw is None and not len(a.table) for a in got)
    assert got[0].text == ["No language-model runs."] and got[6].text == ["No preset runs."]


def test_report_of_a_study_folder_writes_the_chapter(tmp_path):
    study = tmp_path / "study"
    lm = study / "lm"
    lm.mkdir(parents=True)
    for h in (16, 32):
        for seed in (1, 2):
            run(lm / f"gru{h}-{seed}.h5", cell="gru", n_hidden=h, seed=seed, checks={"valid_loss": curve(2.0 - h / 100)})
    run(lm / "rnn.h5", cell="rnn", n_hidden=16, seed=1)
    (study / "presets").mkdir()
    for s in presets(tmp_path / "p", (0.1, 0.2, 0.3)):
        (study / "presets" / f"{s.name.split('=')[1]}.h5").write_bytes(open(s.path, "rb").read())
    out = tmp_path / "report" / "lab.pdf"
    from dynamics.cli import cli as dynamics_cli
    result = CliRunner().invoke(dynamics_cli, ["report", str(study), "-o", str(out)])
    assert result.exit_code == 0, result.output
    md = (tmp_path / "report" / "lab.md").read_text()
    for n in range(1, 8):
        assert f"## {n}. " in md
    assert "falls with every size up to the largest" in md
    assert "![Capacity against generalisation](lab_figures/q2.png)" in md
    assert (tmp_path / "report" / "lab_figures" / "q2.png").is_file()
    assert (tmp_path / "report" / "lab_figures" / "A1_dashboard.png").is_file()
    csv = (tmp_path / "report" / "lab.csv").read_text()
    assert csv.startswith("setting,") or "question" in csv.splitlines()[0]
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
