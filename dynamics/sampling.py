"""Sampling from a model's logits: temperature, top-k, top-p (nucleus), and a generation loop."""

import math
from numbers import Integral, Real

import torch

from tasks.errors import InputError, bad_value


def _check(temperature, top_k, top_p):
    if not (isinstance(temperature, Real) and 0 <= temperature < math.inf):
        raise bad_value("temperature", temperature, "a finite number >= 0 (0 is greedy)")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, Integral)
                              or top_k < 1):
        raise bad_value("top_k", top_k, "None or an integer >= 1")
    if top_p is not None and not (isinstance(top_p, Real) and 0 < top_p <= 1):
        raise bad_value("top_p", top_p, "None or a number in (0, 1]")


def sample_next(logits, temperature=1.0, top_k=None, top_p=None, generator=None):
    """One token id per row of `logits` (B, V): a LongTensor (B,).

    The logits are divided by `temperature` (0: the argmax, no sampling); `top_k` keeps the k
    largest; `top_p` keeps the smallest set of most probable tokens whose probability reaches
    p (the most probable token is always kept); then a token is drawn with torch.multinomial
    from `generator` (a torch.Generator on the logits' device, or None for the global one).
    """
    _check(temperature, top_k, top_p)
    if logits.dim() != 2:
        raise ValueError(f"logits must be (B, V), got shape {tuple(logits.shape)}")
    logits = logits.detach().float()
    if temperature == 0:
        return logits.argmax(dim=-1)
    # shifted so the largest is 0: a tiny temperature then sends the rest to -inf, not NaN
    logits = (logits - logits.amax(dim=-1, keepdim=True)) / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        values, indices = logits.topk(int(top_k), dim=-1)
        logits = torch.full_like(logits, -math.inf).scatter(-1, indices, values)
    if top_p is not None and top_p < 1:
        probs, order = logits.softmax(dim=-1).sort(dim=-1, descending=True)
        before = probs.cumsum(dim=-1) - probs  # the mass of the tokens more probable than this
        keep = torch.zeros_like(before, dtype=torch.bool).scatter(-1, order, before < top_p)
        logits = logits.masked_fill(~keep, -math.inf)
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(step_fn, prompt_ids, n, temperature=1.0, top_k=None, top_p=None, seed=None,
             state=None):
    """`n` new token ids after `prompt_ids`, as a LongTensor (B, n).

    `step_fn(ids, state) -> (logits, state)` is the model: given ids (B, t) and the state
    carried from the previous call (`state` the first time, None by default), it returns the
    logits (B, V) for the token after the last of `ids`. It is called once with the whole
    prompt (B, t) or (t,), then once per sampled token with that token (B, 1). With a `seed`,
    the draws come from their own torch.Generator, so the same seed gives the same text.
    """
    _check(temperature, top_k, top_p)
    if isinstance(n, bool) or not isinstance(n, Integral) or n < 0:
        raise bad_value("n", n, "an integer >= 0")
    ids = torch.as_tensor(prompt_ids, dtype=torch.long)
    ids = ids.unsqueeze(0) if ids.dim() == 1 else ids
    if ids.dim() != 2 or ids.shape[1] == 0:
        raise InputError(f"prompt: shape {tuple(ids.shape)} is not allowed: a non-empty (t,) or "
                         f"(B, t) sequence of ids")
    if n == 0:
        return ids.new_empty((ids.shape[0], 0))
    logits, state = step_fn(ids, state)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=logits.device).manual_seed(int(seed))
    tokens = []
    for i in range(n):
        token = sample_next(logits, temperature, top_k, top_p, generator)
        tokens.append(token)
        if i + 1 < n:
            logits, state = step_fn(token.unsqueeze(1), state)
    return torch.stack(tokens, dim=1)
