"""The Transformer encoder–decoder (dynamics/models/transformer_seq2seq.py) on the seq2seq tasks."""
import math

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dynamics import config as cfg
from dynamics.models.seq2seq import EOS, PAD, beam_search, greedy
from dynamics.sources.seq2seq import model_of
from dynamics.train import train
from tasks.seq2seq import make
from test_seq2seq import PAIRS, batch, reference_beam, run_cli

F64 = torch.float64


def tiny(n_layers=2, positions="learned", dropout=0.0, seed=0, dtype="float64", task=None):
    c = cfg.make(dict(task="reverse", cell="transformer", d_model=16, n_heads=4, n_layers=n_layers, alphabet=4,
                      min_length=1, max_length=6, positions=positions, dropout=dropout, seed=seed, dtype=dtype))
    task = task or make("reverse", alphabet=4, min_length=1, max_length=6)
    return model_of(c, task), task


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_step_by_step_decoding_with_the_key_value_cache_equals_the_whole_pass(positions):
    model, task = tiny(positions=positions)
    model.eval()
    src, src_len, tgt_in, _, tgt_len = batch(task, PAIRS)
    whole = model(src, src_len, tgt_in, tgt_len)
    memory, initial = model.encode(src, src_len)
    state = model.start(initial, len(PAIRS), memory.values)
    logits, weights = [], []
    for t in range(tgt_in.shape[0]):
        step_logits, state, w, _ = model.step(tgt_in[t], state, memory)
        logits.append(step_logits)
        weights.append(w)
    assert torch.allclose(torch.stack(logits), whole.logits, atol=1e-12)
    assert torch.allclose(torch.stack(weights), whole.attention, atol=1e-12)
    assert state[0][0][0].shape == (len(PAIRS), 4, tgt_in.shape[0], 4)     # (B, heads, steps, head size)


def test_causal_mask_later_target_tokens_do_not_change_earlier_logits():
    model, task = tiny()
    model.eval()
    src, src_len, tgt_in, _, tgt_len = batch(task, PAIRS)
    t = 2
    changed = tgt_in.clone()
    changed[t + 1:] = (tgt_in[t + 1:] + 1) % len(task.target_vocab)
    a = model(src, src_len, tgt_in, tgt_len).logits
    b = model(src, src_len, changed, tgt_len).logits
    assert torch.equal(a[:t + 1], b[:t + 1])
    assert not torch.allclose(a[t + 1:], b[t + 1:])        # later steps do see the change


def test_a_sequence_alone_and_inside_a_padded_batch_give_the_same_outputs():
    model, task = tiny(n_layers=2)
    model.eval()
    src, src_len, tgt_in, _, tgt_len = batch(task, PAIRS)
    out = model(src, src_len, tgt_in, tgt_len)
    ids, logp, _ = greedy(model, src, src_len, 8)
    for b, (s, t) in enumerate(PAIRS):
        one = batch(task, [(s, t)])
        alone = model(one[0], one[1], one[2], one[4])
        n = len(t) + 1
        assert torch.allclose(alone.logits[:n, 0], out.logits[:n, b], atol=1e-12)
        # cross-attention: weights sum to 1 over the source, 0 on its padding
        assert torch.allclose(out.attention[:n, b, :len(s)].sum(-1), torch.ones(n, dtype=F64))
        assert (out.attention[:, b, len(s):] == 0).all()
        ids1, logp1, _ = greedy(model, one[0], one[1], 8)
        assert ids1[0].tolist() == ids[b, :ids1.shape[1]].tolist() and abs(logp1.item() - logp[b].item()) < 1e-12


def test_hooked_grad_equals_autograd_on_retained_tensors():
    torch.manual_seed(0)
    model, task = tiny(n_layers=2, dropout=0.1)
    src, src_len, tgt_in, tgt_out, tgt_len = batch(task, PAIRS)
    kept = []        # each block's output, with its graph (a forward hook, outside the model's own hooks)
    for block in [*model.enc_blocks, *model.dec_blocks]:
        block.register_forward_hook(lambda m, i, out: kept.append(out[0] if isinstance(out, tuple) else out))
    logits = model(src, src_len, tgt_in, tgt_len).logits
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1), ignore_index=PAD)
    expected = torch.autograd.grad(loss, kept, retain_graph=True)                     # (B, T, d) each
    loss.backward()
    parts = model.parts()
    assert [p.name for p in parts] == ["enc0", "enc1", "dec0", "dec1"]
    for part, e, h in zip(parts, expected, kept):
        assert torch.allclose(part.grad, e.transpose(0, 1), atol=1e-14)
        assert torch.equal(part.hidden, h.detach().transpose(0, 1)) and part.cell == "transformer"
    for part, lengths in zip(parts, [src_len] * 2 + [tgt_len] * 2):
        assert torch.equal(part.lengths, lengths)
        g = part.grad.norm(dim=2)                                          # (T, B)
        valid = torch.arange(g.shape[0])[:, None] < lengths[None, :]
        assert (g[~valid] == 0).all() and (g[valid] > 0).all()            # padding gets no gradient
    fresh, _ = tiny()
    assert all(p.hidden is None and p.grad is None for p in fresh.parts())


