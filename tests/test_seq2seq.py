"""Encoder–decoder: the tasks, masking, ∂L/∂h_t against a naive float64 implementation, greedy and
beam search against enumeration, determinism, resume and bad input. Tiny models, seconds."""
import datetime
import itertools
import math

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dynamics.config import make as make_config
from tasks.errors import InputError
from dynamics.models.seq2seq import EOS, allowed, beam_search, build, greedy
from dynamics.sources.seq2seq import Seq2Seq as Source, teacher_ratio
from dynamics.train import train
from tasks.seq2seq import FORMATS, MONTHS, WEEKDAYS, make


# -- tasks ----------------------------------------------------------------------------------------
def test_date_formats_weekdays_and_target():
    task = make("date")
    rng = np.random.default_rng(0)
    seen = set()
    for source, target, k in task.generate(400, rng):
        seen.add(k)
        month, rest = target.split(" ", 1)
        day, year = rest.split(", ")
        d = datetime.date(int(year), [m[:3] for m in MONTHS].index(month) + 1, int(day))
        assert 1900 <= d.year <= 2099
        assert source == FORMATS[task.formats[k]](d)
        if task.formats[k] == "weekday_long":
            assert source.split(",")[0] == WEEKDAYS[d.weekday()]
    assert seen == set(range(5))
    d = datetime.date(2025, 9, 30)
    assert [f(d) for f in FORMATS.values()] == ["2025-09-30", "30/09/2025", "September 30, 2025", "30 Sep 2025",
                                                "Tuesday, 30 September 2025"]
    assert max(len(f(d)) for f in FORMATS.values()) <= task.longest_source()


def test_copy_reverse_lengths_and_encoding():
    task = make("reverse", alphabet=5, min_length=3, max_length=7)
    pairs = task.generate(200, np.random.default_rng(1))
    assert {len(s) for s, _, _ in pairs} == set(range(3, 8))
    assert all(t == s[::-1] and set(s) <= set("abcde") for s, t, _ in pairs)
    tgt_in, tgt_out, lengths = task.encode_target(["ab", "c"])
    assert tgt_out[:, 0].tolist() == [3, 4, EOS] and tgt_out[:, 1].tolist() == [5, EOS, 0]
    assert tgt_in[:, 0].tolist() == [1, 3, 4] and tgt_in[:, 1].tolist() == [1, 5, 0]
    assert lengths.tolist() == [3, 2]


# -- a tiny model and batch -------------------------------------------------------------------------
def tiny(cell="gru", attention="luong_general", bidirectional=False, n_layers=1, H=6, seed=0, dtype=torch.float64,
         task=None):
    task = task or make("reverse", alphabet=4, min_length=1, max_length=6)
    model = build(cell, len(task.source_vocab), len(task.target_vocab), 5, H, n_layers, bidirectional, attention,
                  seed=seed, dtype=dtype)
    return model, task


def batch(task, pairs):
    src, src_len = task.encode_source([s for s, _ in pairs])
    tgt_in, tgt_out, tgt_len = task.encode_target([t for _, t in pairs])
    return src, src_len, tgt_in, tgt_out, tgt_len


PAIRS = [("abcdab", "badcba"), ("c", "c"), ("dab", "bad"), ("bb", "bb")]


@pytest.mark.parametrize("attention", ["bahdanau", "luong_dot", "luong_general"])
def test_attention_weights_sum_to_one_on_valid_steps_and_are_zero_on_padding(attention):
    model, task = tiny(attention=attention)
    src, src_len, tgt_in, tgt_out, tgt_len = batch(task, PAIRS)
    weights = model(src, src_len, tgt_in, tgt_len).attention      # (T_d, B, T_s)
    for b, n in enumerate(src_len.tolist()):
        assert torch.allclose(weights[:, b, :n].sum(-1), torch.ones(weights.shape[0], dtype=weights.dtype))
        assert (weights[:, b, n:] == 0).all()
        assert (weights[:, b, :n] > 0).all()


