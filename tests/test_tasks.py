import numpy as np
import pytest
import torch

import tasks.synthetic as tasks
from tasks.errors import InputError

SIZES = {  # name -> (n_in, n_out, head)
    "torder": (6, 4, "last_softmax"),
    "torder3": (6, 8, "last_softmax"),
    "add": (2, 1, "last_linear"),
    "mul": (2, 1, "last_linear"),
    "mem": (7, 6, "softmax"),
    "perm": (100, 100, "last_softmax"),
}


def rng(seed=0):
    return np.random.default_rng(seed)


def symbols(x):
    """Decode one-hot inputs, checking that every step is exactly one-hot."""
    assert set(np.unique(x)) <= {0.0, 1.0}
    assert (x.sum(-1) == 1).all()
    return x.argmax(-1)


def test_names():
    assert tasks.NAMES == ("torder", "torder3", "add", "mul", "mem", "perm")


@pytest.mark.parametrize("name", list(SIZES))
def test_shapes_and_dtypes(name):
    task = tasks.get(name)
    n_in, n_out, head = SIZES[name]
    assert (task.name, task.n_in, task.n_out, task.head) == (name, n_in, n_out, head)
    x, y = task.generate(7, 40, rng())
    assert x.dtype == np.float32 and x.ndim == 3 and x.shape[1:] == (7, n_in)
    if head == "last_softmax":
        assert x.shape[0] == 40 and y.dtype == np.int64 and y.shape == (7,)
        assert ((0 <= y) & (y < n_out)).all()
    elif head == "last_linear":
        assert 40 <= x.shape[0] < 44 and y.dtype == np.float32 and y.shape == (7, 1)
    else:
        assert x.shape[0] == 60 and y.dtype == np.int64 and y.shape == (60, 7)


@pytest.mark.parametrize("name", list(SIZES))
def test_min_length_is_accepted_and_one_less_is_not(name):
    task = tasks.get(name)
    task.generate(50, task.min_length, rng())  # no randint(0) at the boundary
    with pytest.raises(InputError, match=f"length={task.min_length - 1} .*{task.min_length}"):
        task.generate(5, task.min_length - 1, rng())


@pytest.mark.parametrize("name", ["add", "mul"])
def test_add_mul_length_is_one_draw_per_batch_in_range(name):
    task = tasks.get(name)
    r = rng(3)
    lengths = {task.generate(4, 60, r)[0].shape[0] for _ in range(200)}
    assert lengths == set(range(60, 66))  # [length, length + int(0.1 length)), every value drawn


def test_mem_length_and_options():
    task = tasks.get("mem", n_values=3, n_pos=4)
    assert (task.n_in, task.n_out) == (5, 4)
    x, y = task.generate(2, 9, rng())
    assert x.shape == (9 + 8, 2, 5) and y.shape == (17, 2)


@pytest.mark.parametrize("name, starts", [("torder", (0.1, 0.5)),
                                          ("torder3", (0.1, 0.3, 0.6))])
@pytest.mark.parametrize("L", [10, 57, 200])
def test_temporal_order_positions_and_target(name, starts, L):
    x, y = tasks.get(name).generate(3000, L, rng(L))
    s = symbols(x)
    width = int(0.1 * L)
    marked = s < 2
    assert (marked.sum(0) == len(starts)).all()
    assert ((s[~marked] >= 2) & (s[~marked] <= 5)).all()  # everything else is a distractor
    target = np.zeros(s.shape[1], dtype=np.int64)
    for i, k in enumerate(starts):
        window = slice(int(k * L), int(k * L) + width)
        in_window = marked[window]
        assert (in_window.sum(0) == 1).all()  # exactly one marker in each window
        offset = in_window.argmax(0)
        assert offset.min() == 0 and offset.max() == width - 1  # the whole window is used
        value = s[window][offset, np.arange(s.shape[1])]
        assert set(np.unique(value)) == {0, 1}
        target += value * 2 ** i
    np.testing.assert_array_equal(y, target)
    assert set(np.unique(y)) == set(range(2 ** len(starts)))


@pytest.mark.parametrize("name", ["add", "mul"])
def test_add_mul_markers_and_target(name):
    x, y = tasks.get(name).generate(2000, 100, rng(1))
    l, B = x.shape[:2]
    marks, values = x[..., 0], x[..., 1]
    assert set(np.unique(marks)) == {0.0, 1.0}
    assert (marks.sum(0) == 2).all()
    assert ((0 <= values) & (values < 1)).all() and values.std() > 0.25
    p0 = marks.argmax(0)                        # first marker
    p1 = l - 1 - marks[::-1].argmax(0)          # last marker
    assert p0.min() == 0 and p0.max() == int(0.1 * l) - 1
    assert p1.min() == int(0.1 * l) and p1.max() == int(0.1 * l) + int(0.4 * l) - 1
    a, b = values[p0, np.arange(B)], values[p1, np.arange(B)]
    want = (a + b) / 2 if name == "add" else a * b
    np.testing.assert_allclose(y[:, 0], want, rtol=1e-6)


