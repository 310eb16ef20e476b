"""The LayerNorm LSTM of Ba, Kiros & Hinton (2016), with a hand-written BPTT backward.

    a_t = LN_x(x_t W_x) + LN_h(h_{t-1} W_h) + b        (columns i, f, c, o, as the LSTM)
    [i f o] = σ(·), c̃ = tanh(·) of a_t;  c_t = f ⊙ c_{t-1} + i ⊙ c̃;  h_t = o ⊙ tanh(LN_c(c_t))

LN(z) = γ ⊙ (z − mean z)/std z + β over the features of each row, with its own gain γ and bias
β at each of its three places (LN_x and LN_h over all 4H columns together, as in the paper).
x W_x of all steps is one matmul outside; `LNLSTMRecurrence` takes it, applies LN_x, runs the
per-step recurrence and carries d_t = ∂L/∂h_t, the total derivative, into `sink.hidden_grad` as
the other cells do (dynamics/models/recurrence.py). On the CPU the loops run compiled
(dynamics/models/csrc/recurrence.cpp, through dynamics.models.compiled), LN_x inside each step's
pass; the Python loops below are the fallback and the reference, with LN_x as torch's layer norm
of all steps at once.
"""
import torch
import torch.nn.functional as F
from torch import nn

from . import compiled
from .recurrence import materialise, outer_sum, with_initial

EPS = 1e-5
LAYER_NORMS = ("x", "h", "c")   # where the layer norms sit: gain g_<k>, bias beta_<k>


def normalise(z):
    """(z − mean)/std over the last axis, and 1/std (…, 1) for the backward."""
    mu = z.mean(dim=-1, keepdim=True)
    inv = torch.rsqrt(z.var(dim=-1, unbiased=False, keepdim=True) + EPS)
    return (z - mu) * inv, inv


def normalise_backward(dn, n, inv):
    """∂L/∂z from ∂L/∂n for n = normalise(z): (dn − mean dn − n ⊙ mean(dn ⊙ n)) / std."""
    return (dn - dn.mean(dim=-1, keepdim=True) - n * (dn * n).mean(dim=-1, keepdim=True)) * inv


def summed(v):
    """Σ over steps and sequences: (T, B, n) → (n,)."""
    return v.reshape(-1, v.shape[-1]).sum(0)


