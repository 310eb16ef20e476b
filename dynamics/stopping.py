"""Stopping a run cleanly: SIGINT and SIGTERM ask the loop to stop between updates, and the run
file is closed as interrupted at its last checkpoint."""
import signal
import threading


class Stop(Exception):
    """A stop was asked for (SIGINT, SIGTERM): the run closes as interrupted."""


# the signal that last asked a run of this process to stop (None: none did); the command line ends
# with the conventional status 128 + its number (130 for SIGINT, 143 for SIGTERM)
received = None


class StopSignals:
    """SIGINT and SIGTERM set a flag that the loop reads between updates, so that a signal
    never lands between writing a check and saving its checkpoint."""

    def __init__(self):
        self.requested, self.previous = False, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self.request)
        return self

    def request(self, signum, frame):
        global received
        self.requested, received = True, signum

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
