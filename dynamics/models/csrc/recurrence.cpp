// The per-step loops of dynamics/models/recurrence.py and models/lnlstm.py, compiled: the same
// equations, the same row-vector layout (gate blocks [i f c o] for the (LayerNorm) LSTM, [z r h]
// for the GRU), for float32 and float64 CPU tensors. Each step is its recurrent matmul (ATen,
// i.e. the same BLAS) followed by one vectorised pass over the step's element-wise work; what the
// Python loop dispatched as five to seven tensor ops per step is one C++ loop here. Built on
// first use by dynamics/models/compiled.py.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <utility>
#include <vector>

#include "ops.h"

using at::vec::Vectorized;

namespace dynamics {

// e^x, σ and tanh. For float64 these are ATen's (SLEEF, within 1 ulp). For float32 SLEEF's exp and
// tanh, out-of-line calls, cost more than the rest of an LSTM step; the inline versions below keep
// the relative error below 2⁻²² (measured over ±100: exp 0.7, tanh 1.6, σ 1.3 × 2⁻²³, against
// 0.5, 0.5, 1.2 × 2⁻²³ for torch's), well inside the rounding of the step's matmul.
template <typename T>
inline Vectorized<T> exp(const Vectorized<T>& x) {
  return x.exp();
}

template <typename T>
inline Vectorized<T> tanh(const Vectorized<T>& x) {
  return x.tanh();
}

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
// 2^n for whole-numbered n in [-126, 127], by writing the exponent bits.
inline Vectorized<float> pow2(const Vectorized<float>& n) {
#if defined(CPU_CAPABILITY_AVX512)
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23));
#else
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
#endif
}

// e^x = 2^n e^r with n = round(x / ln 2) and r = x − n ln 2 (ln 2 in two parts, so r is exact to
// float rounding), |r| ≤ ln 2 / 2, e^r by its Taylor series through r^7 (truncation < 1e-8).
// x is clamped to [−86, 89]: above, the result overflows to inf as it should; below, it stays at
// e^−86 ≈ 4e−38 instead of going to 0, which only ever meets "1 +" here. NaN stays NaN.
template <>
inline Vectorized<float> exp(const Vectorized<float>& x) {
  using V = Vectorized<float>;
  auto xc = at::vec::minimum(at::vec::maximum(x, V(-86.f)), V(89.f));
  auto n = (xc * V(1.44269504088896341f)).round();
  auto r = at::vec::fmadd(n, V(-0.693359375f), xc);
  r = at::vec::fmadd(n, V(2.12194440e-4f), r);
  auto p = V(1.f / 5040.f);
  for (float c : {1.f / 720.f, 1.f / 120.f, 1.f / 24.f, 1.f / 6.f, 0.5f, 1.f, 1.f}) p = at::vec::fmadd(p, r, V(c));
  return p * pow2(n - V(1.f)) * V(2.f);   // 2^(n−1)·2: n = 128 still gives a finite 2^127 first
}

// |x| < 0.5: the Taylor series through x^15 (truncation < 1e-8 relative); else
// ±(1 − 2 / (1 + e^{2|x|})), without cancellation since |tanh x| > 0.46 there.
template <>
inline Vectorized<float> tanh(const Vectorized<float>& x) {
  using V = Vectorized<float>;
  const V one(1.f), two(2.f), zero(0.f), half(0.5f);
  auto ax = x.abs();
  auto far = one - two / (one + exp(ax + ax));
  far = V::blendv(far, far.neg(), x < zero);
  auto x2 = x * x;
  auto p = V(-929569.f / 638512875.f);
  for (float c : {21844.f / 6081075.f, -1382.f / 155925.f, 62.f / 2835.f, -17.f / 315.f, 2.f / 15.f, -1.f / 3.f})
    p = at::vec::fmadd(p, x2, V(c));
  auto near = at::vec::fmadd(x * x2, p, x);
  return V::blendv(far, near, ax < half);
}
#endif

template <typename T>
inline Vectorized<T> sigmoid(const Vectorized<T>& a) {
  const Vectorized<T> one(T(1));
  return one / (one + exp(a.neg()));
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

// Calls row(b) for every row b of a step, the rows split over threads in blocks of at least 4096
// values (a 2×256 LSTM language model's 32 rows of 4H = 1024 in eight blocks), so that a second
// thread has its share and a small step stays on one. Rows are independent: the same numbers.
template <typename F>
inline void rows(int64_t B, int64_t row_width, const F& row) {
  at::parallel_for(0, B, std::max<int64_t>(1, 4096 / row_width), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) row(b);
  });
}

// ATen ops called from the loops skip the autograd layer: these are the insides of a Function.
#define NO_AUTOGRAD c10::impl::ExcludeDispatchKeyGuard no_autograd(c10::autograd_dispatch_keyset)

// ---------------------------------------------------------------------------------------------
// RNN. h_t = φ(xp_t + h_{t-1} W_hh).  Backward: u_t = d_t ⊙ φ'(a_t), φ' written through h_t,
// d_{t-1} = g_{t-1} + u_t W_hhᵀ.  φ: tanh, sigmoid, relu or linear.

enum class Phi { tanh, sigmoid, relu, linear };

Phi phi_of(c10::string_view name) {
  if (name == "tanh") return Phi::tanh;
  if (name == "sigmoid") return Phi::sigmoid;
  if (name == "relu") return Phi::relu;
  TORCH_CHECK(name == "linear", "unknown activation ", name);
  return Phi::linear;
}

template <typename T>
inline Vectorized<T> phi(Phi f, const Vectorized<T>& a) {
  switch (f) {
    case Phi::tanh: return tanh(a);
    case Phi::sigmoid: return sigmoid(a);
    case Phi::relu: return at::vec::maximum(a, Vectorized<T>(T(0)));
    default: return a;
  }
}