@pytest.mark.parametrize("cell, attention, bidirectional, n_layers", [
    ("gru", "luong_general", True, 2), ("rnn", "bahdanau", True, 1), ("lstm", "none", True, 2), ("gru", "luong_dot", False, 1)])
def test_a_sequence_alone_and_inside_a_padded_batch_give_the_same_outputs(cell, attention, bidirectional, n_layers):
    model, task = tiny(cell, attention, bidirectional, n_layers)
    src, src_len, tgt_in, tgt_out, tgt_len = batch(task, PAIRS)
    logits = model(src, src_len, tgt_in, tgt_len).logits
    ids, logp, _ = greedy(model, src, src_len, 8)
    for b, (s, t) in enumerate(PAIRS):
        one = batch(task, [(s, t)])
        alone = model(one[0], one[1], one[2], one[4]).logits
        n = len(t) + 1
        assert torch.allclose(alone[:n, 0], logits[:n, b], atol=1e-12)
        ids1, logp1, _ = greedy(model, one[0], one[1], 8)
        assert ids1[0].tolist() == ids[b, :ids1.shape[1]].tolist() and abs(logp1.item() - logp[b].item()) < 1e-12


# -- ∂L/∂h_t against a naive step-by-step implementation --------------------------------------------
def layer_norm(z, gain, bias):
    mu, var = z.mean(), ((z - z.mean()) ** 2).mean()
    return gain * (z - mu) / torch.sqrt(var + 1e-5) + bias


def naive_cell(layer, x, state):
    """One step of the layer's equations, written out: x (n_in,), state (h,) or (h, c) of (H,)."""
    H, h = layer.n_hidden, state[0]
    if layer.cell == "rnn":
        return (torch.tanh(x @ layer.W_x + layer.b + h @ layer.W_h),)
    if layer.cell == "gru":
        a = x @ layer.W_x + layer.b
        zr = torch.sigmoid(a[:2 * H] + h @ layer.W_h[:, :2 * H])
        z, r = zr[:H], zr[H:]
        cand = torch.tanh(a[2 * H:] + (r * h) @ layer.W_h[:, 2 * H:])
        return ((1 - z) * h + z * cand,)
    if layer.cell == "lstm":
        a = x @ layer.W_x + h @ layer.W_h + layer.b
    else:
        a = layer_norm(x @ layer.W_x, layer.g_x, layer.beta_x) + layer_norm(h @ layer.W_h, layer.g_h, layer.beta_h) + layer.b
    i, f, o = (torch.sigmoid(a[k * H:(k + 1) * H]) for k in (0, 1, 3))
    c = f * state[1] + i * torch.tanh(a[2 * H:3 * H])
    squashed = c if layer.cell == "lstm" else layer_norm(c, layer.g_c, layer.beta_c)
    return (o * torch.tanh(squashed), c)


def naive_context(model, query, memory):
    """The attention of the model's docstring, one source position at a time: query (H,) against
    memory [h_j (E,)] → context (E,)."""
    scores = []
    for h_j in memory:
        if model.attention == "bahdanau":
            scores.append(model.v @ torch.tanh(query @ model.W_q + h_j @ model.W_k))
        elif model.attention == "luong_dot":
            scores.append(query @ h_j)
        else:
            scores.append(query @ (h_j @ model.W_a))
    weights = torch.softmax(torch.stack(scores), 0)
    return sum(w * h_j for w, h_j in zip(weights, memory))


