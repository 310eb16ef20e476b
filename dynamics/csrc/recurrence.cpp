// The per-step loops of dynamics/recurrence.py, compiled: the same equations, the same row-vector
// layout (gate blocks [i f c o] for the LSTM, [z r h] for the GRU), for float32 and float64 CPU
// tensors. Each step is its recurrent matmul (ATen, i.e. the same BLAS) followed by one vectorised
// pass over the step's element-wise work; what the Python loop dispatched as five to seven tensor
// ops per step is one C++ loop here. Built on first use by dynamics/compiled.py.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

using at::Tensor;
using at::vec::Vectorized;

namespace {

template <typename T>
inline Vectorized<T> sigmoid(const Vectorized<T>& a) {
  const Vectorized<T> one(T(1));
  return one / (one + a.neg().exp());
}

// Calls body(j, n) for the vector-wide chunks [j, j + n) of 0..len; loads and stores take n.
template <typename T, typename F>
inline void chunks(int64_t len, const F& body) {
  constexpr int64_t V = Vectorized<T>::size();
  for (int64_t j = 0; j < len; j += V) body(j, std::min<int64_t>(V, len - j));
}

template <typename T>
inline Vectorized<T> load(const T* p, int64_t n) {
  return Vectorized<T>::loadu(p, n);
}

// Rows of a step are split over threads only when a step is large enough to pay for it.
inline int64_t grain(int64_t row_width) { return std::max<int64_t>(1, 32768 / row_width); }

// ---------------------------------------------------------------------------------------------
// LSTM. a_t = xp_t + h_{t-1} W_h;  [i f o] = σ(·), c̃ = tanh(·);  c_t = f ⊙ c_{t-1} + i ⊙ c̃;
// h_t = o ⊙ tanh(c_t).  `gates` (T, B, 4H) comes in holding xp = x W_x + b and leaves holding
// the activated [i f c̃ o].  Returns h_all, c_all (T+1, B, H: row 0 the initial state) and tanh c.

template <typename T>
void lstm_cell(T* a, const T* c_prev, T* c, T* tc, T* h, int64_t H) {
  chunks<T>(H, [&](int64_t j, int64_t n) {
    auto i = sigmoid(load(a + j, n)), f = sigmoid(load(a + H + j, n));
    auto g = load(a + 2 * H + j, n).tanh(), o = sigmoid(load(a + 3 * H + j, n));
    auto c_new = f * load(c_prev + j, n) + i * g;
    auto tanh_c = c_new.tanh();
    i.store(a + j, n), f.store(a + H + j, n), g.store(a + 2 * H + j, n), o.store(a + 3 * H + j, n);
    c_new.store(c + j, n), tanh_c.store(tc + j, n), (o * tanh_c).store(h + j, n);
  });
}

std::tuple<Tensor, Tensor, Tensor> lstm_forward(Tensor gates, Tensor h0, Tensor c0, Tensor W_h) {
  c10::impl::ExcludeDispatchKeyGuard no_autograd(c10::autograd_dispatch_keyset);
  const int64_t T = gates.size(0), B = gates.size(1), H = h0.size(1);
  TORCH_CHECK(gates.is_contiguous() && gates.size(2) == 4 * H, "lstm_forward: gates (T, B, 4H) contiguous");
  auto h_all = gates.new_empty({T + 1, B, H}), c_all = gates.new_empty({T + 1, B, H});
  auto tanh_c = gates.new_empty({T, B, H});
  h_all[0].copy_(h0), c_all[0].copy_(c0);
  auto A = gates.unbind(0), Hs = h_all.unbind(0);
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "lstm_forward", [&] {
    for (int64_t t = 0; t < T; ++t) {
      A[t].addmm_(Hs[t], W_h);
      scalar_t *a = A[t].data_ptr<scalar_t>(), *h = Hs[t + 1].data_ptr<scalar_t>();
      scalar_t *cp = c_all.data_ptr<scalar_t>() + t * B * H, *c = cp + B * H;
      scalar_t* tc = tanh_c.data_ptr<scalar_t>() + t * B * H;
      at::parallel_for(0, B, grain(4 * H), [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b)
          lstm_cell(a + b * 4 * H, cp + b * H, c + b * H, tc + b * H, h + b * H, H);
      });
    }
  });
  return {h_all, c_all, tanh_c};
}