template <typename T>
inline Vectorized<T> phi_slope(Phi f, const Vectorized<T>& h) {
  const Vectorized<T> one(T(1)), zero(T(0));
  switch (f) {
    case Phi::tanh: return one - h * h;
    case Phi::sigmoid: return h * (one - h);
    case Phi::relu: return Vectorized<T>::blendv(zero, one, h > zero);
    default: return one;
  }
}

Tensor rnn_forward(Tensor xp, Tensor h0, Tensor W_hh, c10::string_view activation) {
  NO_AUTOGRAD;
  const int64_t T = xp.size(0), B = xp.size(1), H = xp.size(2);
  const Phi f = phi_of(activation);
  auto states = xp.new_empty({T + 1, B, H});
  states[0].copy_(h0);
  auto X = xp.unbind(0), S = states.unbind(0);
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "rnn_forward", [&] {
    for (int64_t t = 0; t < T; ++t) {
      at::addmm_out(S[t + 1], X[t], S[t], W_hh);
      if (f == Phi::linear) continue;
      scalar_t* h = S[t + 1].data_ptr<scalar_t>();
      rows(B, H, [&](int64_t b) {
        chunks<scalar_t>(H, [&](int64_t j, int64_t n) { phi(f, load(h + b * H + j, n)).store(h + b * H + j, n); });
      });
    }
  });
  return states;
}

// Returns d (T, B, H) and u = ∂L/∂a (T, B, H).
std::tuple<Tensor, Tensor> rnn_backward(Tensor grad_hs, Tensor states, Tensor W_hh, c10::string_view activation) {
  NO_AUTOGRAD;
  grad_hs = grad_hs.contiguous();
  const int64_t T = grad_hs.size(0), B = grad_hs.size(1), H = grad_hs.size(2);
  const Phi f = phi_of(activation);
  auto d = at::empty_like(grad_hs), u = at::empty_like(grad_hs);
  d[T - 1].copy_(grad_hs[T - 1]);
  auto W_t = W_hh.t();
  auto D = d.unbind(0), G = grad_hs.unbind(0), U = u.unbind(0);
  AT_DISPATCH_FLOATING_TYPES(grad_hs.scalar_type(), "rnn_backward", [&] {
    for (int64_t t = T - 1; t >= 0; --t) {
      const scalar_t *dt = D[t].data_ptr<scalar_t>(), *h = states.data_ptr<scalar_t>() + (t + 1) * B * H;
      scalar_t* ut = U[t].data_ptr<scalar_t>();
      rows(B, H, [&](int64_t b) {
        const int64_t o = b * H;
        chunks<scalar_t>(H, [&](int64_t j, int64_t n) {
          (load(dt + o + j, n) * phi_slope(f, load(h + o + j, n))).store(ut + o + j, n);
        });
      });
      if (t > 0) at::addmm_out(D[t - 1], G[t - 1], U[t], W_t);
    }
  });
  return {d, u};
}

// ---------------------------------------------------------------------------------------------
// GRU. [z r] = σ(xp_zr + h_{t-1} [W_hz W_hr]);  h̃ = tanh(xp_h + (r ⊙ h_{t-1}) W_hh);
// h_t = h_{t-1} + z ⊙ (h̃ − h_{t-1}).  Returns zr (T, B, 2H), r ⊙ h_{t-1}, h̃ and the states (T+1).

std::tuple<Tensor, Tensor, Tensor, Tensor> gru_forward(Tensor xp, Tensor h0, Tensor W_hzr, Tensor W_hh) {
  NO_AUTOGRAD;
  const int64_t T = xp.size(0), B = xp.size(1), H = h0.size(1);
  auto zr = xp.new_empty({T, B, 2 * H}), rh = xp.new_empty({T, B, H}), cand = xp.new_empty({T, B, H});
  auto states = xp.new_empty({T + 1, B, H});
  states[0].copy_(h0);
  auto XZR = xp.narrow(2, 0, 2 * H).unbind(0), XH = xp.narrow(2, 2 * H, H).unbind(0);
  auto ZR = zr.unbind(0), RH = rh.unbind(0), C = cand.unbind(0), S = states.unbind(0);
  AT_DISPATCH_FLOATING_TYPES(xp.scalar_type(), "gru_forward", [&] {
    for (int64_t t = 0; t < T; ++t) {
      at::addmm_out(ZR[t], XZR[t], S[t], W_hzr);
      scalar_t *g = ZR[t].data_ptr<scalar_t>(), *rht = RH[t].data_ptr<scalar_t>();
      scalar_t *hp = S[t].data_ptr<scalar_t>(), *h = S[t + 1].data_ptr<scalar_t>(), *c = C[t].data_ptr<scalar_t>();
      rows(B, 2 * H, [&](int64_t b) {
        chunks<scalar_t>(2 * H, [&](int64_t j, int64_t n) { sigmoid(load(g + 2 * b * H + j, n)).store(g + 2 * b * H + j, n); });
        chunks<scalar_t>(H, [&](int64_t j, int64_t n) {
          (load(g + 2 * b * H + H + j, n) * load(hp + b * H + j, n)).store(rht + b * H + j, n);
        });
      });
      at::addmm_out(C[t], XH[t], RH[t], W_hh);
      rows(B, H, [&](int64_t b) {
        chunks<scalar_t>(H, [&](int64_t j, int64_t n) {
          auto cc = tanh(load(c + b * H + j, n)), hh = load(hp + b * H + j, n);
          cc.store(c + b * H + j, n);
          (hh + load(g + 2 * b * H + j, n) * (cc - hh)).store(h + b * H + j, n);
        });
      });
    }
  });
  return {zr, rh, cand, states};
}