def naive_loss(model, pairs, task, teacher):
    """Each sequence alone, one step at a time, no padding anywhere. Returns the mean token loss and
    the retained states {part name: [[h_t per step] per sequence]}."""
    H = model.n_hidden
    lstm = model.cell in ("lstm", "lnlstm")
    states = {}
    total, count = 0.0, 0
    for b, (s, t) in enumerate(pairs):
        src, _ = task.encode_source([s])
        x = [model.src_embedding(src[j, 0]) for j in range(len(s))]
        finals = []
        for l in range(model.n_layers):
            dirs = [("f", model.enc_fwd[l], range(len(s)))]
            if model.bidirectional:
                dirs.append(("b", model.enc_bwd[l], range(len(s) - 1, -1, -1)))
            outs, ends = [], []
            for d, layer, order in dirs:
                zero = torch.zeros(H, dtype=torch.float64)
                state, hs = (zero, zero) if lstm else (zero,), [None] * len(s)
                for j in order:
                    state = naive_cell(layer, x[j], state)
                    state[0].retain_grad()
                    hs[j] = state[0]
                name = f"enc{l}{d}" if model.bidirectional else f"enc{l}"
                states.setdefault(name, []).append(hs)
                outs.append(hs)
                ends.append(state)
            last = ends[0]                                     # the forward direction's final (h,) or (h, c)
            if model.bidirectional:                            # bridges: h through W_b, c through W_bc
                bridges = [(model.W_b[l], model.b_b[l])] + ([(model.W_bc[l], model.b_bc[l])] if lstm else [])
                last = tuple(torch.tanh(torch.cat([fw, bw]) @ W + bias) for fw, bw, (W, bias) in zip(*ends, bridges))
            finals.append(last)
            x = [torch.cat([o[j] for o in outs]) for j in range(len(s))]
        memory = x
        tgt_in, tgt_out, _ = task.encode_target([t])
        hs_dec = [[] for _ in range(model.n_layers)]
        dec_state = list(finals)
        attentional = torch.zeros(H, dtype=torch.float64)          # h̃_0 (Luong)
        prev = None
        for step in range(len(t) + 1):
            token = tgt_in[step, 0] if step == 0 or teacher is None or teacher[step, b] else prev
            inp = model.tgt_embedding(token)
            if model.attention == "bahdanau":                       # c_t from s_{t-1}
                context = naive_context(model, dec_state[-1][0], memory)
                inp = torch.cat([inp, context])
            elif model.attention != "none":
                inp = torch.cat([inp, attentional])
            for l in range(model.n_layers):
                dec_state[l] = naive_cell(model.dec[l], inp, dec_state[l])
                dec_state[l][0].retain_grad()
                hs_dec[l].append(dec_state[l][0])
                inp = dec_state[l][0]
            if model.attention == "none":
                logits = inp @ model.W_y + model.b_y
            else:
                if model.attention != "bahdanau":                   # Luong: c_t from s_t
                    context = naive_context(model, inp, memory)
                attentional = torch.tanh(torch.cat([inp, context]) @ model.W_c)
                logits = attentional @ model.W_y + model.b_y
            prev = logits.detach().argmax()
            total = total + F.cross_entropy(logits[None], tgt_out[step])
            count += 1
        for l in range(model.n_layers):
            states.setdefault(f"dec{l}", []).append(hs_dec[l])
    return total / count, states


