#include "core/latitude.h"

#include <cmath>

#include "core/check.h"

namespace seqvit {

void latitude_weights(const float* lat_deg, int64_t H, float* w) {
  double mean = 0;
  for (int64_t i = 0; i < H; ++i) mean += std::cos(static_cast<double>(lat_deg[i]) * M_PI / 180.0);
  mean /= static_cast<double>(H);
  SEQVIT_CHECK(mean > 0, "latitudes give a non-positive mean cos(lat) = {}", mean);
  for (int64_t i = 0; i < H; ++i)
    w[i] = static_cast<float>(std::cos(static_cast<double>(lat_deg[i]) * M_PI / 180.0) / mean);
}

std::vector<float> latitude_weights(const float* lat_deg, int64_t H) {
  std::vector<float> w(static_cast<size_t>(H));
  latitude_weights(lat_deg, H, w.data());
  return w;
}

}  // namespace seqvit
