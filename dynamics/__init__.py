"""dynamics: a diagnostics-first research harness for the training dynamics of recurrent networks."""
__version__ = "0.1.0"
__all__ = ["Model", "Output", "build_model", "spectral_radius", "__version__"]


def __getattr__(name):
    """The model is imported on first use, so that commands which only read run files start
    without loading torch."""
    if name in __all__:
        from .models import recurrent
        return getattr(recurrent, name)
    raise AttributeError(f"module 'dynamics' has no attribute {name!r}")
