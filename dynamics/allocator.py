"""Freed memory kept for the next step.

A training step allocates and frees the same large buffers at every update (the states, gates
and gradients of all steps). By default glibc's malloc hands blocks above 128 KB (adaptively up
to 32 MB) back to the system when they are freed, and trims the top of its heap, so the next
step takes the same memory back through fresh page faults: on the CPU up to a third of a step's
time (an LN-LSTM step at (B, H, T) = (64, 256, 128) 1.4x, the LSTM 1.1x; README, Speed). With
both thresholds raised, freed blocks stay in the heap and are reused. The numbers computed do not
change, only where their memory comes from; the process keeps its peak size between steps.
"""
import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3   # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 1 << 30                       # blocks up to 1 GiB come from the heap
TRIM_THRESHOLD = (1 << 31) - 1                 # the heap's top is not trimmed below 2 GiB free

_kept = None   # whether it took effect, once tried


def keep_freed_memory():
    """Raise glibc's mmap and trim thresholds for this process (once); True where it took effect,
    False where the C library is not glibc (the default allocator stays, the numbers the same)."""
    global _kept
    if _kept is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _kept = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) & bool(
                libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
        except (OSError, AttributeError):   # no C library by that name, or no mallopt in it
            _kept = False
    return _kept
