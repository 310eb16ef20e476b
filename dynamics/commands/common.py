"""What several commands share: checks of output paths before anything is written, and one line
for a failed write."""
import os
from pathlib import Path

from tasks.errors import InputError

IMAGE_SUFFIXES = (".png", ".pdf", ".svg")


def writable_dir(path):
    """Create the output folder `path` if needed; refuse one that cannot be written."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{path}: cannot create the output folder ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK):
        raise InputError(f"{path}: the output folder is not writable")


def output_file(path, suffixes, what):
    """Refuse an output file name with the wrong suffix, or one that is a folder."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in suffixes:
        raise InputError(f"-o {path!r} is not allowed: {what} must end in {' or '.join(suffixes)}")
    if os.path.isdir(path):
        raise InputError(f"-o {path!r} is a folder; give a file name")


def saving(fn, *args):
    """Call `fn(*args)`, a write: a failed write becomes one InputError line."""
    try:
        return fn(*args)
    except OSError as exc:
        raise InputError(f"cannot write the output ({exc.strerror or exc}: "
                         f"{getattr(exc, 'filename', '') or ''})") from None


def run_files(paths):
    """The .h5 files of the given files and folders, sorted by name within a folder."""
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(p.glob("*.h5"))
        elif p.exists():
            files.append(p)
        else:
            raise InputError(f"{p}: no such file or folder")
    if not files:
        raise InputError(f"no run files in {', '.join(map(str, paths))}")
    return files


def load_all(paths):
    """A Snapshot (analysis/read.py) of every run file; no paths is bad input."""
    from analysis.read import load
    if not paths:
        raise InputError("no run files given")
    return [load(p) for p in paths]