// Backward, with a = the pre-activations: ∂L/∂a_h̃ = d_t ⊙ z(1 − h̃²);  ∂L/∂(r⊙h) = ∂L/∂a_h̃ W_hhᵀ;
// ∂L/∂a_z = d_t ⊙ (h̃ − h_{t-1}) z(1 − z);  ∂L/∂a_r = ∂L/∂(r⊙h) ⊙ h_{t-1} r(1 − r);
// d_{t-1} = g_{t-1} + d_t ⊙ (1 − z) + ∂L/∂(r⊙h) ⊙ r + [∂L/∂a_z ∂L/∂a_r] [W_hz W_hr]ᵀ.
// Returns d, ∂L/∂a_zr (T, B, 2H), ∂L/∂a_h̃ (T, B, H), ∂L/∂h_0.
std::tuple<Tensor, Tensor, Tensor, Tensor> gru_backward(Tensor grad_hs, Tensor states, Tensor zr, Tensor cand,
                                                        Tensor W_hzr, Tensor W_hh) {
  NO_AUTOGRAD;
  grad_hs = grad_hs.contiguous();
  const int64_t T = grad_hs.size(0), B = grad_hs.size(1), H = grad_hs.size(2);
  auto d = at::empty_like(grad_hs), da_zr = at::empty_like(zr), da_cand = at::empty_like(cand);
  auto d_rh = grad_hs.new_empty({B, H}), dh0 = grad_hs.new_empty({B, H});
  d[T - 1].copy_(grad_hs[T - 1]);
  auto Wzr_t = W_hzr.t(), Whh_t = W_hh.t();
  auto D = d.unbind(0), DA_zr = da_zr.unbind(0), DA_c = da_cand.unbind(0);
  AT_DISPATCH_FLOATING_TYPES(grad_hs.scalar_type(), "gru_backward", [&] {
    const Vectorized<scalar_t> one(scalar_t(1));
    const int64_t BH = B * H;
    for (int64_t t = T - 1; t >= 0; --t) {
      const scalar_t *dt = D[t].data_ptr<scalar_t>(), *g = zr.data_ptr<scalar_t>() + 2 * t * BH;
      const scalar_t *c = cand.data_ptr<scalar_t>() + t * BH, *hp = states.data_ptr<scalar_t>() + t * BH;
      scalar_t *dzr = DA_zr[t].data_ptr<scalar_t>(), *dc = DA_c[t].data_ptr<scalar_t>();
      rows(B, H, [&](int64_t b) {
        const int64_t o = b * H, o2 = 2 * b * H;
        chunks<scalar_t>(H, [&](int64_t j, int64_t n) {
          auto dh = load(dt + o + j, n), z = load(g + o2 + j, n), cc = load(c + o + j, n);
          (dh * (z * (one - cc * cc))).store(dc + o + j, n);
          (dh * ((cc - load(hp + o + j, n)) * (z * (one - z)))).store(dzr + o2 + j, n);
        });
      });
      at::mm_out(d_rh, DA_c[t], Whh_t);
      Tensor prev = t > 0 ? D[t - 1] : dh0;
      const scalar_t *drh = d_rh.data_ptr<scalar_t>(), *gp = t > 0 ? grad_hs.data_ptr<scalar_t>() + (t - 1) * BH : nullptr;
      scalar_t* dp = prev.data_ptr<scalar_t>();
      rows(B, H, [&](int64_t b) {
        const int64_t o = b * H, o2 = 2 * b * H;
        chunks<scalar_t>(H, [&](int64_t j, int64_t n) {
          auto dh = load(dt + o + j, n), z = load(g + o2 + j, n), r = load(g + o2 + H + j, n);
          auto drh_ = load(drh + o + j, n);
          (drh_ * (load(hp + o + j, n) * (r * (one - r)))).store(dzr + o2 + H + j, n);
          auto back = dh * (one - z) + drh_ * r;
          (gp ? load(gp + o + j, n) + back : back).store(dp + o + j, n);
        });
      });
      prev.addmm_(DA_zr[t], Wzr_t);
    }
  });
  return {d, da_zr, da_cand, dh0};
}

// ---------------------------------------------------------------------------------------------
// LSTM. a_t = xp_t + h_{t-1} W_h;  [i f o] = σ(·), c̃ = tanh(·);  c_t = f ⊙ c_{t-1} + i ⊙ c̃;
// h_t = o ⊙ tanh(c_t).  `gates` (T, B, 4H) comes in holding xp = x W_x + b and leaves holding
// the activated [i f c̃ o].  Returns h_all, c_all (T+1, B, H: row 0 the initial state) and tanh c.

template <typename T>
void lstm_cell(T* a, const T* c_prev, T* c, T* tc, T* h, int64_t H) {
  chunks<T>(H, [&](int64_t j, int64_t n) {
    auto i = sigmoid(load(a + j, n)), f = sigmoid(load(a + H + j, n));
    auto g = tanh(load(a + 2 * H + j, n)), o = sigmoid(load(a + 3 * H + j, n));
    auto c_new = f * load(c_prev + j, n) + i * g;
    auto tanh_c = tanh(c_new);
    i.store(a + j, n), f.store(a + H + j, n), g.store(a + 2 * H + j, n), o.store(a + 3 * H + j, n);
    c_new.store(c + j, n), tanh_c.store(tc + j, n), (o * tanh_c).store(h + j, n);
  });
}

std::tuple<Tensor, Tensor, Tensor> lstm_forward(Tensor gates, Tensor h0, Tensor c0, Tensor W_h) {
  NO_AUTOGRAD;
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
      rows(B, 4 * H, [&](int64_t b) { lstm_cell(a + b * 4 * H, cp + b * H, c + b * H, tc + b * H, h + b * H, H); });
    }
  });
  return {h_all, c_all, tanh_c};
}

// Backward: d_t = ∂L/∂h_t (total, through all later steps), with d_{T-1} = g_{T-1} and
// d_{t-1} = g_{t-1} + ∂L/∂a_t W_hᵀ.  ∂L/∂c_t = ∂L/∂c_t|_{t+1} + d_t ⊙ o ⊙ (1 − tanh² c_t);
// ∂L/∂a_t for [i f c̃ o]: ∂L/∂c_t ⊙ [c̃ i(1−i), c_{t-1} f(1−f), i (1−c̃²)], d_t ⊙ tanh c_t o(1−o);
// ∂L/∂c_{t-1}|_t = ∂L/∂c_t ⊙ f.  `grad_cs` (T, B, H), when given, is ∂L/∂c_t from outside the
// recurrence (an encoder's final cell state read by a decoder), added to ∂L/∂c_t at each step.
// Returns d (T, B, H), ∂L/∂a (T, B, 4H), ∂L/∂h_0, ∂L/∂c_0.

