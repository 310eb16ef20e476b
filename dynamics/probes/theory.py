"""The objects the theory of exploding and vanishing gradients reasons with (Pascanu, Mikolov &
Bengio 2013), measured on the network being trained (config diagnostics_level = full):

    J_t = ∂h_t/∂h_{t−1}             the step Jacobian, from the cell's own equations
    ∂h_T/∂h_{T−k} = J_T ⋯ J_{T−k+1}  its products, the factor BPTT multiplies d_T by
    λ₁ γ                             λ₁ the largest singular value of W_hh, γ ≥ |φ'|: λ₁ γ < 1 is
                                     sufficient for vanishing, λ₁ γ > 1 necessary for exploding (RNN)
    Lyapunov exponents               mean log growth per step of perturbations (QR iteration)
    the error surface                the loss along the update direction, 1-D and 2-D
    sharpness                        the top Hessian eigenvalue (power iteration)
    per-group norms                  ‖∇W‖ and ‖ΔW‖/‖W‖ of W_hh, W_xh, W_hy per update

Row-vector convention of recurrence.py: h_t is (B, H) and a_t = x_t W_x + h_{t−1} W_h + b. A
step Jacobian is the (B, n, n) batch with J[i, j] = ∂h_t[i]/∂h_{t−1}[j], so that a perturbation
moves as δh_t = J_t δh_{t−1}; for the RNN J_t = diag(φ'(a_t)) W_hhᵀ. The LSTM carries the pair
s_t = [h_t, c_t]: its step Jacobian is that of the pair (n = 2H), the only one whose products are
∂s_T/∂s_{T−k}. The checks' probes run on a float64 copy of the model and a fixed batch of
`probe_batch_size` validation sequences of length min_length; the per-update norms stay on the
device and move to the host with the loop's other per-update numbers, once per check.
"""
import copy
import math

import numpy as np
import torch

from ..config import surface_iterations
from ..schema import RECURRENT_MATRIX

GAMMA = {"tanh": 1.0, "sigmoid": 0.25, "relu": 1.0, "linear": 1.0}   # γ = sup |φ'|
PHI = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu, "linear": lambda a: a}
SURFACE_PER_DECADE = 12     # points per decade of step length on the 1-D slice
SURFACE_GRID = 15           # the 2-D slice is SURFACE_GRID × SURFACE_GRID losses
FD_EPS = 1e-4               # finite-difference step of the Hessian-vector products (float64)


def dphi(activation, a):
    """φ'(a) of the RNN's activation."""
    if activation == "tanh":
        return 1 - torch.tanh(a) ** 2
    if activation == "sigmoid":
        s = torch.sigmoid(a)
        return s * (1 - s)
    if activation == "relu":
        return (a > 0).to(a.dtype)
    return torch.ones_like(a)


# ----------------------------------------------------------------------- the cells, written out

def blocks(layer):
    """The recurrent blocks W_h<g> (H, H) of a layer by gate name (views of W_h)."""
    H = layer.n_hidden
    names = {"rnn": "h", "gru": "zrh", "lstm": "ifco"}[layer.cell]
    return {g: layer.W_h[:, j * H:(j + 1) * H] for j, g in enumerate(names)}


def cell_step(layer, x_t, state):
    """One step of `layer`, the cell's equations one by one: (x_t (B, n_in), state) → state,
    the state (h,) or, for the LSTM, (h, c)."""
    H, W = layer.n_hidden, blocks(layer)
    ax = x_t @ layer.W_x + layer.b
    h = state[0]
    if layer.cell == "rnn":
        return (PHI[layer.activation](ax + h @ W["h"]),)
    if layer.cell == "gru":
        z = torch.sigmoid(ax[:, :H] + h @ W["z"])
        r = torch.sigmoid(ax[:, H:2 * H] + h @ W["r"])
        cand = torch.tanh(ax[:, 2 * H:] + (r * h) @ W["h"])
        return ((1 - z) * h + z * cand,)
    a = ax + h @ layer.W_h
    i, f, g, o = (a[:, k * H:(k + 1) * H] for k in range(4))
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c = f * state[1] + i * g
    return (o * torch.tanh(c), c)