class LNLSTMRecurrence(torch.autograd.Function):
    """The recurrence given zx_t = x_t W_x for every step: returns h (T, B, H), c and the gates
    (T, B, 4H: i, f, c̃, o after their nonlinearities; non-differentiable). The cell states are
    differentiable, so that a decoder stepping one token at a time carries c_t.

    On the CPU the loops run compiled (lnlstm_forward and lnlstm_backward of
    dynamics/models/csrc/recurrence.cpp) when `compiled.ops_for` gives them, else `states` and
    `bptt` below; both hand the same tensors to the shared steps around them. Compiled, LN_x is
    applied row by row within each step's pass, so that neither LN_x(x W_x) nor ∂L/∂a_t is ever
    a (T, B, 4H) tensor: on the CPU the passes over such tensors, more than the arithmetic, set
    the time of a step."""

    @staticmethod
    def forward(ctx, zx, h0, c0, W_h, g_x, beta_x, b, g_h, beta_h, g_c, beta_c, sink):
        ops = compiled.ops_for(zx)
        run = ops.lnlstm_forward if ops is not None else LNLSTMRecurrence.states
        states, cells, gates, *normalised = run(zx, h0, c0, W_h, g_x, beta_x, b, g_h, beta_h, g_c, beta_c)
        ctx.save_for_backward(zx, states, cells, gates, *normalised, W_h, g_x, beta_x, g_h, g_c)
        ctx.sink, ctx.ops = sink, ops
        ctx.mark_non_differentiable(gates)
        ctx.set_materialize_grads(False)
        return states[1:], cells[1:], gates

    @staticmethod
    def states(zx, h0, c0, W_h, g_x, beta_x, b, g_h, beta_h, g_c, beta_c):
        """h_all, c_all (T+1, B, H), the activated gates, then for the backward mean and 1/std of
        LN_x (T, B, 1), n_h and 1/std of LN_h, n_c and 1/std of LN_c, and tanh(LN_c(c_t))."""
        T, B, H4 = zx.shape
        H = H4 // 4
        xp, mean_x, inv_x = torch.native_layer_norm(zx, (H4,), g_x, beta_x, EPS)   # LN_x of all steps
        xp.add_(b)
        states, cells = with_initial(h0, T), with_initial(c0, T)
        gates = torch.empty_like(xp)
        for t in range(T):   # torch's fused layer norm here; what the backward needs comes after
            a = xp[t] + F.layer_norm(states[t] @ W_h, (H4,), g_h, beta_h, EPS)
            torch.sigmoid(a, out=gates[t])
            torch.tanh(a[:, 2 * H:3 * H], out=gates[t, :, 2 * H:3 * H])
            i, f, cc, o = gates[t].split(H, dim=1)
            torch.addcmul(i * cc, f, cells[t], out=cells[t + 1])       # c_t = f ⊙ c_{t-1} + i ⊙ c̃
            torch.mul(o, F.layer_norm(cells[t + 1], (H,), g_c, beta_c, EPS).tanh_(), out=states[t + 1])
        # the normalised values and 1/std of all steps at once, for the backward
        n_h, inv_h = normalise(states[:-1] @ W_h)
        n_c, inv_c = normalise(cells[1:])
        tanh_c = torch.tanh(torch.addcmul(beta_c, n_c, g_c))   # tanh(LN_c(c_t))
        return states, cells, gates, mean_x, inv_x, n_h, inv_h, n_c, inv_c, tanh_c

    @staticmethod
    def backward(ctx, grad_hs, grad_cs, _grad_gates):
        zx, states, cells, gates, *normalised, W_h, g_x, beta_x, g_h, g_c = ctx.saved_tensors
        grad_hs = materialise(grad_hs, states[1:])
        args = (grad_hs, zx, gates, cells, *normalised, W_h, g_x, g_h, g_c, grad_cs)
        if ctx.ops is not None:
            d, dzx, dz, dh0, dc0, *layer_norm_grads = ctx.ops.lnlstm_backward(*args)
        else:
            d, dzx, dz, dh0, dc0, *layer_norm_grads = LNLSTMRecurrence.bptt(*args, beta_x)
        ctx.sink.hidden_grad = d
        return (dzx, dh0, dc0, outer_sum(states[:-1], dz), *layer_norm_grads, None)

    @staticmethod
    def bptt(grad_hs, zx, gates, cells, mean_x, inv_x, n_h, inv_h, n_c, inv_c, tanh_c, W_h, g_x, g_h, g_c, grad_cs,
             beta_x):
        """The backward loop: d_t = ∂L/∂h_t (T, B, H), ∂L/∂(x_t W_x) and ∂L/∂(h_{t-1} W_h) (T, B, 4H),
        ∂L/∂h_0, ∂L/∂c_0, and the gradients of g_x, beta_x, b, g_h, beta_h, g_c, beta_c.
        `grad_cs` (T, B, H) or None: ∂L/∂c_t from outside; `beta_x` only for torch's layer-norm
        backward, which takes it."""
        T, B, H = grad_hs.shape
        i, f, cc, o = gates.split(H, dim=2)
        # Step-independent factors, for all steps at once.
        k_chat = o * (1 - tanh_c * tanh_c)                      # ∂h/∂LN_c(c), times d_t
        k_o = tanh_c * o * (1 - o)                               # ∂h/∂a_o, times d_t
        k_i, k_f, k_cc = cc * i * (1 - i), cells[:-1] * f * (1 - f), i * (1 - cc * cc)  # ∂c_t/∂a, times dc
        d = torch.empty_like(grad_hs)                            # d_t = ∂L/∂h_t, total
        da = torch.empty_like(gates)                             # ∂L/∂a_t
        dchat = torch.empty_like(grad_hs)                        # ∂L/∂LN_c(c_t)
        dz = torch.empty_like(gates)                             # ∂L/∂(h_{t-1} W_h)
        dc_carry = torch.zeros_like(grad_hs[0])                  # ∂L/∂c_t through c_{t+1}
        dh0 = None
        d[-1] = grad_hs[-1]
        W_t = W_h.t()
        for t in range(T - 1, -1, -1):
            dchat[t] = d[t] * k_chat[t]
            dc = dc_carry + normalise_backward(dchat[t] * g_c, n_c[t], inv_c[t])
            if grad_cs is not None:   # ∂L/∂c_t from outside (a decoder's carried state)
                dc = dc + grad_cs[t]
            da[t] = torch.cat([dc * k_i[t], dc * k_f[t], dc * k_cc[t], d[t] * k_o[t]], dim=1)
            dc_carry = dc * f[t]
            dz[t] = normalise_backward(da[t] * g_h, n_h[t], inv_h[t])
            if t > 0:   # d_{t-1} = g_{t-1} + ∂L/∂z_t W_hᵀ
                d[t - 1] = torch.addmm(grad_hs[t - 1], dz[t], W_t)
            else:
                dh0 = dz[0] @ W_t
        # LN_x's backward for all steps, as autograd would run it for torch's layer norm
        dzx, dg_x, dbeta_x = torch.ops.aten.native_layer_norm_backward(
            da, zx, (4 * H,), mean_x, inv_x, g_x, beta_x, [True, True, True])
        return (d, dzx, dz, dh0, dc_carry, dg_x, dbeta_x, summed(da), summed(da * n_h), summed(da),
                summed(dchat * n_c), summed(dchat))


def add_layer_norms(layer, n_hidden):
    """The layer norms' gains (1) and biases (0) as parameters of a Recurrent layer."""
    for k in LAYER_NORMS:
        width = n_hidden if k == "c" else 4 * n_hidden
        setattr(layer, f"g_{k}", nn.Parameter(torch.ones(width)))
        setattr(layer, f"beta_{k}", nn.Parameter(torch.zeros(width)))


def layer_norm_weights(layer):
    """The gains and biases by name (views), for Recurrent.weights()."""
    return {f"{p}_{k}": getattr(layer, f"{p}_{k}").detach() for k in LAYER_NORMS for p in ("g", "beta")}


def states(layer, x, state=None):
    """One LN-LSTM layer (dynamics.models.recurrent.Recurrent.states with cell "lnlstm"): x (T, B, n_in) →
    the state sequences (h, c), each (T, B, H) and differentiable, and the gates {i, f, o}."""
    T, B, _ = x.shape
    H = layer.n_hidden
    if state is None:
        zero = x.new_zeros(B, H)
        state = (zero, zero)
    hs, cs, g = LNLSTMRecurrence.apply(x @ layer.W_x, state[0], state[1], layer.W_h, layer.g_x, layer.beta_x,
                                       layer.b, layer.g_h, layer.beta_h, layer.g_c, layer.beta_c, layer)
    gates = {name: g[..., j * H:(j + 1) * H] for j, name in enumerate("ifco") if name != "c"}
    return (hs, cs), gates
