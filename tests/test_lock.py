"""The run file's lock: one writer at a time, and whether the writer of a "running" file is alive."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from dynamics.lock import exclusive, lock_path, writer_alive
from tasks.errors import InputError


def test_a_second_writer_is_refused_and_the_lock_names_its_holder(tmp_path):
    path = tmp_path / "r.h5"
    assert writer_alive(path) is None                           # no lock file: nobody to ask
    with exclusive(path):
        assert lock_path(path).read_text() == f"{os.getpid()} {socket.gethostname()}\n"
        assert writer_alive(path) is True
        with pytest.raises(InputError, match="is being written by another process"):
            with exclusive(path):
                pass
    assert not lock_path(path).exists() and writer_alive(path) is None


def test_a_killed_writer_is_told_from_a_live_one(tmp_path):
    path = tmp_path / "r.h5"
    code = f"from dynamics.lock import exclusive; import time\nwith exclusive({str(path)!r}):\n    time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 30
    while not (lock_path(path).exists() and lock_path(path).read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer_alive(path) is True
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert lock_path(path).exists() and writer_alive(path) is False    # the lock file stays behind
    with exclusive(path):                                              # and is no obstacle
        assert writer_alive(path) is True
    lock_path(path).write_text("123 another-host\n")
    assert writer_alive(path) is None                                  # another machine's: cannot tell
