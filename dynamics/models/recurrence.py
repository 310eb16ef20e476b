"""The three recurrences, each one autograd Function with a hand-written BPTT backward.

Row-vector convention: x_t (B, n_in), h_t (B, H). The input projections x_t W_x + b of all steps
come in precomputed as `xp` (T, B, k·H), one matmul outside; the loops below do only the
per-step recurrence. The backward loop carries d_t = ∂L/∂h_t, the *total* derivative through
all later steps (Pascanu's dC/dh_t), and hands it to `sink.hidden_grad`: the diagnostic costs
nothing because BPTT computes it anyway. Weight gradients are one matmul over all steps after
the loop. Everything the backward needs per step that does not depend on d_t (activation
derivatives, gate products) is computed for all steps at once before the loop, so the loop is a
handful of in-place ops on preallocated buffers.

On the CPU the same loops run compiled (dynamics/models/csrc/recurrence.cpp, through dynamics.models.compiled):
each Function asks `compiled.ops_for` and takes the C++ forward and backward when it gets them,
the Python `states` and `bptt` below otherwise. The steps around the loops are shared.
"""
import warnings

import torch

from . import compiled

# φ applied in place, and φ' written in terms of the output h = φ(a).
ACTIVATIONS = {
    "tanh": (torch.tanh_, lambda h: 1 - h * h),
    "sigmoid": (torch.sigmoid_, lambda h: h * (1 - h)),
    "relu": (torch.relu_, lambda h: (h > 0).to(h.dtype)),
    "linear": (None, None),
}


def with_initial(h0, T):
    """A (T+1, B, H) buffer whose row 0 is the initial state: rows :T are then h_{t-1} without a copy."""
    buf = h0.new_empty(T + 1, *h0.shape)
    buf[0] = h0
    return buf


def materialise(grad, like):
    return torch.zeros_like(like) if grad is None else grad


def outer_sum(a, b):
    """Σ_t a_tᵀ b_t over all steps and sequences: one (n, T·B) @ (T·B, m) matmul."""
    return a.reshape(-1, a.shape[-1]).t() @ b.reshape(-1, b.shape[-1])


class RNNRecurrence(torch.autograd.Function):
    """h_t = φ(xp_t + h_{t-1} W_hh)."""

    @staticmethod
    def forward(ctx, xp, h0, W_hh, activation, sink):
        ops = compiled.ops_for(xp)
        states = ops.rnn_forward(xp, h0, W_hh, activation) if ops else RNNRecurrence.states(xp, h0, W_hh, activation)
        ctx.save_for_backward(states, W_hh)
        ctx.activation, ctx.sink, ctx.ops = activation, sink, ops
        ctx.set_materialize_grads(False)
        return states[1:]

    @staticmethod
    def states(xp, h0, W_hh, activation):
        phi, _ = ACTIVATIONS[activation]
        states = with_initial(h0, xp.shape[0])
        h = h0
        for xp_t, h_t in zip(xp.unbind(0), states[1:].unbind(0)):
            torch.addmm(xp_t, h, W_hh, out=h_t)
            if phi is not None:
                phi(h_t)
            h = h_t
        return states

    @staticmethod
    def backward(ctx, grad_hs):
        states, W_hh = ctx.saved_tensors
        grad_hs = materialise(grad_hs, states[1:])
        bptt = ctx.ops.rnn_backward if ctx.ops else RNNRecurrence.bptt
        d, u = bptt(grad_hs, states, W_hh, ctx.activation)
        ctx.sink.hidden_grad = d
        return u, u[0] @ W_hh.t(), outer_sum(states[:-1], u), None, None

    @staticmethod
    def bptt(grad_hs, states, W_hh, activation):
        """d_t = ∂L/∂h_t (T, B, H) and u_t = ∂L/∂a_t = d_t ⊙ φ'(a_t)."""
        hs = states[1:]
        _, dphi = ACTIVATIONS[activation]
        W_t = W_hh.t()
        d = torch.empty_like(hs)                      # d_t = ∂L/∂h_t, total
        u = d if dphi is None else torch.empty_like(hs)
        slope = None if dphi is None else dphi(hs)
        d[-1] = grad_hs[-1]
        D, U, G = d.unbind(0), u.unbind(0), grad_hs.unbind(0)
        S = slope.unbind(0) if slope is not None else None
        for t in range(hs.shape[0] - 1, -1, -1):
            if S is not None:
                torch.mul(D[t], S[t], out=U[t])
            if t > 0:  # d_{t-1} = g_{t-1} + u_t W_hhᵀ
                torch.addmm(G[t - 1], U[t], W_t, out=D[t - 1])
        return d, u


