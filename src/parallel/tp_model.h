// ClimaX under tensor parallelism (docs/parallelism.md "Tensor parallelism"): the model's hook
// (model/tensor_parallel.h) over the grid's tp communicator. The model calls it for Megatron's
// two all-reduces per sub-layer: after each row-parallel layer's forward (proj, fc2, the
// aggregation's out_proj) and before the LayerNorm backward that follows each column-parallel
// layer's backward (qkv, fc1, the aggregation's in_proj).
#pragma once

#include <cstdint>

#include "parallel/comm.h"
#include "model/tensor_parallel.h"

namespace seqvit::parallel {

class TpModel final : public model::TensorParallel {
 public:
  explicit TpModel(Comm& tp) : tp_(tp) {}  // `tp` must outlive this object

  int size() const override { return tp_.size(); }
  int rank() const override { return tp_.rank(); }
  void all_reduce_sum(float* x, int64_t n) override;
  double all_reduce_sum(double v) override;

 private:
  Comm& tp_;
};

}  // namespace seqvit::parallel