@pytest.mark.parametrize("cell, attention, bidirectional, n_layers, sampled", [
    ("gru", "luong_general", True, 2, False),     # input feeding: step-by-step decoder
    ("rnn", "none", False, 2, False),             # whole-sequence decoder
    ("lstm", "none", True, 2, False),             # whole-sequence decoder, the fused LSTM
    ("gru", "bahdanau", True, 1, False),          # context from s_{t-1} into the step
    ("gru", "bahdanau", False, 1, True),          # scheduled sampling: step-by-step
    ("rnn", "luong_dot", False, 1, True),
    ("lstm", "luong_general", True, 2, True),     # LSTM stepping with its cell state
    ("lstm", "bahdanau", False, 1, True),
    ("lstm", "none", False, 1, True),
    ("lnlstm", "luong_general", False, 2, True),
    ("lnlstm", "bahdanau", True, 1, False),       # the encoder's c bridged into the decoder
])
def test_hidden_gradients_equal_autograd_on_a_naive_implementation(cell, attention, bidirectional, n_layers, sampled):
    model, task = tiny(cell, attention, bidirectional, n_layers)
    src, src_len, tgt_in, tgt_out, tgt_len = batch(task, PAIRS)
    teacher = None
    if sampled:
        teacher = torch.from_numpy(np.random.default_rng(3).random(tgt_in.shape) < 0.5)
        teacher[0] = True
    out = model(src, src_len, tgt_in, tgt_len, teacher)
    F.cross_entropy(out.logits.reshape(-1, out.logits.shape[-1]), tgt_out.reshape(-1), ignore_index=0).backward()
    parts = {p.name: p for p in model.parts()}
    assert list(parts)[-1] == f"dec{n_layers - 1}"
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    loss, states = naive_loss(model, PAIRS, task, teacher)
    model.zero_grad()
    loss.backward()
    for k, p in model.named_parameters():
        assert torch.allclose(grads[k], p.grad, atol=1e-12, rtol=1e-9), k
    for name, per_sequence in states.items():
        grad = parts[name].grad
        for b, hs in enumerate(per_sequence):
            expect = torch.stack([h.grad for h in hs])
            assert torch.allclose(grad[:len(hs), b], expect, atol=1e-12, rtol=1e-9), (name, b)
            assert (grad[len(hs):, b] == 0).all(), (name, b)       # exactly zero on padding
            assert expect.abs().max() > 0


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm", "lnlstm"])
def test_every_cell_decodes_with_every_attention_and_sampled_inputs(cell):
    """Teacher-forced through forward equals the same inputs fed one step at a time (the decoding
    path), for every attention; with sampled inputs the gradient reaches every decoder step."""
    for attention in ("none", "bahdanau", "luong_dot", "luong_general"):
        model, task = tiny(cell, attention, n_layers=2)
        src, src_len, tgt_in, tgt_out, tgt_len = batch(task, PAIRS)
        teacher = torch.ones(tgt_in.shape, dtype=torch.bool)
        teacher[2:, 1::2] = False
        out = model(src, src_len, tgt_in, tgt_len)
        memory, initial = model.encode(src, src_len)
        state = model.start(initial, len(PAIRS), memory.values)
        for t in range(tgt_in.shape[0]):
            logits, state, weights, _ = model.step(tgt_in[t], state, memory)
            assert torch.allclose(logits, out.logits[t], atol=1e-12), (attention, t)
            assert (weights is None) == (attention == "none")
        out = model(src, src_len, tgt_in, tgt_len, teacher)
        F.cross_entropy(out.logits.reshape(-1, out.logits.shape[-1]), tgt_out.reshape(-1), ignore_index=0).backward()
        grad = model.parts()[-1].grad
        for b, n in enumerate(tgt_len.tolist()):
            assert (grad[:n, b].abs().sum(-1) > 0).all() and (grad[n:, b] == 0).all(), (attention, b)


# -- decoding ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("attention", ["none", "luong_general", "bahdanau"])
def test_beam_size_one_equals_greedy(attention):
    model, task = tiny(attention=attention, seed=4, dtype=torch.float32, H=8)
    pairs = task.generate(30, np.random.default_rng(2))
    src, src_len = task.encode_source([s for s, _, _ in pairs])
    ids, logp, _ = greedy(model, src, src_len, 9)
    hyps = beam_search(model, src, src_len, 1, 9, norm="none")
    for b, [(beam_ids, beam_logp, _)] in enumerate(hyps):
        row = ids[b].tolist()
        expect = row[:row.index(EOS)] if EOS in row else row
        assert beam_ids == expect
        assert abs(beam_logp - logp[b].item()) < 1e-4


def sequence_logp(model, src, src_len, ids, max_steps):
    """log p of a whole output (ids ending in <eos>, or max_steps ids without), token by token."""
    memory, initial = model.encode(src, src_len)
    state = model.start(initial, 1, memory.values)
    tokens, total = src.new_full((1,), 1), 0.0
    for i in ids:
        logits, state, _, _ = model.step(tokens, state, memory)
        total += allowed(logits)[0, i].item()
        tokens = torch.tensor([i])
    return total


