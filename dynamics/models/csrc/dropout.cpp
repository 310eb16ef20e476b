// Dropout with torch's own masks (dynamics/models/dropout.py). F.dropout on the CPU, in training,
// computes noise = bernoulli_(1 − p) / (1 − p) and x ⊙ noise; bernoulli_ takes each value from the
// default generator's MT19937 as two 32-bit numbers, u = the low 53 bits of (first << 32 | second)
// / 2⁵³ and mask = u < 1 − p, with two out-of-line calls per value (about 7.5 ns in all). Here the
// generator's engine is drawn a block at a time and put back, u and the mask come from ATen's own
// transformations, and the division and product are made in the same pass: the same masks and
// outputs bit for bit, and the generator left where bernoulli_ leaves it.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/TransformationHelper.h>

#include <algorithm>
#include <mutex>
#include <tuple>

#include "ops.h"

namespace {

// The next n numbers of `engine`, as n calls of engine() give them: the words of its state not yet
// used, tempered as mt19937_engine::operator() tempers them, in a loop the compiler vectorises;
// the engine itself is called only for the twist, when its 624 words are used up.
void draw(at::mt19937& engine, uint32_t* out, int64_t n) {
  for (int64_t k = 0; k < n;) {
    auto state = engine.data();
    const int64_t unused = state.left_ - 1;
    if (unused == 0) {
      out[k++] = engine();   // the twist, and the first word after it
      continue;
    }
    const int64_t m = std::min(unused, n - k);
    const uint32_t* words = state.state_.data() + state.next_;
    for (int64_t j = 0; j < m; ++j) {
      uint32_t y = words[j];
      y ^= (y >> 11);
      y ^= (y << 7) & 0x9d2c5680;
      y ^= (y << 15) & 0xefc60000;
      y ^= (y >> 18);
      out[k + j] = y;
    }
    state.left_ -= m, state.next_ += m;
    engine.set_data(state);
    k += m;
  }
}

}  // namespace

namespace dynamics {

std::tuple<Tensor, Tensor> dropout(const Tensor& x, double p) {
  TORCH_CHECK(x.is_cpu() && x.is_contiguous() && p > 0 && p < 1, "dropout: a contiguous CPU tensor, 0 < p < 1");
  auto out = at::empty_like(x), noise = at::empty_like(x);
  auto* generator = at::get_generator_or_default<at::CPUGeneratorImpl>(std::nullopt, at::detail::getDefaultCPUGenerator());
  std::lock_guard<std::mutex> lock(generator->mutex_);
  at::mt19937 engine = generator->engine();
  constexpr int64_t block = 1024;
  uint32_t words[2 * block];
  const double keep = 1 - p;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dropout", [&] {
    const scalar_t divisor = static_cast<scalar_t>(keep);   // div_(1 − p) in the tensor's dtype
    const scalar_t* in = x.data_ptr<scalar_t>();
    scalar_t *o = out.data_ptr<scalar_t>(), *n = noise.data_ptr<scalar_t>();
    for (int64_t k0 = 0, size = x.numel(); k0 < size; k0 += block) {
      const int64_t len = std::min(block, size - k0);
      draw(engine, words, 2 * len);
      for (int64_t j = 0; j < len; ++j) {
        const uint64_t bits = (static_cast<uint64_t>(words[2 * j]) << 32) | words[2 * j + 1];
        const double u = at::transformation::uniform_real<double>(bits, 0.0, 1.0);
        const scalar_t mask = static_cast<scalar_t>(at::transformation::bernoulli<double>(u, keep));
        n[k0 + j] = mask / divisor;
        o[k0 + j] = in[k0 + j] * n[k0 + j];
      }
    }
  });
  generator->set_engine(engine);
  return {out, noise};
}

}  // namespace dynamics