def step_jacobian(layer, x_t, state):
    """J_t (B, n, n) = ∂state_t/∂state_{t−1} of one step, by hand from the equations of cell_step.
    diag(v) M is written v[:, :, None] * M: it scales the rows of M."""
    H, W = layer.n_hidden, blocks(layer)
    ax = x_t @ layer.W_x + layer.b
    h = state[0]
    if layer.cell == "rnn":
        # h_t = φ(a_t):  J = diag(φ'(a_t)) W_hhᵀ
        return dphi(layer.activation, ax + h @ W["h"])[:, :, None] * W["h"].t()
    if layer.cell == "gru":
        z = torch.sigmoid(ax[:, :H] + h @ W["z"])
        r = torch.sigmoid(ax[:, H:2 * H] + h @ W["r"])
        cand = torch.tanh(ax[:, 2 * H:] + (r * h) @ W["h"])
        # ∂h̃/∂h = diag(1 − h̃²) W_hhᵀ [diag(r) + diag(h ⊙ r(1 − r)) W_hrᵀ]
        through_r = W["h"].t() * r[:, None, :] + (W["h"].t() * (h * r * (1 - r))[:, None, :]) @ W["r"].t()
        # h_t = (1 − z) ⊙ h + z ⊙ h̃:  J = diag(1 − z) + diag((h̃ − h) z(1 − z)) W_hzᵀ + diag(z) ∂h̃/∂h
        return (torch.diag_embed(1 - z) + ((cand - h) * z * (1 - z))[:, :, None] * W["z"].t()
                + (z * (1 - cand ** 2))[:, :, None] * through_r)
    c_prev = state[1]
    a = ax + h @ layer.W_h
    i, f, g, o = (a[:, k * H:(k + 1) * H] for k in range(4))
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c = f * c_prev + i * g
    tc = torch.tanh(c)
    # c_t = f ⊙ c + i ⊙ c̃:  ∂c_t/∂h through the pre-activations of i, f and c̃; ∂c_t/∂c = diag(f)
    dc_dh = ((g * i * (1 - i))[:, :, None] * W["i"].t() + (c_prev * f * (1 - f))[:, :, None] * W["f"].t()
             + (i * (1 - g ** 2))[:, :, None] * W["c"].t())
    dc_dc = torch.diag_embed(f)
    # h_t = o ⊙ tanh(c_t):  through o, and through c_t
    k = o * (1 - tc ** 2)
    dh_dh = (o * (1 - o) * tc)[:, :, None] * W["o"].t() + k[:, :, None] * dc_dh
    dh_dc = torch.diag_embed(k * f)
    return torch.cat([torch.cat([dh_dh, dh_dc], dim=2), torch.cat([dc_dh, dc_dc], dim=2)], dim=1)


@torch.no_grad()
def trajectory_jacobians(layer, x):
    """J_1 … J_T (T, B, n, n) along the trajectory of x (T, B, n_in) from the zero state."""
    T, B, _ = x.shape
    zero = x.new_zeros(B, layer.n_hidden)
    state = (zero, zero) if layer.cell == "lstm" else (zero,)
    out = []
    for x_t in x.unbind(0):
        out.append(step_jacobian(layer, x_t, state))
        state = cell_step(layer, x_t, state)
    return torch.stack(out)


def product_log10_norms(J):
    """log10 ‖∂h_T/∂h_{T−k}‖₂ = log10 ‖J_T J_{T−1} ⋯ J_{T−k+1}‖₂ for k = 1 … T, per sequence
    (T, B). The product is rescaled to unit Frobenius norm at every step and the scale kept as a
    logarithm, so it neither overflows nor underflows. J: J_1 … J_T, a (T, B, n, n) tensor or a
    sequence of (B, n, n) (dynamics.nn computes each when asked), read once, from the last."""
    T = len(J)
    P = J[T - 1]
    log_scale, out = P.new_zeros(P.shape[0]), []
    for k in range(1, T + 1):
        if k > 1:
            P = P @ J[T - k]
        s = torch.linalg.matrix_norm(P).clamp_min(1e-300)
        P = P / s[:, None, None]
        log_scale = log_scale + torch.log10(s)
        out.append(log_scale + torch.log10(torch.linalg.matrix_norm(P, ord=2).clamp_min(1e-300)))
    return torch.stack(out)