@pytest.mark.parametrize("norm", ["none", "avg", "gnmt"])
def test_beam_search_finds_the_exact_best_of_all_outputs(norm):
    from dynamics.models.seq2seq import normalised
    task = make("reverse", alphabet=2, min_length=1, max_length=3)
    model, _ = tiny("gru", "luong_general", task=task, seed=7, H=4)
    chars, max_steps = [3, 4], 4
    outputs = [list(p) + [EOS] for n in range(max_steps) for p in itertools.product(chars, repeat=n)]
    outputs += [list(p) for p in itertools.product(chars, repeat=max_steps)]      # unended
    with torch.no_grad():
        for source in ("ab", "bba"):
            src, src_len = task.encode_source([source])
            scored = [(normalised(lp, len(o), norm, 0.6), lp, o) for o in outputs
                      for lp in [sequence_logp(model, src, src_len, o, max_steps)]]
            best = max(scored)
            [[(ids, logp, score)]] = beam_search(model, src, src_len, 64, max_steps, norm=norm, alpha=0.6)
            assert ids == [i for i in best[2] if i != EOS]
            assert abs(logp - best[1]) < 1e-9 and abs(score - best[0]) < 1e-9
            # and a narrow beam is never better than the exact best
            for hyp in beam_search(model, src, src_len, 2, max_steps, norm=norm, n_best=2)[0]:
                assert hyp[2] <= best[0] + 1e-9


class TableModel:
    """A hand-set decoder for the interface of dynamics.models.seq2seq (encode, start, step): the
    next-token probabilities are a table keyed by the output so far (the source is ignored), so
    every output's probability is a product of table entries. The state is that output itself."""
    V = 5                                        # <pad> <sos> <eos> a b

    def __init__(self, table):
        self.table = table                       # {prefix (tuple of ids): (p<eos>, p_a, p_b)}

    def encode(self, src, src_len):
        from dynamics.models.seq2seq import Memory
        T, B = src.shape
        values = torch.zeros(T, B, 1, dtype=torch.float64)
        return Memory(values, values, torch.ones(T, B, dtype=torch.bool)), None

    def start(self, initial, batch, like):
        return [(like.new_zeros(batch, 0),)], None

    def step(self, tokens, state, memory):
        [(prefix,)], _ = state
        prefix = torch.cat([prefix, tokens[:, None].to(prefix.dtype)], dim=1)    # <sos> first
        probs = torch.tensor([[0.0, 0.0, *self.probs([int(i) for i in row[1:]])] for row in prefix.tolist()],
                             dtype=torch.float64)
        return probs.log(), ([(prefix,)], None), None, []

    def probs(self, prefix):
        """(p<eos>, p_a, p_b) after `prefix`."""
        p = self.table.get(tuple(prefix), (0.9, 0.05, 0.05))
        return [q / sum(p) for q in p]

    def logp(self, ids):
        """log p of an output (ids, <eos> last when it ended)."""
        return sum(math.log(self.probs(ids[:k])[ids[k] - EOS]) for k in range(len(ids)))


A, B_ = 3, 4
TRAPS = {   # stopping at the first beam_size finished hypotheses returns <eos> at once, not the optimum
    "none": {(): (0.35, 0.6, 0.05), (A,): (0.3, 0.7, 1e-6), (A, A): (0.99, 0.005, 0.005)},
    # with length normalisation the best live prefix must be judged at the longest length it can
    # reach: judged at its own length (1) it cannot beat <eos> at once, yet "aaa" does
    "avg": {(): (0.6, 0.4, 1e-6), (A,): (0.005, 0.99, 0.005), (A, A): (0.005, 0.99, 0.005),
            (A, A, A): (0.99, 0.005, 0.005)},
}


