"""Sequence classification: masked variable-length batches against every sequence run alone
with a naive step-by-step autograd model (float64, 1e-10), pooling gradients, metrics against a
direct count, determinism, resume and bad input."""
import h5py
import numpy as np
import pytest
import torch

from analysis.read import load
from dynamics import config as cfg
from dynamics.models.classifier import Batch, build_classifier
from dynamics.models.pooling import POOLINGS, pool
from dynamics.sources.classify import Classify, confusion_matrix, scores
from dynamics.train import train

F64 = torch.float64
σ = torch.sigmoid


def naive_layer(w, cell, xs):
    """One direction over one sequence (a list of (n_in,) vectors), one step at a time."""
    h = xs[0].new_zeros(w[[k for k in w if k.startswith("b_")][0]].shape[0])
    c, hs = torch.zeros_like(h), []
    for x in xs:
        if cell == "rnn":
            h = torch.tanh(x @ w["W_xh"] + h @ w["W_hh"] + w["b_h"])
        elif cell == "gru":
            z = σ(x @ w["W_xz"] + h @ w["W_hz"] + w["b_z"])
            r = σ(x @ w["W_xr"] + h @ w["W_hr"] + w["b_r"])
            h = (1 - z) * h + z * torch.tanh(x @ w["W_xh"] + (r * h) @ w["W_hh"] + w["b_h"])
        else:
            i, f, o = (σ(x @ w[f"W_x{g}"] + h @ w[f"W_h{g}"] + w[f"b_{g}"]) for g in "ifo")
            c = f * c + i * torch.tanh(x @ w["W_xc"] + h @ w["W_hc"] + w["b_c"])
            h = o * torch.tanh(c)
        h.retain_grad()
        hs.append(h)
    return hs


