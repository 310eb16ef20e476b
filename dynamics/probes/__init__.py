"""Diagnostics read off training, one concern per module:

    gradients.py   per check and part: the batch-mean g_t through time, histograms of log10 g_t,
                   of the units' saturation and of the gates (histograms.py: the binning)
    clipping.py    per update: the global gradient norm before and after clipping
    omega.py       per update: Pascanu's regulariser Ω (with alpha > 0)
    spectrum.py    per check: ρ and σ_max of the recurrent matrix
    horizon.py     per check: how many steps back the gradient reaches
    theory.py      at diagnostics_level = full: Jacobians, Lyapunov exponents, sharpness, the
                   error surface

The per-update quantities are part of the training step (dynamics/train.py). A per-check probe
is a class that declares what it records and is registered in PROBES:

    columns               {name: what it means}: one /check/<name> float64 column each
    datasets(config)      optional, {path: width or None}: other growing datasets of the run file
    panels                the panels of analysis/panels/ that draw it (by their keys)
    applies(config)       whether a run records it
    __init__(run)         built once per run, after the model
    before_clip(x, y, loss), after_update()   optional hooks around the clipping and the update
    check(parts) -> (iter columns, row)       at each check; parts: {part name: {"grad_time",
                          "hist", "align"}} of this check's batch, the main part last; the row's
                          names are /check columns, or paths from the root ("/surface/...")

The trainer builds the probes that apply, the run file creates their columns and datasets from
these declarations, and the dashboard draws the panels whose data exist.
"""
from .clipping import CLIP_STATS, clip_gradients
from .gradients import end_aligned, hist_edges, layer_diagnostics, valid_steps
from .histograms import histogram
from .horizon import Horizon
from .omega import OMEGA_STATS, omega
from .spectrum import Spectrum, singular_max
from .theory import Theory

PROBES = (Spectrum, Horizon, Theory)

__all__ = ["PROBES", "CLIP_STATS", "OMEGA_STATS", "clip_gradients", "end_aligned", "hist_edges", "histogram",
           "layer_diagnostics", "omega", "singular_max", "valid_steps"]