template <typename T>
void lstm_cell_backward(const T* d, const T* gate, const T* c_prev, const T* tc, const T* gc, T* dc_carry,
                        T* da, int64_t H) {
  const Vectorized<T> one(T(1));
  chunks<T>(H, [&](int64_t j, int64_t n) {
    auto i = load(gate + j, n), f = load(gate + H + j, n);
    auto g = load(gate + 2 * H + j, n), o = load(gate + 3 * H + j, n);
    auto dh = load(d + j, n), tanh_c = load(tc + j, n);
    auto dc = load(dc_carry + j, n) + dh * o * (one - tanh_c * tanh_c);
    if (gc) dc = dc + load(gc + j, n);
    (dc * g * (i * (one - i))).store(da + j, n);
    (dc * load(c_prev + j, n) * (f * (one - f))).store(da + H + j, n);
    (dc * i * (one - g * g)).store(da + 2 * H + j, n);
    (dh * tanh_c * (o * (one - o))).store(da + 3 * H + j, n);
    (dc * f).store(dc_carry + j, n);
  });
}

std::tuple<Tensor, Tensor, Tensor, Tensor> lstm_backward(Tensor grad_hs, Tensor gates, Tensor c_all,
                                                          Tensor tanh_c, Tensor W_h, std::optional<Tensor> grad_cs) {
  NO_AUTOGRAD;
  const int64_t T = grad_hs.size(0), B = grad_hs.size(1), H = grad_hs.size(2);
  grad_hs = grad_hs.contiguous();
  Tensor gcs = grad_cs.has_value() ? grad_cs->contiguous() : Tensor();
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
      const scalar_t* gc = gcs.defined() ? gcs.data_ptr<scalar_t>() + t * B * H : nullptr;
      scalar_t* dat = DA[t].data_ptr<scalar_t>();
      rows(B, 4 * H, [&](int64_t b) {
        lstm_cell_backward(dt + b * H, gt + b * 4 * H, cp + b * H, tc + b * H, gc ? gc + b * H : nullptr,
                           carry + b * H, dat + b * 4 * H, H);
      });
      if (t > 0)
        at::addmm_out(D[t - 1], G[t - 1], DA[t], W_t);
      else
        at::mm_out(dh0, DA[0], W_t);
    }
  });
  return {d, da, dh0, dc_carry};
}

// ---------------------------------------------------------------------------------------------
// LayerNorm LSTM (dynamics/models/lnlstm.py). LN(z) = g ⊙ n + β with n = (z − mean z) · inv,
// inv = 1/√(var z + ε) over the row (biased variance), each LN with its own g and β.
// a_t = LN_x(x_t W_x) + LN_h(h_{t-1} W_h) + b  (LN_x and LN_h over all 4H columns);
// [i f o] = σ(·), c̃ = tanh(·) of a_t;  c_t = f ⊙ c_{t-1} + i ⊙ c̃;  h_t = o ⊙ tanh(LN_c(c_t)).
// x W_x of all steps comes in as zx (T, B, 4H); LN_x is applied row by row in the step's pass, so
// that neither LN_x(x W_x) nor, in the backward, ∂L/∂a is ever a (T, B, 4H) tensor in memory.
// Returns h_all, c_all (T+1, B, H: row 0 the initial state), the activated gates [i f c̃ o], mean
// and inv of LN_x (T, B, 1), n_h (T, B, 4H) and inv_h, n_c (T, B, H) and inv_c, tanh(LN_c(c_t)).

constexpr double LN_EPS = 1e-5;   // lnlstm.EPS

// v in its first n lanes, zero in the rest: what a sum over a row's tail may add
template <typename T>
inline Vectorized<T> head(const Vectorized<T>& v, int64_t n) {
  return Vectorized<T>::set(Vectorized<T>(T(0)), v, n);
}

template <typename T>
inline T sum_lanes(const Vectorized<T>& v) {
  __at_align__ T lanes[Vectorized<T>::size()];
  v.store(lanes);
  T s = 0;
  for (T x : lanes) s += x;
  return s;
}

// The mean of p[0, len) and 1/√(var + ε): two passes over the row, so no cancellation.
template <typename T>
std::pair<T, T> moments(const T* p, int64_t len) {
  Vectorized<T> s(T(0)), q(T(0));
  chunks<T>(len, [&](int64_t j, int64_t n) { s = s + load(p + j, n); });   // loads fill the tail with 0
  const T mu = sum_lanes(s) / T(len);
  chunks<T>(len, [&](int64_t j, int64_t n) {
    auto e = head(load(p + j, n) - Vectorized<T>(mu), n);
    q = at::vec::fmadd(e, e, q);
  });
  return {mu, T(1) / std::sqrt(sum_lanes(q) / T(len) + T(LN_EPS))};
}

// The layer norms' parameters; bias = β_x + b + β_h, the three biases of a_t in one.
template <typename T>
struct LayerNorms {
  const T *g_x, *g_h, *bias, *g_c, *beta_c;
};