class GRURecurrence(torch.autograd.Function):
    """z, r = σ(xp_zr + h_{t-1} [W_hz W_hr]);  h̃ = tanh(xp_h + (r ⊙ h_{t-1}) W_hh);
    h_t = (1 − z) ⊙ h_{t-1} + z ⊙ h̃."""

    @staticmethod
    def forward(ctx, xp, h0, W_hzr, W_hh, sink):
        ops = compiled.ops_for(xp)
        zr, rh, cand, states = (ops.gru_forward if ops else GRURecurrence.states)(xp, h0, W_hzr, W_hh)
        ctx.save_for_backward(states, zr, rh, cand, W_hzr, W_hh)
        ctx.sink, ctx.ops = sink, ops
        ctx.mark_non_differentiable(zr)
        ctx.set_materialize_grads(False)
        return states[1:], zr

    @staticmethod
    def states(xp, h0, W_hzr, W_hh):
        """zr = [z | r], r ⊙ h_{t-1}, h̃ (T, B, ·) and the states (T+1, B, H)."""
        T, B, H3 = xp.shape
        H = H3 // 3
        zr = xp.new_empty(T, B, 2 * H)
        rh = xp.new_empty(T, B, H)
        cand = xp.new_empty(T, B, H)
        states = with_initial(h0, T)
        h = h0
        steps = zip(xp[..., :2 * H].unbind(0), xp[..., 2 * H:].unbind(0), zr.unbind(0), zr[..., :H].unbind(0),
                    zr[..., H:].unbind(0), rh.unbind(0), cand.unbind(0), states[1:].unbind(0))
        for xp_zr, xp_h, zr_t, z, r, rh_t, cand_t, h_t in steps:
            torch.addmm(xp_zr, h, W_hzr, out=zr_t).sigmoid_()
            torch.mul(r, h, out=rh_t)
            torch.addmm(xp_h, rh_t, W_hh, out=cand_t).tanh_()
            torch.lerp(h, cand_t, z, out=h_t)  # h + z ⊙ (h̃ − h)
            h = h_t
        return zr, rh, cand, states

    @staticmethod
    def backward(ctx, grad_hs, _grad_zr):
        states, zr, rh, cand, W_hzr, W_hh = ctx.saved_tensors
        grad_hs = materialise(grad_hs, states[1:])
        bptt = ctx.ops.gru_backward if ctx.ops else GRURecurrence.bptt
        d, da_zr, da_cand, dh0 = bptt(grad_hs, states, zr, cand, W_hzr, W_hh)
        ctx.sink.hidden_grad = d
        dxp = torch.cat([da_zr, da_cand], dim=2)
        return dxp, dh0, outer_sum(states[:-1], da_zr), outer_sum(rh, da_cand), None

    @staticmethod
    def bptt(grad_hs, states, zr, cand, W_hzr, W_hh):
        """d_t = ∂L/∂h_t, ∂L/∂a for [z r] and h̃ (a the pre-activations), and ∂L/∂h_0."""
        hs, hp = states[1:], states[:-1]
        T, B, H = hs.shape
        z, r = zr[..., :H], zr[..., H:]
        # Step-independent factors: ∂L/∂a = d_t ⊙ (these).
        k_cand = z * (1 - cand * cand)          # through h̃
        k_z = (cand - hp) * z * (1 - z)         # through z
        k_r = hp * r * (1 - r)                  # through r, times ∂L/∂(r ⊙ h)
        keep = 1 - z                            # direct path h_{t-1} → h_t
        Wzr_t, Whh_t = W_hzr.t(), W_hh.t()
        d = torch.empty_like(hs)
        da_zr = torch.empty_like(zr)
        da_cand = torch.empty_like(hs)
        d_rh = hs.new_empty(B, H)
        d[-1] = grad_hs[-1]
        dh0 = hs.new_empty(B, H)
        D, G, DA_zr, DA_z, DA_r, DA_c = (x.unbind(0) for x in (d, grad_hs, da_zr, da_zr[..., :H], da_zr[..., H:], da_cand))
        K_c, K_z, K_r, Keep, R = (x.unbind(0) for x in (k_cand, k_z, k_r, keep, r))
        for t in range(T - 1, -1, -1):
            torch.mul(D[t], K_c[t], out=DA_c[t])
            torch.mm(DA_c[t], Whh_t, out=d_rh)
            torch.mul(D[t], K_z[t], out=DA_z[t])
            torch.mul(d_rh, K_r[t], out=DA_r[t])
            # d_{t-1} = g_{t-1} + d_t ⊙ (1 − z) + ∂(r⊙h) ⊙ r + [da_z da_r] [W_hz W_hr]ᵀ
            out = torch.addcmul(G[t - 1], D[t], Keep[t], out=D[t - 1]) if t > 0 else torch.mul(D[0], Keep[0], out=dh0)
            out.addcmul_(d_rh, R[t]).addmm_(DA_zr[t], Wzr_t)
        return d, da_zr, da_cand, dh0