def test_check_values_against_direct_computation():
    torch.manual_seed(0)
    model, task = tiny(n_layers=2)
    src, src_len, tgt_in, tgt_out, tgt_len = batch(task, PAIRS)
    logits = model(src, src_len, tgt_in, tgt_len).logits
    F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt_out.reshape(-1), ignore_index=PAD).backward()
    v = model.check_values(None)
    # encoder block 0's attention recomputed by hand, entropy over each sequence's valid rows
    x = model.src_embed(src.t()) + model.src_pos[:src.shape[0]]
    block = model.enc_blocks[0]
    q, k, _ = block.attn.qkv(block.ln1(x)).split(16, dim=2)
    B, T = x.shape[:2]
    q, k = (t.view(B, T, 4, 4).transpose(1, 2) for t in (q, k))
    scores = (q @ k.transpose(-2, -1) / 2.0).masked_fill((torch.arange(T)[None] >= src_len[:, None])[:, None, None], -math.inf)
    p = scores.softmax(-1)
    rows = -(p * torch.log(p.clamp_min(1e-300))).sum(-1)                   # (B, heads, T)
    by_head = torch.stack([torch.cat([rows[b, h, :n] for b, n in enumerate(src_len.tolist())]).mean()
                           for h in range(4)])
    assert np.allclose(v["enc_attn_entropy"][0], by_head.detach().numpy())
    bound = np.mean([math.log(n) for n in src_len.tolist() for _ in range(n)])
    assert (v["enc_attn_entropy"] <= bound + 1e-9).all() and (v["cross_attn_entropy"] <= bound + 1e-9).all()
    steps = [t + 1 for n in tgt_len.tolist() for t in range(n)]
    assert (v["dec_attn_entropy"] <= np.mean(np.log(steps)) + 1e-9).all()
    blocks = [*model.enc_blocks, *model.dec_blocks]
    norms = [torch.cat([p.grad.flatten() for p in b.parameters()]).norm().item() for b in blocks]
    assert np.allclose(v["block_grad_norm"], norms) and v["dec_attn_entropy"].shape == (2, 4)


def test_scheduled_sampling_feeds_the_teacher_forced_argmax_of_the_step_before():
    model, task = tiny()
    model.eval()
    src, src_len, tgt_in, _, tgt_len = batch(task, PAIRS)
    teacher = torch.rand(tgt_in.shape, generator=torch.Generator().manual_seed(1)) < 0.5
    teacher[0] = True
    mixed = model(src, src_len, tgt_in, tgt_len, teacher).logits
    own = model(src, src_len, tgt_in, tgt_len).logits.argmax(-1)
    inputs = tgt_in.clone()
    inputs[1:] = torch.where(teacher[1:], tgt_in[1:], own[:-1])
    assert not torch.equal(inputs, tgt_in)
    assert torch.equal(mixed, model(src, src_len, inputs, tgt_len).logits)
    assert torch.equal(model(src, src_len, tgt_in, tgt_len, torch.ones_like(teacher)).logits,
                       model(src, src_len, tgt_in, tgt_len).logits)


def test_beam_size_one_equals_greedy_and_the_batched_beam_equals_a_plain_one():
    model, task = tiny(seed=4, dtype="float32")
    model.eval()
    pairs = task.generate(30, np.random.default_rng(2))
    src, src_len = task.encode_source([s for s, _, _ in pairs])
    ids, logp, _ = greedy(model, src, src_len, 9)
    for b, [(beam_ids, beam_logp, _)] in enumerate(beam_search(model, src, src_len, 1, 9, norm="none")):
        row = ids[b].tolist()
        assert beam_ids == (row[:row.index(EOS)] if EOS in row else row)
        assert abs(beam_logp - logp[b].item()) < 1e-4
    model, task = tiny(seed=5)
    model.eval()
    pairs = task.generate(5, np.random.default_rng(4))
    src, src_len = task.encode_source([s for s, _, _ in pairs])
    with torch.no_grad():              # the caches reordered by beam index, against prefixes decoded afresh
        hyps = beam_search(model, src, src_len, 3, 7, norm="none")
        for b, (s, _, _) in enumerate(pairs):
            one, one_len = task.encode_source([s])
            ids, logp = reference_beam(model, one, one_len, 3, 7)
            assert hyps[b][0][0] == ids and abs(hyps[b][0][1] - logp) < 1e-9


