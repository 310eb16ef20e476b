"""One writer per run file: the lock `.NAME.h5.lock` beside it, and whether its writer is alive.

The writer holds an flock on the lock file for the whole run (the kernel lets go of it however
the process ends) and writes its process id and host into it. A run file whose status still
says "running" has a live writer only if that process exists: one killed outright (SIGKILL, a
lost machine) leaves "running" behind, and `writer_alive` tells the two apart without touching
the lock. Imports neither torch nor h5py: `dynamics info` asks it.
"""
import fcntl
import os
import socket
from contextlib import contextmanager
from pathlib import Path

from tasks.errors import InputError

from .faults import os_fault


def lock_path(path):
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


class Held:
    """The lock while it is held. `keep()`: leave the lock file behind at the end, naming this
    process, for a run file that could not be closed (a full disk): its readers then see that the
    writer is gone and say that --resume continues it."""

    def __init__(self):
        self.kept = False

    def keep(self):
        self.kept = True


@contextmanager
def exclusive(path):
    """Hold the lock of the run file `path` while the block runs. A second writer of the same run
    file, fresh or resuming, is refused with one line before it touches anything; so is a folder
    that cannot be written (the lock file is the first thing a run writes)."""
    lock = lock_path(path)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise os_fault(e, "write in the run's folder", "; nothing was written") from None
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise InputError(f"run file {str(path)!r} is being written by another process: wait for it to "
                             f"end, or give this run another name") from None
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)   # the previous holder removed the lock file between our open and our flock
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
    held = Held()
    try:
        yield held
    finally:
        if not held.kept:
            lock.unlink(missing_ok=True)
        os.close(fd)


def writer_alive(path):
    """Whether a process writes the run file `path` now: True; False when the writer named in the
    lock file is gone; None where it cannot be told (no lock file: a file copied without it, or
    written by another program; a writer on another host; a lock file without an id)."""
    try:
        pid, host = lock_path(path).read_text().split()
    except (OSError, ValueError):
        return None
    if host != socket.gethostname() or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)       # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True                # it exists, as another user's
    return True
