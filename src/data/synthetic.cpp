// Synthetic travelling-wave fields (see synthetic.h).
#include "data/synthetic.h"

#include <cmath>

#include "core/check.h"
#include "core/rng.h"

namespace seqvit::data {

SyntheticFields::SyntheticFields(const SyntheticSpec& spec) : spec_(spec) {
  SEQVIT_CHECK(spec.H > 0 && spec.W > 0, "synthetic grid must be positive, got {}x{}", spec.H,
               spec.W);
  SEQVIT_CHECK(!spec.variables.empty(), "synthetic data needs at least one variable");
  SEQVIT_CHECK(!spec.lead_hours.empty(), "synthetic data needs at least one lead time");
  const int64_t V = static_cast<int64_t>(spec.variables.size()), K = spec.waves;
  for (const auto& o : spec.out_variables) {
    int64_t found = -1;
    for (int64_t v = 0; v < V; ++v)
      if (spec.variables[v] == o) found = v;
    if (found < 0) fail("output variable '{}' is not one of the input variables", o);
    out_index_.push_back(found);
  }
  lat_.resize(spec.H);
  for (int64_t i = 0; i < spec.H; ++i)
    lat_[i] = static_cast<float>(90.0 - 180.0 * (static_cast<double>(i) + 0.5) / spec.H);
  Rng rng(spec.seed * 7919 + 17);
  for (int64_t k = 0; k < K; ++k) {
    m_.push_back(1.0 + std::floor(rng.uniform() * 5.0));            // zonal wave number 1..5
    n_.push_back(1.0 + std::floor(rng.uniform() * 4.0));            // meridional 1..4
    w_.push_back((rng.uniform() - 0.3) * 2.0 * M_PI / 96.0);        // period of days
  }
  for (int64_t v = 0; v < V; ++v) {
    for (int64_t k = 0; k < K; ++k) {
      amp_.push_back((0.3 + rng.uniform()) / std::sqrt(static_cast<double>(K)));
      phase_.push_back(rng.uniform() * 2.0 * M_PI);
    }
    base_.push_back(rng.uniform() * 2.0 - 1.0);
  }
}

void SyntheticFields::field(double t, int64_t v, float* out) const {
  const int64_t H = spec_.H, W = spec_.W, K = spec_.waves;
  for (int64_t i = 0; i < H; ++i) {
    const double lat = lat_[i] * M_PI / 180.0;
    for (int64_t j = 0; j < W; ++j) {
      const double lon = 2.0 * M_PI * static_cast<double>(j) / W;
      double f = base_[v] * std::cos(lat);
      for (int64_t k = 0; k < K; ++k)
        f += amp_[v * K + k] * std::sin(m_[k] * lon - w_[k] * t + n_[k] * lat + phase_[v * K + k]);
      out[i * W + j] = static_cast<float>(f);
    }
  }
}

void SyntheticFields::sample(uint64_t index, float* x, float* y, float* lead) const {
  Rng rng(spec_.seed ^ (index * 0x9e3779b97f4a7c15ull + 1));
  const double t = rng.uniform() * 24.0 * 365.0;  // any time of a year, hours
  const double lh =
      spec_.lead_hours[static_cast<size_t>(rng.uniform() * spec_.lead_hours.size()) %
                       spec_.lead_hours.size()];
  const int64_t V = static_cast<int64_t>(spec_.variables.size()), HW = spec_.H * spec_.W;
  for (int64_t v = 0; v < V; ++v) field(t, v, x + v * HW);
  for (size_t o = 0; o < out_index_.size(); ++o) field(t + lh, out_index_[o], y + o * HW);
  *lead = static_cast<float>(lh);
}

}  // namespace seqvit::data