@pytest.mark.parametrize("norm", ["none", "avg"])
def test_beam_search_does_not_stop_before_a_longer_output_can_win(norm):
    from dynamics.models.seq2seq import normalised
    model, max_steps = TableModel(TRAPS[norm]), 4
    outputs = [list(p) + [EOS] for n in range(max_steps) for p in itertools.product((A, B_), repeat=n)]
    outputs += [list(p) for p in itertools.product((A, B_), repeat=max_steps)]
    scored = sorted(((normalised(model.logp(o), len(o), norm, 0.6), o) for o in outputs), reverse=True)
    best_score, best = scored[0]
    assert len(best) > 1 and normalised(model.logp([EOS]), 1, norm, 0.6) < best_score   # the trap is set
    src, src_len = torch.ones(3, 2, dtype=torch.int64), torch.tensor([3, 3])
    for K in (2, 3):
        for ids, logp, score in [h[0] for h in beam_search(model, src, src_len, K, max_steps, norm=norm)]:
            assert ids + [EOS] == best and abs(score - best_score) < 1e-12 and abs(logp - model.logp(best)) < 1e-12
    ids, _, _ = greedy(model, src, src_len, max_steps)
    assert ids[0].tolist() == [A, A, EOS] if norm == "none" else ids[0].tolist() == [EOS]   # greedy takes the bait


# -- the trainer ------------------------------------------------------------------------------------
def config(tmp_path, **changes):
    values = dict(task="reverse", name="s", out_dir=str(tmp_path), cell="gru", n_hidden=12, embedding=8, alphabet=5,
                  min_length=2, max_length=6, batch_size=8, max_iters=20, check_freq=10, eval_batch_size=40,
                  chunk_batch_size=20, optimizer="adam", lr=0.01, beam_size=2, seed=3)
    values.update(changes)
    return make_config(values)


def test_schedules():
    assert teacher_ratio("constant", 0.7, 5.0, 100) == 0.7
    assert teacher_ratio("linear", 1.0, 100.0, 50) == 0.5 and teacher_ratio("linear", 1.0, 100.0, 500) == 0.0
    assert abs(teacher_ratio("exponential", 1.0, 0.99, 10) - 0.99 ** 10) < 1e-12
    assert abs(teacher_ratio("inverse_sigmoid", 1.0, 10.0, 20) - 10 / (10 + math.exp(2))) < 1e-12


@pytest.mark.parametrize("changes", [{}, dict(attention="bahdanau", bidirectional=True, tf_schedule="linear",
                                             tf_k=15.0, task="date", eval_batch_size=20)])
def test_training_is_deterministic_and_resumes_identically(tmp_path, changes):
    whole = train(config(tmp_path / "a", max_iters=30, **changes), progress=False)
    again = train(config(tmp_path / "c", max_iters=30, **changes), progress=False)
    train(config(tmp_path / "b", max_iters=20, **changes), progress=False)
    resumed = train(config(tmp_path / "b", max_iters=30, **changes), resume=True, progress=False)
    names = ("iter/loss", "iter/grad_norm", "check/valid_loss", "check/greedy_exact", "check/beam_exact",
             "check/tf_ratio", "check/tf_used", "check/exact_by_length", "check/grad_time")
    with h5py.File(whole) as f, h5py.File(again) as g, h5py.File(resumed) as r:
        for name in names + (("check/attention",) if "attention" not in changes else ()):
            assert np.array_equal(f[name][:], g[name][:], equal_nan=True), name
            assert np.array_equal(f[name][:], r[name][:], equal_nan=True), name
        assert f["check/iter"].shape == (3,)
        if changes:   # the scheduled ratio decays linearly to 0 at update 15 and what was fed follows it
            ratio = f["check/tf_ratio"][:].reshape(-1)
            assert np.allclose(ratio[:20], [max(0, 1 - i / 15) for i in range(20)])
            assert f["check/tf_used"][1, 6:].max() == 0.0
        else:
            assert (f["check/tf_used"][:] == 1).all()


def test_an_lstm_decoder_trains_with_luong_attention_and_scheduled_sampling(tmp_path):
    path = train(config(tmp_path, cell="lstm", attention="luong_general", tf_schedule="linear", tf_k=6.0,
                        max_iters=10, check_freq=5), progress=False)
    with h5py.File(path) as f:
        assert np.allclose(f["check/tf_ratio"][:].reshape(-1)[:7], [1 - i / 6 for i in range(7)])
        assert f["check/tf_used"][1].max() < 0.5 and np.isfinite(f["iter/loss"][:]).all()
        assert f["iter/loss"][-1] < f["iter/loss"][0]


