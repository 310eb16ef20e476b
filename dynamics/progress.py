"""What a run shows while it trains: a progress bar on a terminal, one plain line per check in a
log (a file, a sweep worker, CI)."""
import sys
import time

from tqdm import tqdm


def progress_bar(name, total, initial, progress):
    """A progress bar on a terminal; in a log (stdout or stderr not a terminal) one plain line per
    check instead of thousands of overwritten bar states."""
    if progress and not (sys.stdout.isatty() and sys.stderr.isatty()):
        return CheckLines(name, total, initial)
    return tqdm(total=total, initial=initial, disable=not progress, unit="it", desc=name, dynamic_ncols=True,
                leave=True)


class CheckLines:
    """What the loop asks of a progress bar, written as one line per check on stdout:
    `NAME iter I/N | loss … | gnorm … | valid loss …, error …% | R it/s | ETA h:mm:ss`."""

    def __init__(self, name, total, initial):
        self.name, self.total, self.n, self.start = name, total, initial, initial
        self.t0 = time.perf_counter()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        self.n += n

    def set_postfix_str(self, text, refresh=True):
        rate = (self.n - self.start) / max(time.perf_counter() - self.t0, 1e-9)
        left = int((self.total - self.n) / rate) if rate > 0 else None
        eta = "?" if left is None else f"{left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}"
        print(f"{self.name} iter {self.n}/{self.total} | {text} | {rate:.1f} it/s | ETA {eta}", flush=True)
