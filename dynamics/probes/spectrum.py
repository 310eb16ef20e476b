"""The recurrent matrix at each check: its spectral radius ρ and largest singular value σ_max."""
import math

import torch

from ..models.recurrent import spectral_radius


def singular_max(W):
    return torch.linalg.matrix_norm(W.detach().double().cpu(), ord=2).item()


class Spectrum:
    """ρ and σ_max of the model's recurrent matrix (NaN for a model without one)."""

    columns = {"rho": "spectral radius of the recurrent matrix (NaN without one)",
               "sigma_max": "largest singular value of the recurrent matrix (NaN without one)"}
    panels = ("rho", "eigenvalues")

    @staticmethod
    def applies(config):
        return True

    def __init__(self, run):
        self.model = run.model

    def check(self, parts):
        W = self.model.recurrent_matrix() if hasattr(self.model, "recurrent_matrix") else None
        if W is None:
            return {}, {"rho": math.nan, "sigma_max": math.nan}
        return {}, {"rho": spectral_radius(W), "sigma_max": singular_max(W)}