def test_mem_layout_and_targets():
    n_values, n_pos, length = 4, 6, 11
    x, y = tasks.get("mem", n_values=n_values, n_pos=n_pos).generate(500, length, rng(2))
    s = symbols(x)
    T = length + 2 * n_pos
    blank, go = n_values, n_values + 1
    pattern = s[:n_pos]
    assert set(np.unique(pattern)) == set(range(n_values))
    assert (s[length + n_pos] == go).all()
    rest = np.delete(s[n_pos:], length, axis=0)  # steps n_pos..T-1 except go
    assert rest.shape[0] == T - n_pos - 1 and (rest == blank).all()
    assert (y[:T - n_pos] == blank).all()
    np.testing.assert_array_equal(y[T - n_pos:], pattern)


def test_perm_layout_and_target():
    x, y = tasks.get("perm").generate(1000, 30, rng(4))
    s = symbols(x)
    assert set(np.unique(s[0])) == {0, 1}
    assert set(np.unique(s[1:])) == set(range(2, 100))
    np.testing.assert_array_equal(y, s[0])


@pytest.mark.parametrize("name", list(SIZES))
def test_seed_fixes_the_batch(name):
    task = tasks.get(name)
    x1, y1 = task.generate(16, 50, rng(52))
    x2, y2 = task.generate(16, 50, rng(52))
    x3, y3 = task.generate(16, 50, rng(53))
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert x1.shape != x3.shape or not np.array_equal(x1, x3)
    assert not np.array_equal(y1, y3)


# --- losses and error rates -------------------------------------------------------------------

def numpy_ce(logits, y):
    """Cross-entropy per row, written out: log-sum-exp minus the target logit."""
    m = logits.max(-1, keepdims=True)
    lse = np.log(np.exp(logits - m).sum(-1)) + m[..., 0]
    return lse - np.take_along_axis(logits, y[..., None], -1)[..., 0]


def test_last_softmax_loss_and_error():
    task = tasks.get("torder")
    logits = np.array([[2.0, 0.5, -1.0, 0.0],
                       [0.1, 0.2, 3.0, -0.5],
                       [1.0, 1.5, 0.0, 4.0]])
    y = np.array([0, 1, 3])  # right, wrong, right
    lt = torch.tensor(logits, requires_grad=True)
    loss = task.loss(lt, torch.tensor(y))
    assert loss.dim() == 0
    assert loss.item() == pytest.approx(numpy_ce(logits, y).mean(), rel=1e-12)
    loss.backward()
    assert lt.grad is not None and lt.grad.abs().sum() > 0
    assert task.error(lt, torch.tensor(y)).item() == pytest.approx(1 / 3)
    assert task.error(lt, torch.tensor([0, 2, 3])).item() == 0.0  # all correct
    assert task.error(lt, torch.tensor([1, 0, 0])).item() == 1.0  # all wrong
    uniform = torch.zeros(5, 4)
    assert task.loss(uniform, torch.zeros(5, dtype=torch.long)).item() == pytest.approx(np.log(4))


def test_softmax_loss_and_mem_error():
    task = tasks.get("mem", n_values=2, n_pos=1)  # 3 classes
    T, B = 4, 3
    y = np.array([[2, 2, 2], [2, 2, 2], [2, 2, 2], [0, 1, 0]])
    logits = np.full((T, B, 3), -2.0)
    np.put_along_axis(logits, y[..., None], 2.0, -1)  # all correct
    logits[0, 0, 2] = 1.5                              # still correct, but a different loss
    lt = torch.tensor(logits, requires_grad=True)
    loss = task.loss(lt, torch.tensor(y))
    assert loss.item() == pytest.approx(numpy_ce(logits, y).mean(), rel=1e-12)  # over all T*B
    loss.backward()
    assert lt.grad.shape == (T, B, 3)
    assert task.error(lt, torch.tensor(y)).item() == 0.0
    one_wrong = logits.copy()
    one_wrong[1, 2, 0] = 5.0  # sequence 2 wrong at a single step
    assert task.error(torch.tensor(one_wrong), torch.tensor(y)).item() == pytest.approx(1 / 3)
    assert task.error(-lt.detach(), torch.tensor(y)).item() == 1.0  # every sequence wrong


