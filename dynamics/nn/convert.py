"""Swap the torch.nn recurrent modules inside a model for the drop-in ones and back. The swapped
module takes over the old one's parameters themselves (not copies), so an optimiser built
before the swap keeps training the same tensors, and the model's outputs do not change."""
from tasks.errors import InputError

from .modules import MODULES

RESTORED = {ours: theirs for theirs, ours in MODULES.items()}


def convert(model):
    """Every torch.nn.RNN, GRU and LSTM inside `model` (or `model` itself) replaced by
    dynamics.nn's, in place; returns the model (a new object only when `model` itself was one)."""
    found = [m for m in model.modules() if type(m) in MODULES]
    if not found and not any(type(m) in RESTORED for m in model.modules()):
        raise InputError(f"dynamics.nn.convert: {type(model).__name__} holds no torch.nn.RNN, GRU or LSTM; "
                         f"nothing to convert")
    for m in found:
        if m.proj_size:
            raise InputError(f"dynamics.nn.convert: an LSTM with proj_size={m.proj_size} is not supported; "
                             f"nothing was converted")
    return swap(model, MODULES)


def restore(model):
    """Every dynamics.nn module inside `model` replaced by its torch.nn namesake, in place."""
    return swap(model, RESTORED)


def swap(model, kinds):
    """`model` with each module whose exact type is a key of `kinds` made an instance of its value."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) in kinds:
                setattr(parent, name, swapped(child, kinds[type(child)]))
    return swapped(model, kinds[type(model)]) if type(model) in kinds else model


def swapped(module, kind):
    """`module` as an instance of `kind`, with its parameters, buffers, hooks and settings."""
    new = kind.__new__(kind)
    new.__dict__.update({k: v for k, v in module.__dict__.items() if k not in ("_traces", "_lengths")})
    return new