def lyapunov_exponents(J, k):
    """The top-k Lyapunov exponents (natural log per step) of the products J_T ⋯ J_1, per
    sequence (B, k), largest first. QR iteration: Q_0 = the first k unit vectors,
    J_t Q_{t−1} = Q_t R_t, λ_i = (1/T) Σ_t log |R_t[i, i]|. J as in product_log10_norms."""
    T, (B, n, _) = len(J), J[0].shape
    Q = torch.eye(n, k, dtype=J[0].dtype, device=J[0].device).expand(B, n, k)
    total = J[0].new_zeros(B, k)
    for t in range(T):
        Q, R = torch.linalg.qr(J[t] @ Q)
        total += torch.log(torch.diagonal(R, dim1=1, dim2=2).abs().clamp_min(1e-300))
    return (total / T).sort(dim=1, descending=True).values


# ------------------------------------------------------------------------------- sharpness

def top_hessian_eigenvalue(gradient, params, iters, generator=None, eps=FD_EPS):
    """The eigenvalue of largest magnitude of the Hessian of the loss whose flat gradient
    `gradient()` returns, at `params`, by power iteration with the Rayleigh quotient vᵀHv.
    H v ≈ (∇L(θ + εv) − ∇L(θ − εv)) / 2ε: central differences of gradients, because the
    hand-written backward is not twice differentiable. `params` are restored exactly."""
    saved = [p.detach().clone() for p in params]
    v = torch.randn(sum(p.numel() for p in params), generator=generator, dtype=torch.float64)
    v = (v / v.norm()).to(params[0].device, params[0].dtype)
    value = math.nan
    with torch.no_grad():
        for _ in range(iters):
            grads = []
            for sign in (1.0, -1.0):
                offset = 0
                for p, p0 in zip(params, saved):
                    p.copy_(p0 + sign * eps * v[offset:offset + p.numel()].view_as(p))
                    offset += p.numel()
                with torch.enable_grad():
                    grads.append(gradient())
            Hv = (grads[0] - grads[1]) / (2 * eps)
            value = float(v @ Hv)
            norm = Hv.norm()
            if not torch.isfinite(norm) or norm == 0:
                break
            v = Hv / norm
        for p, p0 in zip(params, saved):
            p.copy_(p0)
    return value


# ---------------------------------------------------------------------------- error surface

def step_lengths(lr, grad_norm, cutoff, clip):
    """(unclipped, clipped) lengths of the SGD step lr·‖g‖ and lr·min(‖g‖, cutoff)."""
    taken = lr * grad_norm
    return taken, (lr * min(grad_norm, cutoff) if clip == "rescale" else taken)


@torch.no_grad()
def loss_surface(loss, params, grads, unclipped, clipped, generator=None):
    """The loss along d = −g/‖g‖ (g the update's gradient before clipping) at step length s = 0
    and on a log grid from min(steps)/100 to 10·max(steps), about SURFACE_PER_DECADE per decade;
    and on a 2-D slice s·d + t·e, e a random unit direction orthogonal to d, s on every few
    points of that grid and t ∈ [−10·max(steps), 10·max(steps)]. `loss()` evaluates the loss at the
    current parameters; the parameters are restored exactly (the same tensors, copied back)."""
    saved = [p.detach().clone() for p in params]
    g = torch.cat([q.reshape(-1) for q in grads]).double()
    d = -g / g.norm()
    e = torch.randn(g.numel(), generator=generator, dtype=torch.float64).to(g.device)
    e -= (e @ d) * d
    e /= e.norm()
    lo, hi = math.log10(min(unclipped, clipped)) - 2, math.log10(max(unclipped, clipped)) + 1
    every = math.ceil((hi - lo) * SURFACE_PER_DECADE / (SURFACE_GRID - 1))
    line_s = 10 ** np.linspace(lo, hi, every * (SURFACE_GRID - 1) + 1)
    steps = np.concatenate([[0.0], line_s])
    grid_s = line_s[::every]                       # the 2-D slice's step lengths lie on the line
    grid_t = np.linspace(-1, 1, SURFACE_GRID) * line_s[-1]

    def at(s, t):
        offset = 0
        for p, p0 in zip(params, saved):
            n = p.numel()
            move = s * d[offset:offset + n] + t * e[offset:offset + n]
            p.copy_(p0 + move.view_as(p).to(p.dtype))
            offset += n
        return float(loss())

    try:
        line = np.array([at(s, 0.0) for s in steps])
        plane = np.array([[at(s, t) for s in grid_s] for t in grid_t])
    finally:
        for p, p0 in zip(params, saved):
            p.copy_(p0)
    return {"steps": steps, "loss": line, "grid_s": grid_s, "grid_t": grid_t, "loss_2d": plane.reshape(-1)}