def test_per_check_records(tmp_path):
    path = train(config(tmp_path, max_iters=10, attention="luong_dot"), progress=False)
    source = Source(config(tmp_path), torch.device("cpu"), torch.float32)
    with h5py.File(path) as f:
        maps = f["check/attention"][-1]
        outputs = [o.decode() for o in f["check/attention_output"][-1]]
        for k, (src, _, _) in enumerate(source.examples):
            steps = len(outputs[k]) + 1 if len(outputs[k]) < source.max_steps else source.max_steps
            assert np.allclose(maps[k, :steps, :len(src)].sum(-1), 1) and (maps[k, :, len(src):] == 0).all()
            assert (maps[k, steps:] == 0).all()
        by_length = f["check/exact_by_length"][-1]
        lengths = {len(s) for s, _, _ in source.valid}
        assert all(np.isnan(by_length[L]) != (L in lengths) for L in range(len(by_length)))
        assert abs(f["check/valid_error"][-1] - (100 - f["check/greedy_exact"][-1])) < 1e-9
        assert list(f["static/example_source"].asstr()[:]) == [s for s, _, _ in source.examples]
        assert "enc0" in f["check/layers"] and f["check/grad_time"].shape[0] == 1
    assert path.with_name("s_best.pt").exists()
    # the attention maps: one label per source character and output step, every cell the same square
    from analysis.read import load
    from analysis.panels.seq2seq import CELL, figure_attention
    fig = figure_attention(load(path))
    maps = [ax for ax in fig.axes if ax.images]
    assert len(maps) == len(source.examples)
    for ax, (src, _, _) in zip(maps, source.examples):
        assert [t.get_text() for t in ax.get_xticklabels()] == list(src)
        assert ax.get_images()[0].get_array().shape[1] == len(src)
    assert fig.get_figwidth() <= 8.0 + (source.task.longest_source() * CELL + 0.9)


