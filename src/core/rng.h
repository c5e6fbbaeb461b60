// A small, portable, seedable random generator (SplitMix64 seeding a xoshiro256**), with its
// own uniform and normal transforms, so initialisation and synthetic data are bit-identical on
// every platform and standard library (std::normal_distribution is not).
#pragma once

#include <cmath>
#include <cstdint>

namespace seqvit {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0) { reseed(seed); }
  void reseed(uint64_t seed) {
    uint64_t z = seed;
    for (auto& s : s_) {
      z += 0x9e3779b97f4a7c15ull;
      uint64_t x = z;
      x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
      x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
      s = x ^ (x >> 31);
    }
  }
  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double normal() {  // Box-Muller, one value per call
    double u1 = uniform(), u2 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  // Normal(0, std) truncated to [-2 std, 2 std] by rejection.
  double trunc_normal(double std) {
    for (;;) {
      double z = normal();
      if (z >= -2.0 && z <= 2.0) return z * std;
    }
  }
  uint64_t state(int i) const { return s_[i]; }
  void set_state(int i, uint64_t v) { s_[i] = v; }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t s_[4];
};

}  // namespace seqvit
