// bfloat16 storage type: the top 16 bits of an IEEE fp32. Conversion rounds to nearest even
// (NaN stays NaN). Used for matrix inputs in mixed precision; accumulation is always fp32.
#pragma once

#include <cstdint>
#include <cstring>

namespace seqvit {

struct bf16 {
  uint16_t bits;
};

inline bf16 to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{static_cast<uint16_t>((u >> 16) | 0x40)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16{static_cast<uint16_t>(u >> 16)};
}

inline float to_float(bf16 h) {
  uint32_t u = static_cast<uint32_t>(h.bits) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Vectorised (AVX-512 where available, dispatched at run time) bulk conversions.
void convert_to_bf16(const float* src, bf16* dst, int64_t n);
void convert_to_float(const bf16* src, float* dst, int64_t n);
// Round fp32 values to bf16 precision in place (for oracles that emulate mixed precision).
void round_to_bf16(float* x, int64_t n);

}  // namespace seqvit
