"""The compiled loops (dynamics/models/csrc: the recurrences, clipping and histograms, dropout):
built with the system's C++ compiler on first use, cached per user, and imported as one Python
module (pybind11).

Which path runs (CPU tensors only; CUDA always takes the Python loops of recurrence.py):
- `python`: the Python loops; `compiled`: the C++ loops, and an error if they cannot be built;
- `auto` (default): compiled when they build, else the Python loops, with one warning line.
The config key `backend` picks; when it says `auto`, the environment variable DYNAMICS_BACKEND
may force either path (read when a run chooses its path, `use`, or at a process's first choice:
a lookup in os.environ at every call would cost each update). The build cache is
$DYNAMICS_CACHE, or ~/.cache/dynamics, one folder per version of the source and of torch.
"""
import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from tasks.errors import bad_value

# what the config key `backend` and DYNAMICS_BACKEND may say: a path, or auto (compiled where it builds)
BACKENDS = ("auto", "compiled", "python")
CSRC = Path(__file__).parent / "csrc"
SOURCES = tuple(CSRC / name for name in ("recurrence.cpp", "dropout.cpp", "module.cpp"))
HEADERS = (CSRC / "ops.h",)
_configured = "auto"
_environment = None  # DYNAMICS_BACKEND as read at the last choice (None: read it at the next)
_ops = None          # the compiled module once loaded
_failure = None      # why the build failed, once it has


def use(backend):
    """Select the path for this process (the config key `backend`); DYNAMICS_BACKEND is read anew."""
    global _configured, _environment
    if backend not in BACKENDS:
        raise bad_value("backend", backend, ", ".join(BACKENDS))
    _configured, _environment = backend, None


def backend():
    """The path asked for: the configured one, or DYNAMICS_BACKEND when that is `auto`."""
    global _environment
    if _configured != "auto":
        return _configured
    if _environment is None:
        env = os.environ.get("DYNAMICS_BACKEND", "auto").strip().lower() or "auto"
        if env not in BACKENDS:
            raise bad_value("DYNAMICS_BACKEND", env, ", ".join(BACKENDS))
        _environment = env
    return _environment


def ops_for(tensor):
    """The compiled ops when `tensor` should take them, else None (use the Python loops)."""
    if not tensor.is_cpu or backend() == "python":
        return None
    if _ops is None and _failure is None:
        _build()
    if _ops is None and backend() == "compiled":
        raise RuntimeError(f"backend=compiled, but the compiled recurrences are unavailable: {_failure}")
    return _ops


def missing_toolchain():
    """Why nothing can be compiled here (no compiler, no ninja), or None."""
    from torch.utils import cpp_extension
    compiler = os.environ.get("CXX", "c++")
    if not shutil.which(compiler):
        return f"no C++ compiler ({compiler}) on PATH"
    if not cpp_extension.is_ninja_available():
        return "ninja is not installed"
    return None


def cpu_flags():
    """Compiler flags for the widest vector unit torch itself uses on this CPU."""
    capability = torch.backends.cpu.get_cpu_capability()
    if capability.startswith("AVX512"):
        return ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma",
                "-DCPU_CAPABILITY=AVX512", "-DCPU_CAPABILITY_AVX512"]
    if capability == "AVX2":
        return ["-mavx2", "-mfma", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"]
    return ["-DCPU_CAPABILITY=DEFAULT"]


def _build():
    global _ops, _failure
    flags = ["-O3"] + cpu_flags()
    code = b"".join(path.read_bytes() for path in SOURCES + HEADERS)
    key = hashlib.sha256(code + " ".join(flags + [torch.__version__]).encode()).hexdigest()[:12]
    name = f"dynamics_recurrence_{key}"
    cache = Path(os.environ.get("DYNAMICS_CACHE") or Path.home() / ".cache" / "dynamics") / name
    built = (cache / f"{name}.so").exists()
    try:
        from torch.utils import cpp_extension
        if not built and missing_toolchain():
            raise RuntimeError(missing_toolchain())
        cache.mkdir(parents=True, exist_ok=True)
        if not built:
            print(f"dynamics: compiling the recurrence and dropout loops once into {cache} (up to a minute) ...",
                  file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        module = cpp_extension.load(name, [str(path) for path in SOURCES], extra_cflags=flags,
                                    build_directory=str(cache), is_python_module=True, verbose=False)
        if not built:
            print(f"dynamics: compiled in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        _ops = module
    except Exception as e:  # a failed build must not stop a run: the Python loops give the same numbers
        _failure = " ".join(str(e).split())[:300] or type(e).__name__
        if backend() != "compiled":
            print(f"dynamics: compiled recurrences unavailable ({_failure}); using the Python loops "
                  "(same numbers, slower)", file=sys.stderr, flush=True)