// Backward: d_t = ∂L/∂h_t (total, through all later steps), with d_{T-1} = g_{T-1} and
// d_{t-1} = g_{t-1} + ∂L/∂a_t W_hᵀ.  ∂L/∂c_t = ∂L/∂c_t|_{t+1} + d_t ⊙ o ⊙ (1 − tanh² c_t);
// ∂L/∂a_t for [i f c̃ o]: ∂L/∂c_t ⊙ [c̃ i(1−i), c_{t-1} f(1−f), i (1−c̃²)], d_t ⊙ tanh c_t o(1−o);
// ∂L/∂c_{t-1}|_t = ∂L/∂c_t ⊙ f.  Returns d (T, B, H), ∂L/∂a (T, B, 4H), ∂L/∂h_0, ∂L/∂c_0.

template <typename T>
void lstm_cell_backward(const T* d, const T* gate, const T* c_prev, const T* tc, T* dc_carry, T* da,
                        int64_t H) {
  const Vectorized<T> one(T(1));
  chunks<T>(H, [&](int64_t j, int64_t n) {
    auto i = load(gate + j, n), f = load(gate + H + j, n);
    auto g = load(gate + 2 * H + j, n), o = load(gate + 3 * H + j, n);
    auto dh = load(d + j, n), tanh_c = load(tc + j, n);
    auto dc = load(dc_carry + j, n) + dh * o * (one - tanh_c * tanh_c);
    (dc * g * (i * (one - i))).store(da + j, n);
    (dc * load(c_prev + j, n) * (f * (one - f))).store(da + H + j, n);
    (dc * i * (one - g * g)).store(da + 2 * H + j, n);
    (dh * tanh_c * (o * (one - o))).store(da + 3 * H + j, n);
    (dc * f).store(dc_carry + j, n);
  });
}

std::tuple<Tensor, Tensor, Tensor, Tensor> lstm_backward(Tensor grad_hs, Tensor gates, Tensor c_all,
                                                          Tensor tanh_c, Tensor W_h) {
  c10::impl::ExcludeDispatchKeyGuard no_autograd(c10::autograd_dispatch_keyset);
  const int64_t T = grad_hs.size(0), B = grad_hs.size(1), H = grad_hs.size(2);
  grad_hs = grad_hs.contiguous();
  auto d = at::empty_like(grad_hs), da = at::empty_like(gates);
  auto dh0 = grad_hs.new_empty({B, H}), dc_carry = at::zeros_like(dh0);
  d[T - 1].copy_(grad_hs[T - 1]);
  auto W_t = W_h.t();
  auto D = d.unbind(0), G = grad_hs.unbind(0), DA = da.unbind(0);
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "lstm_backward", [&] {
    scalar_t* carry = dc_carry.data_ptr<scalar_t>();
    for (int64_t t = T - 1; t >= 0; --t) {
      const scalar_t *dt = D[t].data_ptr<scalar_t>(), *gt = gates.data_ptr<scalar_t>() + t * B * 4 * H;
      const scalar_t *cp = c_all.data_ptr<scalar_t>() + t * B * H, *tc = tanh_c.data_ptr<scalar_t>() + t * B * H;
      scalar_t* dat = DA[t].data_ptr<scalar_t>();
      at::parallel_for(0, B, grain(4 * H), [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b)
          lstm_cell_backward(dt + b * H, gt + b * 4 * H, cp + b * H, tc + b * H, carry + b * H, dat + b * 4 * H, H);
      });
      if (t > 0)
        at::addmm_out(D[t - 1], G[t - 1], DA[t], W_t);
      else
        at::mm_out(dh0, DA[0], W_t);
    }
  });
  return {d, da, dh0, dc_carry};
}

}  // namespace

TORCH_LIBRARY(dynamics_recurrence, m) {
  m.def("lstm_forward(Tensor(a!) gates, Tensor h0, Tensor c0, Tensor W_h) -> (Tensor, Tensor, Tensor)", &lstm_forward);
  m.def("lstm_backward(Tensor grad_hs, Tensor gates, Tensor c_all, Tensor tanh_c, Tensor W_h)"
        " -> (Tensor, Tensor, Tensor, Tensor)", &lstm_backward);
}
