// Synthetic moving multi-variable fields, generated in memory: the built-in default that lets a
// new user see the loss fall within a minute, with no data to download.
//
// Each variable is a sum of K travelling waves on the lat-lon grid,
//   f_v(t, lat, lon) = sum_k a_vk sin(m_k lon - w_k t + n_k lat + phi_vk) + b_v cos(lat),
// where the wave numbers (m_k, n_k) and phase speeds w_k are shared by all variables (so they
// are physically coupled and move together) and the amplitudes and phases differ per variable.
// A sample is (x = fields at time t, y = the output variables at t + lead); the map from x to
// y is a fixed, learnable advection. Deterministic from the seed and the sample index.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace seqvit::data {

struct SyntheticSpec {
  int64_t H = 32, W = 64;
  std::vector<std::string> variables;
  std::vector<std::string> out_variables;
  std::vector<double> lead_hours{6.0};  // each sample draws one of these
  int waves = 6;
  uint64_t seed = 0;
};

class SyntheticFields {
 public:
  explicit SyntheticFields(const SyntheticSpec& spec);
  // Sample `index`: x[V,H,W], y[Vo,H,W], *lead (hours).
  void sample(uint64_t index, float* x, float* y, float* lead) const;
  // Equally spaced cell-centre latitudes, north to south (as ERA5), degrees.
  const std::vector<float>& lat() const { return lat_; }

 private:
  void field(double t_hours, int64_t v, float* out) const;
  SyntheticSpec spec_;
  std::vector<float> lat_;
  std::vector<double> m_, n_, w_;      // [K] wave numbers and angular speeds (rad/hour)
  std::vector<double> amp_, phase_;    // [V, K]
  std::vector<double> base_;           // [V]
  std::vector<int64_t> out_index_;
};

}  // namespace seqvit::data
