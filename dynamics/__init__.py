"""dynamics: a diagnostics-first research harness for the training dynamics of recurrent networks.

For a model of your own: `dynamics.nn` (drop-in RNN, GRU and LSTM with exact ∂L/∂h_t),
`dynamics.Recorder` (records any training loop into a run file) and `dynamics.open` (a run file
as pandas tables and figures, for a notebook).
"""
__version__ = "0.1.0"
# `open` is not in __all__: `from dynamics import *` must not hide the built-in open
__all__ = ["Model", "Output", "build_model", "spectral_radius", "Recorder", "__version__"]

# where each name lives; imported on first use, so that commands which only read run files start
# without loading torch
_HOMES = {"Model": "models.recurrent", "Output": "models.recurrent", "build_model": "models.recurrent",
          "spectral_radius": "models.recurrent", "Recorder": "recorder", "open": "notebook"}


def __getattr__(name):
    import importlib
    if name == "nn":
        return importlib.import_module(".nn", __name__)
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module 'dynamics' has no attribute {name!r}")
