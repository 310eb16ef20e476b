"""Checkpoints: a run's whole state at its last check (`<name>_checkpoint.pt` beside the run
file), written atomically and read back as data only."""
import pickle

import torch

from tasks.errors import InputError


def checkpoint_path(config):
    return config.run_path.with_name(f"{config.name}_checkpoint.pt")


def load_checkpoint(path, remedy, map_location=None):
    """A checkpoint read as data only (tensors, numbers, strings, lists, dicts: torch's
    weights_only), so that opening a run folder from elsewhere cannot run code. A damaged file, or
    one that carries other objects, is an InputError that names it and says what to do."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" in str(e).lower():
            raise InputError(f"checkpoint {str(path)!r} is refused: it carries pickled objects other than "
                             f"tensors and plain data, which could run code; {remedy}") from None
        reason = e
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as e:
        reason = e
    raise InputError(f"checkpoint {str(path)!r} is damaged ({str(reason).splitlines()[0][:80]}); {remedy}")


def save_atomic(obj, path):
    """torch.save to a temporary file, then rename: a reader never sees half a file."""
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)