def test_last_linear_loss_and_error():
    task = tasks.get("add")
    out = np.array([[0.5], [0.3], [0.9], [0.0]])
    y = np.array([[0.5], [0.49], [0.69], [0.0]])  # errors 0, 0.19^2, 0.21^2, 0
    ot = torch.tensor(out, requires_grad=True)
    loss = task.loss(ot, torch.tensor(y))
    assert loss.item() == pytest.approx(((out - y) ** 2).sum(-1).mean(), rel=1e-12)
    loss.backward()
    assert ot.grad is not None
    assert task.error(ot, torch.tensor(y)).item() == pytest.approx(0.25)  # only 0.0441 > 0.04
    assert task.error(torch.tensor(y), torch.tensor(y)).item() == 0.0
    assert task.error(torch.tensor(y + 1.0), torch.tensor(y)).item() == 1.0


def test_last_linear_sums_over_outputs():
    class TwoOutputs(tasks.Task):
        name, n_in, n_out, head = "two", 1, 2, "last_linear"

    task = TwoOutputs()
    out = torch.tensor([[0.1, 0.1], [0.15, 0.15]], dtype=torch.float64)
    y = torch.zeros(2, 2, dtype=torch.float64)  # summed: 0.02 (right) and 0.045 (wrong)
    assert task.loss(out, y).item() == pytest.approx((0.02 + 0.045) / 2)
    assert task.error(out, y).item() == pytest.approx(0.5)

def test_loss_refuses_mismatched_shapes():
    with pytest.raises(ValueError):  # (B, 1) against (B,) would broadcast to (B, B)
        tasks.get("add").loss(torch.zeros(5, 1), torch.zeros(5))
    with pytest.raises(ValueError):
        tasks.get("torder").loss(torch.zeros(5, 8), torch.zeros(5, dtype=torch.long))


# --- bad input ----------------------------------------------------------------------------------

def one_line(excinfo):
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_unknown_task():
    with pytest.raises(InputError) as e:
        tasks.get("tordr")
    message = one_line(e)
    assert "task='tordr'" in message
    assert all(name in message for name in tasks.NAMES)


@pytest.mark.parametrize("name, option", [("torder", "n_pos"), ("mem", "n_value"),
                                          ("perm", "n_values")])
def test_unknown_option(name, option):
    with pytest.raises(InputError) as e:
        tasks.get(name, **{option: 3})
    assert option in one_line(e) and name in one_line(e)


@pytest.mark.parametrize("option, value", [("n_values", 0), ("n_pos", -1), ("n_pos", 2.5),
                                           ("n_values", True)])
def test_bad_mem_option(option, value):
    with pytest.raises(InputError) as e:
        tasks.get("mem", **{option: value})
    assert f"{option}=" in one_line(e)


@pytest.mark.parametrize("name, length, minimum", [("torder", 5, 10), ("torder3", 9, 10),
                                                   ("add", 9, 10), ("mul", 0, 10),
                                                   ("mem", 0, 1), ("perm", 0, 1)])
def test_length_too_short(name, length, minimum):
    with pytest.raises(InputError) as e:
        tasks.get(name).generate(4, length, rng())
    assert one_line(e) == f"length={length} is too short for task {name}: need at least {minimum}"


@pytest.mark.parametrize("batch", [0, -3, 2.0])
def test_bad_batch(batch):
    with pytest.raises(InputError) as e:
        tasks.get("torder").generate(batch, 50, rng())
    assert "batch=" in one_line(e)


def test_non_integer_length():
    with pytest.raises(InputError) as e:
        tasks.get("torder").generate(4, 50.0, rng())
    assert "length=" in one_line(e)


def test_the_input_blind_predictor_counted_directly():
    """constant_baseline against the same batch scored by hand: the class frequencies (torder,
    mem) or the mean target (mul) predicted for every sequence."""
    for name in ("torder", "mem", "mul"):
        task = tasks.get(name)
        loss, error = task.constant_baseline(4000, 60, np.random.default_rng(5))
        _, y = task.generate(4000, 60, np.random.default_rng(5))
        if task.head == "last_linear":
            sq = ((y - y.mean(0)) ** 2).sum(-1)
            assert loss == pytest.approx(sq.mean(), rel=1e-5)
            assert error == pytest.approx(np.mean(sq > 0.04), abs=1e-6)
        elif task.head == "last_softmax":
            p = np.bincount(y, minlength=task.n_out) / len(y)
            assert loss == pytest.approx(-np.mean(np.log(p[y])), rel=1e-6)
            assert error == pytest.approx(1 - p.max(), abs=1e-6)
        else:                                                  # per step, over the batch
            counts = np.stack([np.bincount(row, minlength=task.n_out) for row in y])
            p = counts / counts.sum(1, keepdims=True)
            picked = np.take_along_axis(p, y, axis=1)
            assert loss == pytest.approx(-np.mean(np.log(picked)), rel=1e-6)
            right = (y == p.argmax(1)[:, None]).all(0)
            assert error == pytest.approx(1 - right.mean(), abs=1e-6)
    assert tasks.get("torder").constant_baseline(20000, 100, np.random.default_rng(0))[1] == pytest.approx(0.75, abs=0.01)