// One row of one step: `nh` comes in holding z_t = h_{t-1} W_h and leaves holding n_h.
template <typename T>
void lnlstm_cell(const LayerNorms<T>& p, const T* zx, T* mean_x, T* inv_x, T* nh, T* inv_h, const T* c_prev,
                 T* gate, T* c, T* nc, T* inv_c, T* tc, T* h, int64_t H) {
  using V = Vectorized<T>;
  const auto [mu_x, ix] = moments(zx, 4 * H);
  const auto [mu_h, ih] = moments(nh, 4 * H);
  *mean_x = mu_x, *inv_x = ix, *inv_h = ih;
  chunks<T>(H, [&](int64_t j, int64_t n) {
    auto a = [&](int64_t k) {   // column block k of a_t = g_x ⊙ n_x + g_h ⊙ n_h + bias
      const int64_t col = k * H + j;
      auto n_x = (load(zx + col, n) - V(mu_x)) * V(ix), n_h = (load(nh + col, n) - V(mu_h)) * V(ih);
      n_h.store(nh + col, n);
      return load(p.g_x + col, n) * n_x + load(p.g_h + col, n) * n_h + load(p.bias + col, n);
    };
    auto i = sigmoid(a(0)), f = sigmoid(a(1)), cc = tanh(a(2)), o = sigmoid(a(3));
    i.store(gate + j, n), f.store(gate + H + j, n), cc.store(gate + 2 * H + j, n), o.store(gate + 3 * H + j, n);
    (f * load(c_prev + j, n) + i * cc).store(c + j, n);
  });
  const auto [mu_c, ic] = moments(c, H);
  *inv_c = ic;
  chunks<T>(H, [&](int64_t j, int64_t n) {
    auto n_c = (load(c + j, n) - V(mu_c)) * V(ic);
    auto t = tanh(load(p.g_c + j, n) * n_c + load(p.beta_c + j, n));
    n_c.store(nc + j, n), t.store(tc + j, n);
    (load(gate + 3 * H + j, n) * t).store(h + j, n);
  });
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lnlstm_forward(
    Tensor zx, Tensor h0, Tensor c0, Tensor W_h, Tensor g_x, Tensor beta_x, Tensor b, Tensor g_h, Tensor beta_h,
    Tensor g_c, Tensor beta_c) {
  NO_AUTOGRAD;
  zx = zx.contiguous();
  const int64_t T = zx.size(0), B = zx.size(1), H = h0.size(1);
  TORCH_CHECK(zx.size(2) == 4 * H, "lnlstm_forward: zx (T, B, 4H)");
  g_x = g_x.contiguous(), g_h = g_h.contiguous(), g_c = g_c.contiguous(), beta_c = beta_c.contiguous();
  const Tensor bias = beta_x + b + beta_h;
  auto h_all = zx.new_empty({T + 1, B, H}), c_all = zx.new_empty({T + 1, B, H}), gates = at::empty_like(zx);
  auto mean_x = zx.new_empty({T, B, 1}), inv_x = zx.new_empty({T, B, 1});
  auto n_h = at::empty_like(zx), inv_h = zx.new_empty({T, B, 1});
  auto n_c = zx.new_empty({T, B, H}), inv_c = zx.new_empty({T, B, 1}), tanh_c = zx.new_empty({T, B, H});
  h_all[0].copy_(h0), c_all[0].copy_(c0);
  auto Hs = h_all.unbind(0), Z = n_h.unbind(0);
  AT_DISPATCH_FLOATING_TYPES(zx.scalar_type(), "lnlstm_forward", [&] {
    const LayerNorms<scalar_t> p{g_x.data_ptr<scalar_t>(), g_h.data_ptr<scalar_t>(), bias.data_ptr<scalar_t>(),
                                 g_c.data_ptr<scalar_t>(), beta_c.data_ptr<scalar_t>()};
    for (int64_t t = 0; t < T; ++t) {
      at::mm_out(Z[t], Hs[t], W_h);   // z_t, normalised in place below
      const int64_t r4 = t * B * 4 * H, r1 = t * B * H, r = t * B;
      const scalar_t* x = zx.data_ptr<scalar_t>() + r4;
      scalar_t *nh = n_h.data_ptr<scalar_t>() + r4, *g = gates.data_ptr<scalar_t>() + r4;
      scalar_t *mx = mean_x.data_ptr<scalar_t>() + r, *ix = inv_x.data_ptr<scalar_t>() + r;
      scalar_t *ih = inv_h.data_ptr<scalar_t>() + r, *ic = inv_c.data_ptr<scalar_t>() + r;
      scalar_t *cp = c_all.data_ptr<scalar_t>() + r1, *c = cp + B * H, *h = Hs[t + 1].data_ptr<scalar_t>();
      scalar_t *nc = n_c.data_ptr<scalar_t>() + r1, *tc = tanh_c.data_ptr<scalar_t>() + r1;
      rows(B, 4 * H, [&](int64_t b) {
        const int64_t o4 = b * 4 * H, o1 = b * H;
        lnlstm_cell(p, x + o4, mx + b, ix + b, nh + o4, ih + b, cp + o1, g + o4, c + o1, nc + o1, ic + b, tc + o1,
                    h + o1, H);
      });
    }
  });
  return {h_all, c_all, gates, mean_x, inv_x, n_h, inv_h, n_c, inv_c, tanh_c};
}

// Backward, as LNLSTMRecurrence.bptt, with d_t = ∂L/∂h_t (total) and ∂n = ∂L/∂n of n = LN's
// normalised row: ∂L/∂z = (∂n − mean ∂n − n ⊙ mean(∂n ⊙ n)) · inv  (normalise_backward).
//   ∂ĉ_t = ∂L/∂LN_c(c_t) = d_t ⊙ o ⊙ (1 − tanh² LN_c(c_t));
//   ∂L/∂c_t = ∂L/∂c_t|_{t+1} + normalise_backward(∂ĉ_t ⊙ g_c) [+ grad_cs_t, ∂L/∂c_t from outside];
//   ∂L/∂a_t for [i f c̃ o]: ∂L/∂c_t ⊙ [c̃ i(1−i), c_{t-1} f(1−f), i (1−c̃²)], d_t ⊙ tanh(LN_c c_t) o(1−o);
//   ∂L/∂c_{t-1}|_t = ∂L/∂c_t ⊙ f;  ∂z_t = ∂L/∂(h_{t-1} W_h) = normalise_backward(∂L/∂a_t ⊙ g_h);
//   ∂zx_t = ∂L/∂(x_t W_x) = normalise_backward(∂L/∂a_t ⊙ g_x);  d_{t-1} = g_{t-1} + ∂z_t W_hᵀ.
// The layer norms' gradients, Σ over steps and rows: ∂g_x = Σ ∂L/∂a ⊙ n_x, ∂g_h = Σ ∂L/∂a ⊙ n_h,
// ∂β_x = ∂b = ∂β_h = Σ ∂L/∂a, ∂g_c = Σ ∂ĉ ⊙ n_c, ∂β_c = Σ ∂ĉ, summed step by step while the
// step's rows are in cache.
// Returns d (T, B, H), ∂zx and ∂z (T, B, 4H), ∂L/∂h_0, ∂L/∂c_0, and the gradients of g_x, β_x,
// b, g_h, β_h, g_c, β_c.

// sum_an += Σ_b a_b ⊙ n_b and, unless null, sum_a += Σ_b a_b over the B rows (width len) of one
// step: the rows in registers first, so that float32 sums grow step by step, not term by term.
template <typename T>
void add_column_sums(const T* a, const T* n_, int64_t B, int64_t len, T* sum_an, T* sum_a) {
  chunks<T>(len, [&](int64_t j, int64_t n) {
    Vectorized<T> s_an(T(0)), s_a(T(0));
    for (int64_t b = 0; b < B; ++b) {
      auto x = load(a + b * len + j, n);
      s_an = at::vec::fmadd(x, load(n_ + b * len + j, n), s_an), s_a = s_a + x;
    }
    (load(sum_an + j, n) + s_an).store(sum_an + j, n);
    if (sum_a) (load(sum_a + j, n) + s_a).store(sum_a + j, n);
  });
}

// One row of one step. `da` and `nx` (∂L/∂a_t and n_x, 4H) and `dchat` (H) are the step's scratch.
template <typename T>
void lnlstm_cell_backward(const LayerNorms<T>& p, const T* d, const T* gate, const T* c_prev, const T* nc, T inv_c,
                          const T* tc, const T* nh, T inv_h, const T* zx, T mean_x, T inv_x, const T* gcs,
                          T* dc_carry, T* da, T* nx, T* dchat, T* dz, T* dzx, int64_t H) {
  using V = Vectorized<T>;
  const V one(T(1));
  // ∂ĉ, and the two means of normalise_backward over the H columns of c
  V s(T(0)), sn(T(0));
  chunks<T>(H, [&](int64_t j, int64_t n) {
    auto o = load(gate + 3 * H + j, n), t = load(tc + j, n);
    auto dch = load(d + j, n) * o * (one - t * t);
    dch.store(dchat + j, n);
    auto dn = dch * load(p.g_c + j, n);   // 0 in the tail: the loads fill it with 0
    s = s + dn, sn = at::vec::fmadd(dn, load(nc + j, n), sn);
  });
  const V mean_c(sum_lanes(s) / T(H)), mean_cn(sum_lanes(sn) / T(H));
  // ∂L/∂c_t, ∂L/∂a_t, the carry, and the means of normalise_backward for LN_h and LN_x (4H columns)
  V sh(T(0)), shn(T(0)), sx(T(0)), sxn(T(0));
  chunks<T>(H, [&](int64_t j, int64_t n) {
    auto i = load(gate + j, n), f = load(gate + H + j, n);
    auto cc = load(gate + 2 * H + j, n), o = load(gate + 3 * H + j, n);
    auto dh = load(d + j, n), dn = load(dchat + j, n) * load(p.g_c + j, n);
    auto dc = load(dc_carry + j, n) + (dn - mean_c - load(nc + j, n) * mean_cn) * V(inv_c);
    if (gcs) dc = dc + load(gcs + j, n);
    const V dak[4] = {dc * cc * (i * (one - i)), dc * load(c_prev + j, n) * (f * (one - f)),
                      dc * i * (one - cc * cc), dh * load(tc + j, n) * (o * (one - o))};
    for (int64_t k = 0; k < 4; ++k) {
      const int64_t col = k * H + j;
      auto n_x = (load(zx + col, n) - V(mean_x)) * V(inv_x);
      dak[k].store(da + col, n), n_x.store(nx + col, n);
      auto dnh = head(dak[k] * load(p.g_h + col, n), n), dnx = head(dak[k] * load(p.g_x + col, n), n);
      sh = sh + dnh, shn = at::vec::fmadd(dnh, load(nh + col, n), shn);
      sx = sx + dnx, sxn = at::vec::fmadd(dnx, n_x, sxn);
    }
    (dc * f).store(dc_carry + j, n);
  });
  const V m_h(sum_lanes(sh) / T(4 * H)), m_hn(sum_lanes(shn) / T(4 * H));
  const V m_x(sum_lanes(sx) / T(4 * H)), m_xn(sum_lanes(sxn) / T(4 * H));
  chunks<T>(4 * H, [&](int64_t j, int64_t n) {
    auto a = load(da + j, n);
    ((a * load(p.g_h + j, n) - m_h - load(nh + j, n) * m_hn) * V(inv_h)).store(dz + j, n);
    ((a * load(p.g_x + j, n) - m_x - load(nx + j, n) * m_xn) * V(inv_x)).store(dzx + j, n);
  });
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>
lnlstm_backward(Tensor grad_hs, Tensor zx, Tensor gates, Tensor c_all, Tensor mean_x, Tensor inv_x, Tensor n_h,
                Tensor inv_h, Tensor n_c, Tensor inv_c, Tensor tanh_c, Tensor W_h, Tensor g_x, Tensor g_h,
                Tensor g_c, std::optional<Tensor> grad_cs) {
  NO_AUTOGRAD;
  const int64_t T = grad_hs.size(0), B = grad_hs.size(1), H = grad_hs.size(2);
  grad_hs = grad_hs.contiguous(), zx = zx.contiguous();
  g_x = g_x.contiguous(), g_h = g_h.contiguous(), g_c = g_c.contiguous();
  Tensor gcs = grad_cs.has_value() ? grad_cs->contiguous() : Tensor();
  auto d = at::empty_like(grad_hs), dzx = at::empty_like(gates), dz = at::empty_like(gates);
  auto da = grad_hs.new_empty({B, 4 * H}), nx = grad_hs.new_empty({B, 4 * H}), dchat = grad_hs.new_empty({B, H});
  auto dh0 = grad_hs.new_empty({B, H}), dc_carry = at::zeros_like(dh0);
  auto dg_x = at::zeros_like(g_x), dg_h = at::zeros_like(g_h), dbeta = at::zeros_like(g_h);
  auto dg_c = at::zeros_like(g_c), dbeta_c = at::zeros_like(g_c);
  d[T - 1].copy_(grad_hs[T - 1]);
  auto W_t = W_h.t();
  auto D = d.unbind(0), G = grad_hs.unbind(0), DZ = dz.unbind(0);
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "lnlstm_backward", [&] {
    const LayerNorms<scalar_t> p{g_x.data_ptr<scalar_t>(), g_h.data_ptr<scalar_t>(), nullptr,   // no biases:
                                 g_c.data_ptr<scalar_t>(), nullptr};                           // ∂a/∂β = 1
    scalar_t *carry = dc_carry.data_ptr<scalar_t>(), *da_ = da.data_ptr<scalar_t>(), *nx_ = nx.data_ptr<scalar_t>();
    scalar_t* dch = dchat.data_ptr<scalar_t>();
    for (int64_t t = T - 1; t >= 0; --t) {
      const int64_t r4 = t * B * 4 * H, r1 = t * B * H, r = t * B;
      const scalar_t *dt = D[t].data_ptr<scalar_t>(), *g = gates.data_ptr<scalar_t>() + r4;
      const scalar_t *cp = c_all.data_ptr<scalar_t>() + r1, *nc = n_c.data_ptr<scalar_t>() + r1;
      const scalar_t *tc = tanh_c.data_ptr<scalar_t>() + r1, *nh = n_h.data_ptr<scalar_t>() + r4;
      const scalar_t *x = zx.data_ptr<scalar_t>() + r4, *mx = mean_x.data_ptr<scalar_t>() + r;
      const scalar_t *ix = inv_x.data_ptr<scalar_t>() + r, *ih = inv_h.data_ptr<scalar_t>() + r;
      const scalar_t* ic = inv_c.data_ptr<scalar_t>() + r;
      const scalar_t* gcs_t = gcs.defined() ? gcs.data_ptr<scalar_t>() + r1 : nullptr;
      scalar_t *dzt = dz.data_ptr<scalar_t>() + r4, *dzxt = dzx.data_ptr<scalar_t>() + r4;
      rows(B, 4 * H, [&](int64_t b) {
        const int64_t o4 = b * 4 * H, o1 = b * H;
        lnlstm_cell_backward(p, dt + o1, g + o4, cp + o1, nc + o1, ic[b], tc + o1, nh + o4, ih[b], x + o4, mx[b],
                             ix[b], gcs_t ? gcs_t + o1 : nullptr, carry + o1, da_ + o4, nx_ + o4, dch + o1,
                             dzt + o4, dzxt + o4, H);
      });
      add_column_sums(da_, nh, B, 4 * H, dg_h.data_ptr<scalar_t>(), dbeta.data_ptr<scalar_t>());
      add_column_sums(da_, nx_, B, 4 * H, dg_x.data_ptr<scalar_t>(), static_cast<scalar_t*>(nullptr));
      add_column_sums(dch, nc, B, H, dg_c.data_ptr<scalar_t>(), dbeta_c.data_ptr<scalar_t>());
      if (t > 0)
        at::addmm_out(D[t - 1], G[t - 1], DZ[t], W_t);
      else
        at::mm_out(dh0, DZ[0], W_t);
    }
  });
  return {d, dzx, dz, dh0, dc_carry, dg_x, dbeta, dbeta.clone(), dg_h, dbeta.clone(), dg_c, dbeta_c};
}

// ---------------------------------------------------------------------------------------------
// The diagnostics' histograms (dynamics/probes.py): counts of d(values) in the bins of the evenly
// spaced `edges` (of the values' dtype), values outside and NaN clamped into the end bins, where
// d is the identity, 1 − |v| (tanh saturation) or min(v, 1 − v) (sigmoid and gate saturation),
// applied here so that no transformed copy is made. Each value's bin is computed, then moved by
// one where its own edges say otherwise, so a value on an edge lands where np.histogram puts it.
// Rows are read in place, so one gate of the (T, B, 4H) gates buffer needs no copy. In blocks:
// first every value's bin (a loop the compiler vectorises), then the counting, so the bin
// arithmetic does not wait on the increments.

enum Transform : int64_t { IDENTITY = 0, ONE_MINUS_ABS = 1, TO_NEAREST_END = 2 };

template <typename scalar_t, int64_t transform>
void count_rows(const scalar_t* v, int64_t rows, int64_t length, int64_t row_stride, const scalar_t* e,
                int64_t n, int64_t* counts4) {
  constexpr int64_t BLOCK = 4096;
  int32_t bin[BLOCK];
  scalar_t value[BLOCK];
  int64_t fill = 0;
  const int64_t last = n - 1;
  const scalar_t lo = e[0], hi = e[n], scale = scalar_t(n) / (hi - lo);
  // (x − lo) · scale lies within far less than NEAR of a bin's edge only where rounding can put the
  // value on the wrong side of it: those few values are checked against their own edges
  const scalar_t NEAR = 1e-3;
  auto count = [&] {
    for (int64_t i = 0; i < fill; ++i) {
      int32_t k = bin[i];
      if (k >> 30) {   // near an edge: np.histogram's rule, by the edges themselves
        const scalar_t x = value[i];
        k &= (1 << 30) - 1;
        k += (k < last) & (x >= e[k + 1]);
        k -= (x < e[k]);
      }
      ++counts4[(i & 3) * n + k];
    }
    fill = 0;
  };
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t start = 0; start < length; start += BLOCK) {
      const int64_t m = std::min(BLOCK, length - start);
      if (fill + m > BLOCK) count();
      const scalar_t* w = v + r * row_stride + start;
      int32_t* b = bin + fill;
      scalar_t* u = value + fill;
      for (int64_t i = 0; i < m; ++i) {   // vectorised: no gathers, no branches
        scalar_t x = w[i];
        if (transform == ONE_MINUS_ABS) x = scalar_t(1) - std::abs(x);
        if (transform == TO_NEAREST_END) x = std::min(x, scalar_t(1) - x);   // NaN stays NaN
        x = x <= lo ? lo : (x < hi ? x : hi);                                 // NaN: the top edge
        const scalar_t f = (x - lo) * scale;
        const int32_t k = static_cast<int32_t>(f);
        const scalar_t frac = f - scalar_t(k);
        u[i] = x;
        b[i] = (k < last ? k : last) | ((frac < NEAR) | (frac > 1 - NEAR)) << 30;
      }
      fill += m;
    }
  }
  count();
}