# ------------------------------------------------------------------------ what a run records

def group_names(config):
    """The parameter groups whose norms are recorded per update: W_hh, W_xh per layer
    (suffix _l<l> above layer 0; for a GRU or LSTM all gate blocks of the layer), and W_hy."""
    names = []
    for l in range(config.n_layers):
        suffix = f"_l{l}" if l else ""
        names += [f"W_hh{suffix}", f"W_xh{suffix}"]
    return names + ["W_hy"]


def group_params(model):
    params = []
    for layer in model.layers:
        params += [layer.W_h, layer.W_x]
    return params + [model.W_hy]


def state_size(config):
    return 2 * config.n_hidden if config.cell == "lstm" else config.n_hidden


def datasets(config):
    """{path: width} of the growing datasets `full` adds to a run file (width None: one column).
    They are declared when the file is created: HDF5 in SWMR mode cannot add datasets later."""
    if config.diagnostics_level != "full":
        return {}
    T = config.min_length
    out = {f"iter/{kind}_{g}": None for g in group_names(config) for kind in ("grad_norm", "update_ratio")}
    out.update({"check/jac_step_norm": T, "check/jac_prod_norm": T, "check/lyapunov": config.lyapunov_k,
                "check/lambda1": None, "check/lambda1_gamma": None, "check/sharpness": None})
    out.update({f"surface/{k}": None for k in ("iter", "grad_norm", "loss0", "step_taken", "step_clipped")})
    out.update({"surface/steps": 48, "surface/loss": 48, "surface/grid_s": SURFACE_GRID,
                "surface/grid_t": SURFACE_GRID, "surface/loss_2d": SURFACE_GRID ** 2})
    return out


def float64_copy(model):
    """A float64 copy of `model` for probing, without the tensors of the last forward pass."""
    held = model.layer_outputs, model.final_state, [layer.hidden_grad for layer in model.layers]
    model.layer_outputs, model.final_state = [], None
    for layer in model.layers:
        layer.hidden_grad = None
    try:
        twin = copy.deepcopy(model)
    finally:
        model.layer_outputs, model.final_state = held[0], held[1]
        for layer, grad in zip(model.layers, held[2]):
            layer.hidden_grad = grad
    return twin.double()


