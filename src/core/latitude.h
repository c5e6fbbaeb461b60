// Latitude weights of the latitude-weighted scores and loss: w_i = cos(lat_i) / mean_i cos(lat_i),
// lat in degrees, so that the weights average to one over the rows.
#pragma once

#include <cstdint>
#include <vector>

namespace seqvit {

void latitude_weights(const float* lat_deg, int64_t H, float* w);  // into w[H], no allocation
std::vector<float> latitude_weights(const float* lat_deg, int64_t H);

}  // namespace seqvit