class LSTMRecurrence(torch.autograd.Function):
    """[i f o] = σ(·), c̃ = tanh(·) of a_t = x_t W_x + h_{t-1} W_h + b (columns i, f, c, o);
    c_t = f ⊙ c_{t-1} + i ⊙ c̃;  h_t = o ⊙ tanh(c_t).

    Compiled, the forward is our own loop. Otherwise the states h_t come from torch's fused LSTM
    kernel (cuDNN on CUDA, oneDNN on a CPU without a compiler), whose gate order (i, f, g, o) is
    ours: a Python loop of seven ops per step cost 2.5x its time. With every h_{t-1} known, the
    gates of all steps are one matmul, and c_t a one-op-per-step loop.

    Returns h_t and c_t (T, B, H), both differentiable, and the gates (not). The cell states are
    differentiable at every step, not only the last, because an encoder of padded sequences hands
    each sequence's state at its own last step to its decoder; ∂L/∂c_t from outside enters the
    backward loop at step t. Unused (a language model carries c_T detached), it costs nothing."""

    @staticmethod
    def forward(ctx, x, h0, c0, W_x, b, W_h, sink):
        T, B, _ = x.shape
        ops = compiled.ops_for(x)
        if ops is not None:   # one C++ loop: per step the matmul, then all element-wise work in one pass
            gates = torch.addmm(b, x.reshape(T * B, -1), W_x).view(T, B, -1)
            h_all, c_all, tanh_c = ops.lstm_forward(gates, h0, c0, W_h)
        else:
            h_all, c_all, tanh_c, gates = LSTMRecurrence.states(x, h0, c0, W_x, b, W_h)
        ctx.save_for_backward(x, h_all, c_all, tanh_c, gates, W_x, W_h)
        ctx.sink, ctx.ops = sink, ops
        hs, cs = h_all[1:], c_all[1:]
        ctx.mark_non_differentiable(gates)
        ctx.set_materialize_grads(False)
        return hs, cs, gates

    @staticmethod
    def states(x, h0, c0, W_x, b, W_h):
        """h_all, c_all (T+1, B, H), tanh c_t and the activated gates, from torch's fused kernel."""
        T, B, _ = x.shape
        H = W_h.shape[0]
        weights = (W_x.t().contiguous(), W_h.t().contiguous(), b, torch.zeros_like(b))  # torch.nn.LSTM's layout
        with warnings.catch_warnings():
            # cuDNN copies separate weight tensors into one buffer, and says so at every call
            warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous")
            hs, _, _ = torch.lstm(x, (h0[None], c0[None]), weights, True, 1, 0.0, False, False, False)
        h_all = torch.cat([h0[None], hs])
        gates = torch.addmm(b, x.reshape(T * B, -1), W_x).view(T, B, 4 * H)
        gates.view(T * B, 4 * H).addmm_(h_all[:-1].reshape(T * B, H), W_h)
        gates[..., :2 * H].sigmoid_()
        gates[..., 2 * H:3 * H].tanh_()
        gates[..., 3 * H:].sigmoid_()
        i, f, cc = gates[..., :H], gates[..., H:2 * H], gates[..., 2 * H:3 * H]
        c_all = with_initial(c0, T)
        c = c0
        for ic_t, f_t, c_t in zip((i * cc).unbind(0), f.unbind(0), c_all[1:].unbind(0)):
            torch.addcmul(ic_t, f_t, c, out=c_t)            # c_t = f ⊙ c_{t-1} + i ⊙ c̃
            c = c_t
        return h_all, c_all, torch.tanh(c_all[1:]), gates

    @staticmethod
    def backward(ctx, grad_hs, grad_cs, _grad_gates):
        x, h_all, c_all, tanh_c, gates, W_x, W_h = ctx.saved_tensors
        grad_hs = materialise(grad_hs, h_all[1:])
        bptt = ctx.ops.lstm_backward if ctx.ops is not None else LSTMRecurrence.bptt
        d, da, dh0, dc0 = bptt(grad_hs, gates, c_all, tanh_c, W_h, grad_cs)
        ctx.sink.hidden_grad = d
        T, B, H4 = da.shape
        da2 = da.view(T * B, H4)
        dx = da2.mm(W_x.t()).view_as(x) if ctx.needs_input_grad[0] else None   # data needs none
        return dx, dh0, dc0, outer_sum(x, da), da2.sum(0), outer_sum(h_all[:-1], da), None

    @staticmethod
    def bptt(grad_hs, gates, c_all, tanh_c, W_h, grad_cs=None):
        """The backward loop: d_t = ∂L/∂h_t (T, B, H), ∂L/∂a_t (T, B, 4H), ∂L/∂h_0, ∂L/∂c_0.
        `grad_cs` (T, B, H) or None: ∂L/∂c_t from outside the recurrence."""
        T, B, H = grad_hs.shape
        i, f, cc, o = (gates[..., k * H:(k + 1) * H] for k in range(4))
        # ∂L/∂a = ∂L/∂c_t ⊙ k for the i, f, c̃ columns and ∂L/∂h_t ⊙ k for the o column.
        k = torch.empty_like(gates)
        torch.addcmul(gates, gates, gates, value=-1, out=k)                # σ(1 − σ) (c̃ overwritten below)
        k[..., :H].mul_(cc)
        k[..., H:2 * H].mul_(c_all[:-1])
        torch.addcmul(i, i, cc * cc, value=-1, out=k[..., 2 * H:3 * H])   # i ⊙ (1 − c̃²)
        k[..., 3 * H:].mul_(tanh_c)
        k_c = torch.addcmul(o, o, tanh_c * tanh_c, value=-1)              # ∂c_t/∂h_t path: o ⊙ (1 − tanh² c)
        W_t = W_h.t()
        d = torch.empty_like(grad_hs)
        da = torch.empty_like(gates)
        dc = grad_hs.new_empty(B, H)
        dc_carry = torch.zeros_like(dc)     # ∂L/∂c_t through c_{t+1}: dc_{t+1} ⊙ f_{t+1}
        dh0 = grad_hs.new_empty(B, H)
        d[-1] = grad_hs[-1]
        dc_wide = dc.unsqueeze(1)
        D, G, DA, DA4, DA_o, K4, K_o, K_c, Fg = (t.unbind(0) for t in (
            d, grad_hs, da, da.view(T, B, 4, H), da[..., 3 * H:], k.view(T, B, 4, H), k[..., 3 * H:], k_c, f))
        for t in range(T - 1, -1, -1):
            torch.addcmul(dc_carry, D[t], K_c[t], out=dc)       # ∂L/∂c_t
            if grad_cs is not None:
                dc.add_(grad_cs[t])
            torch.mul(K4[t], dc_wide, out=DA4[t])              # i, f, c̃ (contiguous, so no copy) ...
            torch.mul(D[t], K_o[t], out=DA_o[t])               # ... then o in place
            torch.mul(dc, Fg[t], out=dc_carry)
            if t > 0:   # d_{t-1} = g_{t-1} + ∂L/∂a_t W_hᵀ
                torch.addmm(G[t - 1], DA[t], W_t, out=D[t - 1])
            else:
                torch.mm(DA[0], W_t, out=dh0)
        return d, da, dh0, dc_carry


