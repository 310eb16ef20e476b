"""dynamics: a diagnostics-first research harness for the training dynamics of recurrent networks."""
from .model import Model, Output, build_model, spectral_radius

__version__ = "0.1.0"
__all__ = ["Model", "Output", "build_model", "spectral_radius", "__version__"]