class Theory:
    """The `full` probes of one run. Run.step calls `before_clip` and `after_update` around the
    clipping and the optimiser step; Run.check calls `check`, which returns the columns to
    append."""

    columns = {}        # its per-check columns and arrays are among `datasets`
    panels = ("jac_steps", "jac_products", "lyapunov", "sharpness", "surface_line", "surface_plane", "group_grad",
              "group_ratio")

    @staticmethod
    def applies(config):
        return config.diagnostics_level == "full"

    datasets = staticmethod(datasets)   # declared above, with what it records

    def __init__(self, run):
        self.run, c = run, run.c
        self.groups = group_params(run.model)
        self.names = group_names(c)
        source = run.source
        rng = np.random.default_rng([c.seed, 2])            # the fixed probe batch, its own stream
        x, y = source.task.generate(c.probe_batch_size, c.min_length, rng)
        self.x = torch.from_numpy(x).to(run.device, torch.float64)
        self.y = torch.from_numpy(y).to(run.device)
        if self.y.is_floating_point():
            self.y = self.y.double()
        self.pending, self.surface, self.before = [], None, None
        self.surface_at = surface_iterations(c.surface_at)
        self.gamma = GAMMA[c.activation] if c.cell == "rnn" else math.nan

    def surface_due(self, iteration):
        """Whether this update's error surface may be drawn: at the updates named in surface_at,
        and (surface_every > 0) at checks, where `surface_wanted` decides. At most one surface
        per check interval: the first one due is kept."""
        c = self.run.c
        if self.surface is not None:
            return False
        at_check = c.surface_every > 0 and (iteration % c.check_freq == 0 or iteration == c.max_iters)
        return iteration in self.surface_at or at_check

    def surface_wanted(self, iteration, grad_norm):
        """Named in surface_at, or every surface_every-th check, or a check whose update has a
        gradient norm above the cutoff (clipped or, without clipping, large)."""
        c = self.run.c
        if not (math.isfinite(grad_norm) and grad_norm > 0):
            return False
        scheduled = c.surface_every > 0 and (self.run.checks + 1) % c.surface_every == 0
        return iteration in self.surface_at or scheduled or grad_norm > c.cutoff

    def before_clip(self, x, y, loss):
        """After backward, before clipping: the groups' gradient norms (on the device), their
        weights for the update ratios, and at chosen updates the error surface."""
        grads = [p.grad for p in self.groups]
        self.grad_norms = torch.stack(torch._foreach_norm(grads))
        self.before = [p.detach().clone() for p in self.groups]
        c, model, params = self.run.c, self.run.model, self.run.params
        iteration = self.run.iters + 1
        if not self.surface_due(iteration):
            return
        grads = [p.grad for p in params]
        norm = float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))))   # one sync, at checks
        if not self.surface_wanted(iteration, norm):
            return
        taken, clipped = step_lengths(c.lr, norm, c.cutoff, c.clip)
        # the check reads the last forward pass (layer_outputs): keep it, and the RNG streams
        held = model.layer_outputs, model.final_state
        try:
            with torch.random.fork_rng(devices=[self.run.device] if self.run.device.type == "cuda" else []):
                result = loss_surface(lambda: self.run.source.loss(model(x).logits, y), params, grads, taken,
                                      clipped, torch.Generator().manual_seed(c.seed * 100003 + iteration))
        finally:
            model.layer_outputs, model.final_state = held
        self.surface = {"iter": iteration, "grad_norm": norm, "loss0": loss.detach().item(), "step_taken": taken,
                        "step_clipped": clipped, **result}

    def after_update(self):
        """‖W_after − W_before‖ / ‖W_before‖ per group, stacked with the gradient norms; on the device."""
        after = [p.detach() for p in self.groups]
        delta = torch.stack(torch._foreach_norm(torch._foreach_sub(after, self.before)))
        ratio = delta / torch.stack(torch._foreach_norm(self.before))
        self.pending.append(torch.cat([self.grad_norms, ratio]))
        self.before = None

    def check(self, parts):
        """(iter columns, check columns and the surface row /surface/..., if any) of this check."""
        rows = torch.stack(self.pending).double().cpu().numpy()
        self.pending = []
        G = len(self.names)
        iters = {f"grad_norm_{g}": rows[:, j] for j, g in enumerate(self.names)}
        iters.update({f"update_ratio_{g}": rows[:, G + j] for j, g in enumerate(self.names)})
        checks = self.trajectory_probes()
        checks.update({f"/surface/{k}": v for k, v in (self.surface or {}).items()})
        self.surface = None
        return iters, checks

    def trajectory_probes(self):
        c = self.run.c
        twin = float64_copy(self.run.model).eval()
        layer = twin.layers[0]
        J = trajectory_jacobians(layer, self.x)                              # (T, B, n, n)
        step_norm = torch.linalg.matrix_norm(J, ord=2).mean(dim=1)           # batch mean of ‖J_t‖₂
        prod = 10 ** product_log10_norms(J).mean(dim=1)                      # geometric mean over the batch
        lyap = lyapunov_exponents(J, c.lyapunov_k).mean(dim=0)
        W = twin.layers[0].weights()[RECURRENT_MATRIX[c.cell]]
        lambda1 = torch.linalg.matrix_norm(W, ord=2).item()
        out = {"jac_step_norm": step_norm.cpu().numpy(), "jac_prod_norm": prod.cpu().numpy(),
               "lyapunov": lyap.cpu().numpy(), "lambda1": lambda1, "lambda1_gamma": lambda1 * self.gamma,
               "sharpness": math.nan}
        if c.sharpness_iters > 0:
            params = list(twin.parameters())

            def gradient():
                loss = self.run.source.loss(twin(self.x).logits, self.y)
                return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])
            out["sharpness"] = top_hessian_eigenvalue(gradient, params, c.sharpness_iters,
                                                      torch.Generator().manual_seed(c.seed))
        return out