class TorchGRURecurrence(torch.autograd.Function):
    """The GRU in torch.nn.GRU's form (columns r, z, n), with the reset gate applied after the
    recurrent matmul and a recurrent bias b_h:
        gh = h_{t-1} W_h + b_h;  [r z] = σ(xp_rz + gh_rz);  n = tanh(xp_n + r ⊙ gh_n);
        h_t = (1 − z) ⊙ n + z ⊙ h_{t-1}      (z is the share *kept*, the opposite of GRURecurrence's).
    Returns h_t (T, B, H) and the gates [r z] (T, B, 2H, not differentiable)."""

    @staticmethod
    def forward(ctx, xp, h0, W_h, b_h, sink):
        T, B, H3 = xp.shape
        H = H3 // 3
        states = with_initial(h0, T)
        rz, n, gh_n = xp.new_empty(T, B, 2 * H), xp.new_empty(T, B, H), xp.new_empty(T, B, H)
        gh = xp.new_empty(B, H3)
        h = h0
        for t in range(T):
            torch.addmm(b_h, h, W_h, out=gh)
            torch.add(xp[t, :, :2 * H], gh[:, :2 * H], out=rz[t]).sigmoid_()
            gh_n[t] = gh[:, 2 * H:]
            torch.addcmul(xp[t, :, 2 * H:], rz[t, :, :H], gh_n[t], out=n[t]).tanh_()
            torch.lerp(n[t], h, rz[t, :, H:], out=states[t + 1])   # n + z ⊙ (h − n)
            h = states[t + 1]
        ctx.save_for_backward(states, rz, n, gh_n, W_h)
        ctx.sink = sink
        ctx.mark_non_differentiable(rz)
        ctx.set_materialize_grads(False)
        return states[1:], rz

    @staticmethod
    def backward(ctx, grad_hs, _grad_rz):
        states, rz, n, gh_n, W_h = ctx.saved_tensors
        hs, hp = states[1:], states[:-1]
        grad_hs = materialise(grad_hs, hs)
        T, B, H = hs.shape
        r, z = rz[..., :H], rz[..., H:]
        # Step-independent factors: ∂L/∂a = d_t ⊙ (these), a the pre-activations.
        k_n = (1 - z) * (1 - n * n)           # through n
        k_z = (hp - n) * z * (1 - z)          # through z
        k_r = gh_n * r * (1 - r)              # through r, times ∂L/∂a_n
        d = torch.empty_like(hs)              # d_t = ∂L/∂h_t, total
        dxp = hs.new_empty(T, B, 3 * H)       # ∂L/∂a: [r z n]
        dgh = hs.new_empty(T, B, 3 * H)       # ∂L/∂gh: [r z] as dxp, n times r
        dh0 = hs.new_empty(B, H)
        d[-1] = grad_hs[-1]
        W_t = W_h.t()
        for t in range(T - 1, -1, -1):
            torch.mul(d[t], k_n[t], out=dxp[t, :, 2 * H:])
            torch.mul(dxp[t, :, 2 * H:], k_r[t], out=dxp[t, :, :H])
            torch.mul(d[t], k_z[t], out=dxp[t, :, H:2 * H])
            dgh[t, :, :2 * H] = dxp[t, :, :2 * H]
            torch.mul(dxp[t, :, 2 * H:], r[t], out=dgh[t, :, 2 * H:])
            # d_{t-1} = g_{t-1} + d_t ⊙ z + ∂L/∂gh W_hᵀ
            out = torch.addcmul(grad_hs[t - 1], d[t], z[t], out=d[t - 1]) if t > 0 else torch.mul(d[0], z[0], out=dh0)
            out.addmm_(dgh[t], W_t)
        ctx.sink.hidden_grad = d
        return dxp, dh0, outer_sum(hp, dgh), dgh.sum((0, 1)), None