# -- the trainer, the run file, the figures, translate ----------------------------------------------
def config(tmp_path, **changes):
    values = dict(task="reverse", name="t", out_dir=str(tmp_path), cell="transformer", d_model=16, n_heads=2,
                  n_layers=2, alphabet=5, min_length=2, max_length=6, batch_size=8, max_iters=20, check_freq=10,
                  eval_batch_size=20, chunk_batch_size=20, optimizer="adam", lr=0.01, beam_size=2, seed=3,
                  dropout=0.1, tf_schedule="linear", tf_k=15.0)
    values.update(changes)
    return cfg.make(values)


def test_training_resumes_bit_identically_and_records_the_diagnostics(tmp_path, capsys):
    whole = train(config(tmp_path / "a"), progress=False)
    train(config(tmp_path / "b", max_iters=10), progress=False)
    resumed = train(config(tmp_path / "b"), resume=True, progress=False)
    with h5py.File(whole) as f, h5py.File(resumed) as r:
        names = []
        f.visititems(lambda k, v: names.append(k) if isinstance(v, h5py.Dataset) else None)
        for name in names:
            a, b = np.asarray(f[name][()]), np.asarray(r[name][()])
            if a.dtype.kind in "OSU":                                  # strings (outputs, examples)
                assert a.shape == b.shape and list(a.flat) == list(b.flat), name
            elif name not in ("iter/step_time", "check/wall_time", "check/cpu_time"):
                assert np.array_equal(a, b, equal_nan=True), name
        assert f["check/enc_attn_entropy"].shape == (2, 2, 2) and f["check/block_grad_norm"].shape == (2, 4)
        assert f["check/tf_used"][1, 5:].max() == 0.0                  # free-running from update 16 on
        assert set(f["check/layers"]) == {"enc0", "enc1", "dec0"} and f["check/grad_time"].shape[0] == 2
        maps, outputs = f["check/attention"][-1], [o.decode() for o in f["check/attention_output"][-1]]
        sources = [s.decode() for s in f["static/example_source"][:]]
        for k, src in enumerate(sources):
            steps = min(len(outputs[k]) + 1, maps.shape[1])
            assert np.allclose(maps[k, :steps, :len(src)].sum(-1), 1) and (maps[k, :, len(src):] == 0).all()
    # <name>_attention.png is the cross-attention heat maps, as for the recurrent runs; the
    # entropy and block-gradient panels go to <name>_attention_entropy.png
    from analysis.panels import seq2seq as seq2seq_figures
    from analysis.figures import FIGURE_FUNCTIONS
    from analysis.read import load
    snap = load(whole)
    assert FIGURE_FUNCTIONS["attention"](snap) is None
    heat_maps = seq2seq_figures.figure_attention(snap)
    assert "cross-attention" in heat_maps._suptitle.get_text()
    entropy = seq2seq_figures.figure_attention_entropy(snap)
    titles = [ax.get_title() for ax in entropy.findobj(lambda o: hasattr(o, "get_title") and hasattr(o, "plot"))]
    assert any(t.startswith("Cross-attention entropy") for t in titles) and "Gradient norm per block" in titles
    # translate reads the best model; a source longer than the positions is one line, exit 2
    code, out, err = run_cli(capsys, "translate", str(whole), "abcde", "--beam", "3", "--n-best", "2")
    assert code == 0 and out.splitlines()[0] == "abcde" and len(out.splitlines()) == 3, err
    code, out, err = run_cli(capsys, "translate", str(whole), "abcdeabcde")
    assert code == 2 and "at most 6" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("changes, message", [
    (dict(attention="bahdanau"), "attention='bahdanau' is not allowed: not set"),
    (dict(attention="luong_general"), "attention='luong_general' is not allowed: not set"),
    (dict(n_layers=7), "n_layers=7 is not allowed"),
    (dict(n_hidden=32), "n_hidden=32 is not allowed: not set"),
    (dict(bidirectional=True), "bidirectional=True is not allowed: not set"),
])
def test_recurrent_keys_are_refused(tmp_path, changes, message):
    with pytest.raises(cfg.InputError, match=message):
        config(tmp_path, **changes)