// (rows, length, row stride) of values whose last axis is contiguous and whose other axes
// collapse into one, as a slice of the last axis of a contiguous buffer does; else (0, 0, 0)
std::tuple<int64_t, int64_t, int64_t> as_rows(const Tensor& values) {
  const int64_t d = values.dim();
  if (d < 2 || values.stride(d - 1) != 1) return {0, 0, 0};
  for (int64_t i = 0; i + 2 < d; ++i)
    if (values.stride(i) != values.stride(i + 1) * values.size(i + 1)) return {0, 0, 0};
  return {values.numel() / values.size(d - 1), values.size(d - 1), values.stride(d - 2)};
}

Tensor histogram(Tensor values, Tensor edges, int64_t transform) {
  NO_AUTOGRAD;
  TORCH_CHECK(transform >= IDENTITY && transform <= TO_NEAREST_END, "histogram: unknown transform ", transform);
  edges = edges.to(values.scalar_type()).contiguous();
  auto [rows, length, row_stride] = as_rows(values);
  if (rows == 0) {
    values = values.contiguous();
    rows = 1, length = values.numel(), row_stride = length;
  }
  const int64_t n = edges.numel() - 1;
  // four interleaved count arrays: runs of values in one bin do not wait on each other's increment
  std::vector<int64_t> counts4(4 * n, 0);
  AT_DISPATCH_FLOATING_TYPES(values.scalar_type(), "histogram", [&] {
    const scalar_t *v = values.data_ptr<scalar_t>(), *e = edges.data_ptr<scalar_t>();
    if (transform == ONE_MINUS_ABS)
      count_rows<scalar_t, ONE_MINUS_ABS>(v, rows, length, row_stride, e, n, counts4.data());
    else if (transform == TO_NEAREST_END)
      count_rows<scalar_t, TO_NEAREST_END>(v, rows, length, row_stride, e, n, counts4.data());
    else
      count_rows<scalar_t, IDENTITY>(v, rows, length, row_stride, e, n, counts4.data());
  });
  auto counts = at::empty({n}, values.options().dtype(at::kLong));
  int64_t* c = counts.data_ptr<int64_t>();
  for (int64_t k = 0; k < n; ++k) c[k] = counts4[k] + counts4[n + k] + counts4[2 * n + k] + counts4[3 * n + k];
  return counts;
}