@pytest.mark.parametrize("changes, message", [
    (dict(attention="cosine"), "attention='cosine' is not allowed"),
    (dict(tf_schedule="cosine"), "tf_schedule='cosine' is not allowed"),
    (dict(beam_size=0), "beam_size=0 is not allowed"),
    (dict(tf_schedule="exponential"), "tf_k=1000.0 is not allowed"),
    (dict(teacher_forcing=1.5), "teacher_forcing=1.5"),
    (dict(attention="luong_dot", bidirectional=True), "attention='luong_dot'"),
])
def test_bad_config_is_refused(tmp_path, changes, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        config(tmp_path, **changes)
    with pytest.raises(InputError, match="attention='none' is not allowed: not set"):
        make_config(dict(task="add", attention="none"))


# -- dynamics translate --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def date_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("date")
    return train(config(tmp, task="date", name="d", max_iters=10, check_freq=5), progress=False)


def run_cli(capsys, *args):
    from dynamics import cli
    with pytest.raises(SystemExit) as e:
        cli.main(list(args))
        raise SystemExit(0)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_translate_prints_the_n_best_of_the_beam(date_run, capsys, tmp_path):
    from dynamics.translate import hypotheses
    (inputs := tmp_path / "in.txt").write_text("30 Sep 2025\nMonday, 1 July 1963\n")
    code, out, err = run_cli(capsys, "translate", str(date_run), "2025-09-30", "--file", str(inputs),
                             "--beam", "4", "--n-best", "3")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "2025-09-30" and lines[4] == "30 Sep 2025" and lines[8] == "Monday, 1 July 1963"
    assert all(line.startswith(f"  {k}. ") and "log p = " in line for line, k in zip(lines[1:4], (1, 2, 3)))
    [(_, hyps)] = hypotheses(date_run, ["2025-09-30"], beam=4, n_best=3, norm="none")
    assert [h[1] for h in hyps] == sorted([h[1] for h in hyps], reverse=True) and len(hyps) == 3
    [(_, [one])] = hypotheses(date_run, ["2025-09-30"], beam=1)
    source = Source(config(tmp_path, task="date"), torch.device("cpu"), torch.float32)
    from dynamics.translate import load_model, read_config
    model, task, _ = load_model(read_config(date_run), date_run)
    src, src_len = task.encode_source(["2025-09-30"])
    ids, logp, _ = greedy(model, src, src_len, source.max_steps)
    assert one[0] == task.decode_target(ids[0].tolist()) and abs(one[1] - logp.item()) < 1e-4


def test_translate_refuses_bad_input_with_one_line(date_run, capsys, tmp_path):
    other = train(make_config(dict(task="torder", name="t", out_dir=str(tmp_path), min_length=10, max_length=10,
                                   n_hidden=5, max_iters=2, check_freq=1, eval_batch_size=10)), progress=False)
    (empty_line := tmp_path / "in.txt").write_text("2025-09-30\n\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    for args, message in [
        ((str(date_run), "2025-09-3x"), "'x' at position 9 is not in it"),
        ((str(date_run), ""), "input='' is not allowed: a non-empty string"),
        ((str(date_run), "2025-09-30", "--beam", "0"), "beam_size=0 is not allowed"),
        ((str(date_run), "2025-09-30", "--n-best", "3", "--beam", "2"), "n_best=3 is not allowed"),
        ((str(other), "2025-09-30"), "a seq2seq run"),
        ((str(date_run), "--file", str(empty_line)), "line 2 is empty"),
        ((str(tmp_path / "none.h5"), "2025"), "no such run file"),
    ]:
        code, out, err = run_cli(capsys, "translate", *args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and out == "", (args, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_translate_refuses_a_model_saved_in_an_older_shape(date_run, capsys, tmp_path):
    import shutil
    shutil.copy(date_run, tmp_path / date_run.name)
    saved = torch.load(date_run.with_name("d_best.pt"), weights_only=True)
    saved["model"]["dec.0.W_x"] = saved["model"]["dec.0.W_x"][:5]          # a decoder input of another width
    torch.save(saved, tmp_path / "d_best.pt")
    code, out, err = run_cli(capsys, "translate", str(tmp_path / date_run.name), "2025-09-30")
    assert code == 2 and "d_best.pt does not fit the model" in err and len(err.strip().splitlines()) == 1


def reference_beam(model, src, src_len, K, max_steps):
    """One sequence, prefixes rescored from <sos> every step, no batching and no bookkeeping:
    the best (ids, log p) of a beam that stops only when no live prefix can beat the best finished."""
    from dynamics.models.seq2seq import PAD, SOS
    live, finished = [([], 0.0)], []
    for _ in range(max_steps):
        cands = []
        for ids, lp in live:
            memory, initial = model.encode(src, src_len)
            state, tokens = model.start(initial, 1, memory.values), torch.tensor([SOS])
            for i in ids:
                _, state, _, _ = model.step(tokens, state, memory)
                tokens = torch.tensor([i])
            logits, _, _, _ = model.step(tokens, state, memory)
            logp = torch.log_softmax(logits[0], -1)
            cands += [(ids + [tok], lp + logp[tok].item()) for tok in range(len(logp)) if tok not in (PAD, SOS)]
        cands.sort(key=lambda c: -c[1])
        finished += [(ids[:-1], lp) for ids, lp in cands[:K] if ids[-1] == EOS]
        live = [c for c in cands[:2 * K] if c[0][-1] != EOS][:K]
        if finished and max(lp for _, lp in finished) >= live[0][1]:
            break
    else:
        finished += live
    return max(finished, key=lambda h: h[1])


def test_batched_beam_search_equals_a_plain_reference_beam():
    model, task = tiny("gru", "bahdanau", seed=5, H=6, dtype=torch.float64)
    pairs = task.generate(6, np.random.default_rng(4))
    src, src_len = task.encode_source([s for s, _, _ in pairs])
    with torch.no_grad():
        hyps = beam_search(model, src, src_len, 3, 7, norm="none")
        for b, (s, _, _) in enumerate(pairs):
            one, one_len = task.encode_source([s])
            ids, logp = reference_beam(model, one, one_len, 3, 7)
            assert hyps[b][0][0] == ids and abs(hyps[b][0][1] - logp) < 1e-9