def naive(model, ids, weights):
    """Logits of one unpadded sequence, and its per-part hidden lists in original time order."""
    inp = [weights["E"][i] for i in ids]
    parts, H = {}, model.n_hidden
    for l in range(len(model.layers) // len(model.directions)):
        outs = []
        for d in model.directions:
            name = f"layer{l}_{d}"
            w = weights[name]
            hs = naive_layer(w, model.cell, inp) if d == "fwd" else naive_layer(w, model.cell, inp[::-1])[::-1]
            parts[name] = hs
            outs.append(hs)
        inp = [torch.cat(step) for step in zip(*outs)]
    top = torch.stack(inp)
    if model.pooling == "last":
        pooled = torch.cat([top[-1, :H], top[0, H:]]) if len(model.directions) == 2 else top[-1]
    elif model.pooling == "mean":
        pooled = top.sum(0) / len(ids)
    elif model.pooling == "max":
        pooled = top.max(0).values
    else:
        e = torch.exp(top @ weights["q"])
        pooled = (e / e.sum()) @ top
    return torch.tanh(pooled @ weights["W_1"] + weights["b_1"]) @ weights["W_hy"] + weights["b_y"], parts


def leaf(t):
    return t.detach().clone().requires_grad_()


def naive_weights(model):
    """The model's parameters as fresh leaves, per part in the naive model's names."""
    out = {name: {k: leaf(v) for k, v in layer.weights().items()} for name, layer in zip(model.names, model.layers)}
    out.update(E=leaf(model.embedding.weight), W_1=leaf(model.W_1), b_1=leaf(model.b_1), W_hy=leaf(model.W_hy),
               b_y=leaf(model.b_y))
    if model.query is not None:
        out["q"] = leaf(model.query) * 1.0
        out["q"].retain_grad()
    return out


LENGTHS = [7, 3, 5, 1]


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padded_batch_equals_each_sequence_alone(cell, pooling, bidirectional):
    """Logits, every parameter gradient and ∂L/∂h_t of every layer and direction, from one padded
    batch, equal the naive model run on each sequence alone; ∂L/∂h_t is exactly 0 at padding."""
    torch.manual_seed(1)
    model = build_classifier(cell, 11, 4, 5, 3, n_layers=2, bidirectional=bidirectional, pooling=pooling,
                             seed=0, dtype=F64)
    if model.query is not None:
        with torch.no_grad():
            model.query.normal_()
    T, lengths = max(LENGTHS), torch.tensor(LENGTHS)
    ids = torch.randint(0, 11, (T, len(LENGTHS)))           # padding holds random tokens: they must not matter
    y = torch.tensor([0, 2, 1, 2])
    out = model(Batch(ids, lengths))
    loss = torch.nn.functional.cross_entropy(out.logits, y, reduction="sum")
    loss.backward()

    weights = naive_weights(model)
    total, alone = 0.0, []
    for b, n in enumerate(LENGTHS):
        logits, parts = naive(model, ids[:n, b].tolist(), weights)
        assert torch.allclose(logits, out.logits[b], rtol=0, atol=1e-10)
        total = total + torch.nn.functional.cross_entropy(logits[None], y[b:b + 1], reduction="sum")
        alone.append(parts)
    total.backward()

    for name, layer in zip(model.names, model.layers):
        fused = {"W_x": layer.W_x.grad, "W_h": layer.W_h.grad, "b": layer.b.grad}
        naive_grad = {p: torch.cat([weights[name][k].grad for k in layer.weights() if k.startswith(p)], dim=-1)
                      for p in ("W_x", "W_h")}
        naive_grad["b"] = torch.cat([weights[name][k].grad for k in layer.weights() if k.startswith("b_")])
        for p in fused:
            assert torch.allclose(fused[p], naive_grad[p], rtol=0, atol=1e-10), (name, p)
    for k, p in (("E", model.embedding.weight), ("W_1", model.W_1), ("b_1", model.b_1), ("W_hy", model.W_hy),
                 ("b_y", model.b_y)) + ((("q", model.query),) if model.query is not None else ()):
        assert torch.allclose(p.grad, weights[k].grad, rtol=0, atol=1e-10), k

    parts = {p.name: p for p in model.parts()}
    assert list(parts)[-1] == "layer1_fwd" and len(parts) == 2 * len(model.directions)
    for name, part in parts.items():
        assert part.align == "end" and torch.equal(part.lengths, lengths)
        for b, n in enumerate(LENGTHS):
            hs = alone[b][name]
            assert torch.allclose(part.hidden[:n, b], torch.stack(hs).detach(), rtol=0, atol=1e-10), name
            assert torch.allclose(part.grad[:n, b], torch.stack([h.grad for h in hs]), rtol=0, atol=1e-10), name
            assert (part.grad[n:, b] == 0).all(), name


@pytest.mark.parametrize("kind", POOLINGS)
def test_pooling_gradcheck_and_padding(kind):
    g = torch.Generator().manual_seed(0)
    T, B, H = 5, 3, 4
    hidden = torch.randn(T, B, H, generator=g, dtype=F64, requires_grad=True)
    query = torch.randn(H, generator=g, dtype=F64, requires_grad=True)
    lengths = torch.tensor([5, 2, 4])
    assert torch.autograd.gradcheck(lambda h, q: pool(h, lengths, kind, q)[0], (hidden, query))
    pooled, weights = pool(hidden, lengths, kind, query)
    (grad,) = torch.autograd.grad(pooled.sum(), hidden)
    for b, n in enumerate(lengths.tolist()):
        assert (grad[n:, b] == 0).all()
        alone, _ = pool(hidden[:n, b:b + 1], lengths[b:b + 1], kind, query)
        assert torch.allclose(alone[0], pooled[b], rtol=0, atol=1e-12)
    if kind == "attention":
        assert torch.allclose(weights.sum(0), torch.ones(B, dtype=F64)) and (weights[4:, 1] == 0).all()
    else:
        assert weights is None


def test_confusion_and_scores_against_a_direct_count():
    rng = np.random.default_rng(0)
    truth, guess = rng.integers(3, size=200), rng.integers(3, size=200)
    C = confusion_matrix(truth, guess, 3)
    for i in range(3):
        for j in range(3):
            assert C[i, j] == sum(1 for t, p in zip(truth, guess) if t == i and p == j)
    accuracy, macro_f1, recall = scores(C)
    assert accuracy == pytest.approx(100 * np.mean(truth == guess))
    f1 = []
    for k in range(3):
        tp = np.sum((truth == k) & (guess == k))
        precision, rec = tp / np.sum(guess == k), tp / np.sum(truth == k)
        assert recall[k] == pytest.approx(100 * rec)
        f1.append(2 * precision * rec / (precision + rec))
    assert macro_f1 == pytest.approx(100 * np.mean(f1))


TINY = dict(task="names", n_hidden=8, batch_size=8, eval_batch_size=60, chunk_batch_size=25, check_freq=5,
            max_iters=10, cell="gru", optimizer="adam", lr=0.01)


def make(tmp_path, **kw):
    return cfg.make({**TINY, "out_dir": str(tmp_path), **kw})


def test_recorded_confusion_equals_a_direct_count(tmp_path):
    c = make(tmp_path, name="c", pooling="attention", bidirectional=True, class_balance=[0.4, 0.3, 0.15, 0.1, 0.05])
    snap = load(train(c, progress=False))
    assert snap.family == "classify" and snap.arrays["confusion"].shape == (2, 5, 5)
    assert list(snap.static["classes"]) == ["Amber", "Birch", "Cedar", "Dune", "Ember"]
    assert set(snap.part_names.values()) == {"layer0_fwd", "layer0_bwd"}
    # the final weights, each validation example alone, counted by hand
    source = Classify(c, torch.device("cpu"), torch.float32)
    model = source.build_model()
    with h5py.File(c.run_path) as f:
        final = {k: torch.from_numpy(v[()]) for k, v in f["final/weights"].items()}
    with torch.no_grad():
        for name, layer in zip(model.names, model.layers):
            suffix = "" if name == model.main else f"_{name}"
            for k, v in layer.weights().items():
                v.copy_(final[k + suffix])
        for k in ("W_1", "b_1", "W_hy", "b_y"):
            getattr(model, k).copy_(final[k])
        model.embedding.weight.copy_(final["E"])
        model.query.copy_(final["q"])
    model.eval()
    counts = np.zeros((5, 5), dtype=int)
    with torch.no_grad():
        for x, y in source.valid:
            for b in range(len(y)):
                n = int(x.lengths[b])
                logits = model(Batch(x.ids[:n, b:b + 1], x.lengths[b:b + 1])).logits
                counts[int(y[b]), int(logits.argmax())] += 1
    assert (snap.arrays["confusion"][-1] == counts).all() and counts.sum() == 60
    assert snap.check["accuracy"][-1] == pytest.approx(100 * np.trace(counts) / 60)
    assert snap.check["valid_error"][-1] == pytest.approx(100 - snap.check["accuracy"][-1])
    att = snap.arrays["attention"][-1]
    tokens = snap.static["example_tokens"]
    assert att.shape == tokens.shape and np.allclose(np.nansum(att, axis=1), 1)
    assert (np.isnan(att) == (tokens == "")).all()


def test_determinism_and_resume(tmp_path):
    kw = dict(task="sentiment", min_length=6, max_length=12, distance=2, pooling="mean", bidirectional=True,
              max_iters=15, cell="lstm")
    full = train(make(tmp_path / "full", name="r", **kw), progress=False)
    again = train(make(tmp_path / "again", name="r", **kw), progress=False)

    def stop(run, row):
        if run.checks == 2:
            raise KeyboardInterrupt
    c = make(tmp_path / "part", name="r", **kw)
    path = train(c, progress=False, after_check=stop)
    train(c, resume=True, progress=False)

    def read(p):
        with h5py.File(p) as f:
            out = {}
            f.visititems(lambda k, v: out.__setitem__(k, v[()]) if isinstance(v, h5py.Dataset) else None)
            return f.attrs["status"], out
    status, reference = read(full)
    assert status == "finished" and "check/layers/layer0_bwd/grad_time" in reference
    for other in (again, path):
        status, data = read(other)
        assert status == "finished" and set(data) == set(reference)
        for k in reference:
            if k not in ("iter/step_time", "check/wall_time", "check/cpu_time"):
                floats = np.asarray(reference[k]).dtype.kind == "f"
                assert np.array_equal(data[k], reference[k], equal_nan=floats), k


BAD = [
    (["--task", "names", "--pooling", "median"], "pooling"),
    (["--task", "text", "--set", "bidirectional=true"], "bidirectional"),
    (["--task", "names", "--n-classes", "1"], "n_classes"),
    (["--task", "sentiment", "--n-classes", "3"], "n_classes"),
    (["--task", "names", "--set", "class_balance=0.5,0.5"], "class_balance"),
    (["--task", "names", "--set", "class_balance=0.5,0.5,0.2,-0.1,-0.1"], "class_balance"),
    (["--task", "names", "--set", "class_balance=0.4,0.3,0.2,0.1,0.1"], "class_balance"),
    (["--task", "names", "--set", "class_balance=many"], "class_balance"),
    (["--task", "sentiment", "--min-length", "10", "--max-length", "20", "--distance", "18"], "distance"),
    (["--task", "names", "--truncate", "-2"], "truncate"),
    (["--task", "names", "--class-weighting", "inverse"], "class_weighting"),
]


@pytest.mark.parametrize("args,key", BAD)
def test_bad_input_one_line_exit_2_no_file(refused, args, key):
    err = refused(*args)
    assert err.startswith(f"error: {key}=") and "not allowed" in err


def test_figures_compare_and_report_of_classification_runs(tmp_path):
    """`plot` draws the confusion, recall and attention panels with the class names and the
    example tokens; g_t axes say they count from the last token; the report table shows
    accuracy and macro-F1."""
    from analysis import compare, figures, report
    a = load(train(make(tmp_path, name="a", pooling="attention", max_iters=5), progress=False))
    b = load(train(make(tmp_path, name="b", pooling="last", max_iters=5), progress=False))
    assert {"confusion", "recall", "attention"} <= {k for row in figures.dashboard_layout(a) for k in row}
    assert "attention" not in {k for row in figures.dashboard_layout(b) for k in row}
    fig = figures.FIGURE_FUNCTIONS["classification"](a)
    texts = {t.get_text() for ax in fig.axes for t in ax.texts + ax.get_xticklabels() + ax.get_yticklabels()}
    assert {"Amber", "Ember"} <= texts and set(a.static["example_tokens"][0]) - {""} <= texts
    assert str(int(a.arrays["confusion"][-1][0, 0])) in texts
    fig = figures.FIGURE_FUNCTIONS["grad_time"](a)
    assert fig.axes[0].get_xlabel().startswith("steps before each sequence's last token")
    fig = compare.figure_compare([a, b])
    assert any(ax.get_xlabel().startswith("steps before") for ax in fig.axes)
    table = report.display_table(report.summary_table([a, b]))
    assert "accuracy (%)" in table and "macro-F1 (%)" in table
    assert table["accuracy (%)"].tolist()[0] == report.fmt_num(a.check["accuracy"][-1])
    # g_t falling by 10x per step away from the last token shrinks going back in time
    from analysis.verdicts import decay_rate
    a.layers[0].grad_time = np.array([[1.0, 0.1, 0.01, 0.001]])
    assert decay_rate(a).text.startswith("g_t shrinks ×0.1 per step back in time")
    a.attrs = {k: v for k, v in a.attrs.items() if k != "grad_time_align"}   # the same row from the start
    assert decay_rate(a).text.startswith("g_t grows ×10 per step back in time")


def test_truncate_keeps_the_last_tokens():
    from tasks.sentiment import Sentiment
    c = cfg.make({**TINY, "task": "sentiment", "min_length": 8, "max_length": 12, "distance": 1, "truncate": 4})
    source = Classify(c, torch.device("cpu"), torch.float32)
    full = Sentiment(8, 12, 1).generate(c.eval_batch_size, np.random.default_rng([c.seed, 1]))
    ids = torch.cat([x.ids for x, _ in source.valid], dim=1)
    lengths = torch.cat([x.lengths for x, _ in source.valid])
    assert (lengths == 4).all()
    for b, tokens in enumerate(full.tokens):
        assert ids[:, b].tolist() == tokens[-4:].tolist()
    assert torch.equal(torch.cat([y for _, y in source.valid]), torch.from_numpy(full.labels))


def test_balanced_weighting_is_inverse_class_frequency():
    p = [0.4, 0.3, 0.15, 0.1, 0.05]
    c = make("unused", class_balance=p, class_weighting="balanced")
    source = Classify(c, torch.device("cpu"), torch.float64)
    logits = torch.randn(7, 5, dtype=F64)
    y = torch.tensor([0, 1, 4, 4, 2, 3, 0])
    w = [1 / (5 * p[k]) for k in y.tolist()]
    ce = [-torch.log_softmax(logits[i], 0)[y[i]].item() for i in range(7)]
    assert source.loss(logits, y).item() == pytest.approx(np.dot(w, ce) / np.sum(w), rel=1e-12)
    plain = Classify(make("unused", class_balance=p), torch.device("cpu"), torch.float64)
    assert plain.loss(logits, y).item() == pytest.approx(np.mean(ce), rel=1e-12)