// ---------------------------------------------------------------------------------------------
// Global-norm clipping and the reference's rule for untrusted steps (dynamics/probes.py), in one
// call instead of a dozen dispatches per update. The same kernels and dtypes as the Python path,
// so the same numbers; on the host the branches are free, and in the common case (nothing
// clipped, nothing untrusted) the gradients are unchanged, so their norm after is the norm.

Tensor clip_gradients(const std::vector<Tensor>& grads, std::optional<Tensor> W_rec, std::optional<Tensor> W_rec_grad,
                      double cutoff, bool rescale) {
  NO_AUTOGRAD;
  // ‖g‖ as the Python path computes it: each gradient's norm (what _foreach_norm computes on the
  // CPU, one linalg_vector_norm each) into one vector, then that vector's norm
  auto global_norm = [&] {
    auto norms = at::empty({int64_t(grads.size())}, grads[0].options());
    AT_DISPATCH_FLOATING_TYPES(norms.scalar_type(), "global_norm", [&] {
      scalar_t* v = norms.data_ptr<scalar_t>();
      for (size_t i = 0; i < grads.size(); ++i) v[i] = at::linalg_vector_norm(grads[i], 2).item<scalar_t>();
    });
    return at::linalg_vector_norm(norms, 2);
  };
  const Tensor norm = global_norm();
  const double n = norm.item<double>();   // exact: a float32 or float64 value
  // the Python path compares in the gradients' dtype, so the thresholds are rounded to it first
  double limit = 0, big = 0;
  AT_DISPATCH_FLOATING_TYPES(norm.scalar_type(), "clip_gradients", [&] {
    limit = static_cast<scalar_t>(cutoff), big = static_cast<scalar_t>(1e10);
  });
  const bool bad = !std::isfinite(n) || n > big;
  const bool clipped = rescale && !bad && n > limit;
  double n_after = n;
  if (clipped) {
    at::_foreach_mul_(grads, norm.reciprocal() * cutoff);
    n_after = global_norm().item<double>();
  } else if (bad) {
    for (const Tensor& g : grads) const_cast<Tensor&>(g).zero_();
    if (W_rec.has_value()) W_rec_grad->add_(*W_rec * at::scalar_tensor(0.02, at::kFloat));
    n_after = global_norm().item<double>();
  }
  // the four values written into one new tensor: values of the gradients' dtype, so exact
  auto out = at::empty({4}, norm.options());
  AT_DISPATCH_FLOATING_TYPES(norm.scalar_type(), "clip_gradients", [&] {
    scalar_t* o = out.data_ptr<scalar_t>();
    o[0] = static_cast<scalar_t>(n), o[1] = static_cast<scalar_t>(n_after);
    o[2] = clipped, o[3] = bad;
  });
  return out;
}

}  // namespace dynamics
