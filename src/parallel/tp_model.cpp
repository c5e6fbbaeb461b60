// The model's tensor-parallel hook over a Comm (see tp_model.h).
#include "parallel/tp_model.h"

#include <span>

namespace seqvit::parallel {

void TpModel::all_reduce_sum(float* x, int64_t n) {
  tp_.all_reduce(std::span<float>(x, static_cast<size_t>(n)));
}

double TpModel::all_reduce_sum(double v) {
  tp_.all_reduce(std::span<double>(&v, 1));
  return v;
}

}  // namespace seqvit::parallel
