// The compiled functions, bound for Python in module.cpp and loaded by dynamics/models/compiled.py:
// the per-step loops of the recurrences (recurrence.cpp), the per-check histograms and per-update
// clipping (recurrence.cpp), and dropout with torch's own masks (dropout.cpp).
#pragma once
#include <ATen/ATen.h>

#include <optional>
#include <tuple>
#include <vector>

namespace dynamics {

using at::Tensor;

Tensor rnn_forward(Tensor xp, Tensor h0, Tensor W_hh, c10::string_view activation);
std::tuple<Tensor, Tensor> rnn_backward(Tensor grad_hs, Tensor states, Tensor W_hh, c10::string_view activation);

std::tuple<Tensor, Tensor, Tensor, Tensor> gru_forward(Tensor xp, Tensor h0, Tensor W_hzr, Tensor W_hh);
std::tuple<Tensor, Tensor, Tensor, Tensor> gru_backward(Tensor grad_hs, Tensor states, Tensor zr, Tensor cand,
                                                        Tensor W_hzr, Tensor W_hh);

std::tuple<Tensor, Tensor, Tensor> lstm_forward(Tensor gates, Tensor h0, Tensor c0, Tensor W_h);
std::tuple<Tensor, Tensor, Tensor, Tensor> lstm_backward(Tensor grad_hs, Tensor gates, Tensor c_all,
                                                          Tensor tanh_c, Tensor W_h, std::optional<Tensor> grad_cs);

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> lnlstm_forward(
    Tensor zx, Tensor h0, Tensor c0, Tensor W_h, Tensor g_x, Tensor beta_x, Tensor b, Tensor g_h, Tensor beta_h,
    Tensor g_c, Tensor beta_c);
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor>
lnlstm_backward(Tensor grad_hs, Tensor zx, Tensor gates, Tensor c_all, Tensor mean_x, Tensor inv_x, Tensor n_h,
                Tensor inv_h, Tensor n_c, Tensor inv_c, Tensor tanh_c, Tensor W_h, Tensor g_x, Tensor g_h,
                Tensor g_c, std::optional<Tensor> grad_cs);

Tensor histogram(Tensor values, Tensor edges, int64_t transform);
Tensor clip_gradients(const std::vector<Tensor>& grads, std::optional<Tensor> W_rec, std::optional<Tensor> W_rec_grad,
                      double cutoff, bool rescale);

std::tuple<Tensor, Tensor> dropout(const Tensor& x, double p);

}  // namespace dynamics
