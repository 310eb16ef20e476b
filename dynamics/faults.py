"""Faults of the machine as one line: a full disk, a read-only or missing folder, a name too long
for the file system, too little memory. Each becomes an InputError that says what failed, where,
and what to do, so that every command prints it as it prints bad input (one line, exit status 2).
"""
import errno
import os
import re

from tasks.errors import InputError

# errno → (what it means, what to do)
OS_ERRORS = {
    errno.ENOSPC: ("no space left on the device", "free some space"),
    errno.EDQUOT: ("the disk quota is used up", "free some space"),
    errno.EROFS: ("a read-only file system", "choose a folder that can be written (--out-dir)"),
    errno.EACCES: ("permission denied", "choose a folder that can be written (--out-dir)"),
    errno.EPERM: ("not permitted", "choose a folder that can be written (--out-dir)"),
    errno.EEXIST: ("a file is in the way of a folder", "choose another folder (--out-dir)"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "choose another folder (--out-dir)"),
    errno.ENAMETOOLONG: ("the name is too long for the file system", "choose a shorter name"),
    errno.ENOENT: ("no such file or folder", "check the path"),
    errno.EIO: ("an input/output error of the device", "check the disk"),
}


def os_fault(exc, doing, then=""):
    """The OSError `exc`, met while `doing` ("write the checkpoint"), as one InputError line."""
    what, remedy = OS_ERRORS.get(exc.errno, (exc.strerror or type(exc).__name__, "check the path"))
    where = f" {str(exc.filename)!r}" if getattr(exc, "filename", None) else ""
    return InputError(f"cannot {doing}{where}: {what}; {remedy}{then}")


MEMORY_WORDS = ("can't allocate memory", "out of memory", "not enough memory")


def memory_fault(exc, doing, then=""):
    """`exc` as one InputError line if it is a failed allocation, else None."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if not (isinstance(exc, MemoryError) or any(w in text.lower() for w in MEMORY_WORDS)):
        return None
    asked = re.search(r"allocate (\d+) bytes", text)
    what = f"it asked for {int(asked.group(1)) / 2 ** 30:.1f} GiB at once" if asked else text[:120]
    return InputError(f"not enough memory to {doing} ({what}); make the model or the batches smaller "
                      f"(n_hidden, batch_size, eval_batch_size){then}")


def free_bytes(path):
    """Bytes free to this user on the device of `path` (a file or folder that exists)."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize
