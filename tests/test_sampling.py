import pytest
import torch

from tasks.errors import InputError
from dynamics.sampling import generate, sample_next

V = 12


def _logits(batch=64, seed=0):
    return torch.randn(batch, V, generator=torch.Generator().manual_seed(seed)) * 3


def _draw(logits, n, seed=0, **kw):
    """n draws from one row of logits, as one flat tensor."""
    generator = torch.Generator().manual_seed(seed)
    return sample_next(logits.expand(n, -1), generator=generator, **kw)


def test_sample_next_is_reproducible_by_seed():
    logits = _logits()
    a = sample_next(logits, generator=torch.Generator().manual_seed(1))
    b = sample_next(logits, generator=torch.Generator().manual_seed(1))
    c = sample_next(logits, generator=torch.Generator().manual_seed(2))
    assert a.shape == (64,) and a.dtype == torch.int64
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_top_k_1_and_temperature_0_are_argmax():
    logits = _logits()
    argmax = logits.argmax(dim=-1)
    assert not torch.equal(sample_next(logits, generator=torch.Generator().manual_seed(0)), argmax)
    top1 = sample_next(logits, top_k=1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(top1, argmax)
    assert torch.equal(sample_next(logits, temperature=0), argmax)
    assert torch.equal(sample_next(logits, temperature=1e-30, top_p=0.9), argmax)


def test_top_k_restricts_support_to_the_k_largest():
    logits = torch.tensor([[0.3, 2.0, -1.0, 1.5, 0.0, 1.9, -0.5, 0.1]])
    draws = _draw(logits, 4000, top_k=3)
    assert set(draws.tolist()) == {1, 3, 5}
    assert set(_draw(logits, 4000, top_k=8).tolist()) == set(range(8))  # k = V: all of them


def test_top_p_restricts_support_to_the_nucleus():
    probs = torch.tensor([0.10, 0.50, 0.05, 0.20, 0.15])
    logits = probs.log().unsqueeze(0)
    # By hand: sorted 0.50, 0.20, 0.15, ...; cumulative 0.50, 0.70, 0.85 >= 0.8 -> {1, 3, 4}.
    draws = _draw(logits, 20000, top_p=0.8)
    assert set(draws.tolist()) == {1, 3, 4}
    frequencies = torch.bincount(draws, minlength=5).float() / len(draws)
    expected = torch.tensor([0, 0.50, 0, 0.20, 0.15]) / 0.85  # renormalised on the nucleus
    assert torch.allclose(frequencies, expected, atol=0.02)
    assert set(_draw(logits, 2000, top_p=0.6).tolist()) == {1, 3}  # 0.5 < 0.6 <= 0.7
    assert set(_draw(logits, 2000, top_p=0.01).tolist()) == {1}  # the top token is always kept
    assert set(_draw(logits, 4000, top_p=1.0).tolist()) == set(range(5))


def test_top_k_and_top_p_together():
    probs = torch.tensor([0.10, 0.50, 0.05, 0.20, 0.15])
    # top-k 2 leaves 0.5 / 0.7 and 0.2 / 0.7; top-p 0.6 then keeps only the first
    draws = _draw(probs.log().unsqueeze(0), 2000, top_k=2, top_p=0.6)
    assert set(draws.tolist()) == {1}


@pytest.mark.parametrize("kw, key", [
    ({"temperature": -0.5}, "temperature="), ({"temperature": float("nan")}, "temperature="),
    ({"top_k": 0}, "top_k="), ({"top_k": 2.5}, "top_k="),
    ({"top_p": 0.0}, "top_p="), ({"top_p": 1.5}, "top_p="),
])
def test_bad_arguments(kw, key):
    with pytest.raises(InputError, match=key):
        sample_next(_logits(), **kw)
    with pytest.raises(InputError, match=key):
        generate(lambda ids, state: (_logits(ids.shape[0]), state), [1, 2], 3, **kw)


class Counter:
    """A toy model: the next token is likely (last + 1) mod V; the state counts the tokens seen."""

    def __init__(self):
        self.calls = []

    def __call__(self, ids, state):
        self.calls.append(ids.shape)
        state = (0 if state is None else state) + ids.shape[1]
        logits = torch.nn.functional.one_hot((ids[:, -1] + 1) % V, V).float() * 4
        return logits, state


def test_generate_calls_the_model_with_the_prompt_then_one_token_at_a_time():
    model = Counter()
    out = generate(model, torch.tensor([[3, 4, 5], [7, 8, 9]]), 6, temperature=0)
    assert out.shape == (2, 6) and out.dtype == torch.int64
    assert out.tolist() == [[6, 7, 8, 9, 10, 11], [10, 11, 0, 1, 2, 3]]
    assert model.calls == [(2, 3)] + [(2, 1)] * 5
    assert generate(Counter(), [1, 2], 4, temperature=0).tolist() == [[3, 4, 5, 6]]
    assert generate(Counter(), [1, 2], 0).shape == (1, 0)


def test_generate_is_reproducible_by_seed():
    prompt = torch.zeros(4, 2, dtype=torch.long)
    a = generate(Counter(), prompt, 50, temperature=2.0, seed=5)
    b = generate(Counter(), prompt, 50, temperature=2.0, seed=5)
    c = generate(Counter(), prompt, 50, temperature=2.0, seed=6)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_generate_carries_the_state():
    def step(ids, state):
        state = (state or []) + ids[0].tolist()
        return torch.nn.functional.one_hot(torch.tensor([len(state) % V]), V).float() * 9, state
    out = generate(step, [0, 0, 0], 4, temperature=0)
    assert out.tolist() == [[3, 4, 5, 6]]  # the logits depend on every token seen so far


def test_generate_rejects_an_empty_prompt():
    with pytest.raises(InputError, match="prompt"):
        generate(Counter(), torch.zeros(1, 0, dtype=torch.long), 3)
