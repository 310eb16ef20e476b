"""Checkpoints: a run's whole state at its last check (`<name>_checkpoint.pt` beside the run
file), written atomically and read back as data only."""
import io
import pickle
import zipfile

import torch

from tasks.errors import InputError

from .schema import CHECKPOINT_SUFFIX


def checkpoint_path(config):
    return config.run_path.with_name(config.name + CHECKPOINT_SUFFIX)


def load_checkpoint(path, remedy, map_location=None):
    """A checkpoint read as data only (tensors, numbers, strings, lists, dicts: torch's
    weights_only), so that opening a run folder from elsewhere cannot run code. A damaged file
    (cut short, or with bytes changed: every member's checksum is verified first), or one that
    carries other objects, is an InputError that names it and says what to do."""
    try:
        # torch.load reads damaged bytes as numbers; the zip archive's CRC-32 of every member does not
        damaged = zipfile.ZipFile(path).testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise InputError(f"checkpoint {str(path)!r} is damaged (not a whole checkpoint: {str(e)[:60]}); "
                         f"{remedy}") from None
    if damaged is not None:
        raise InputError(f"checkpoint {str(path)!r} is damaged (the bytes of {damaged!r} do not match their "
                         f"checksum); {remedy}")
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
    """torch.save to a temporary file, then rename: a reader never sees half a file, and a write
    that fails (a full disk) leaves the last checkpoint as it was and no temporary file. The bytes
    are made in memory first, so that a failed write is the OSError of the file system, not an
    error from inside torch's writer."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    tmp = path.with_suffix(".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(buffer.getbuffer())
        tmp.replace(path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and not e.filename:
            e.filename = str(tmp)      # a failed write() does not say which file
        raise
