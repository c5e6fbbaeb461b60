// The model's hook for tensor parallelism (Megatron, docs/parallelism.md "Tensor
// parallelism"). A ClimaX built with ModelShard{tp_size T, tp_rank t} holds the columns of qkv
// and fc1 (its Hh/T heads, its F/T hidden units), the matching rows of proj and fc2, and the
// same split of the variable-aggregation attention; everything else is replicated. Its forward
// sums the partial outputs of each row-parallel layer over the T ranks, and its backward sums the
// partial input gradients of each column-parallel layer (Megatron's g and f operators): the only
// two kinds of exchange, both all-reduces, so this is the one call that crosses ranks. src/parallel
// implements it over the grid's tp communicator (parallel/tp_model.h), which keeps the model library
// free of MPI.
#pragma once

#include <cstdint>

namespace seqvit::model {

class TensorParallel {
 public:
  virtual ~TensorParallel() = default;

  virtual int size() const = 0;  // T, the TP group size
  virtual int rank() const = 0;  // this rank's position in the group (its ModelShard::tp_rank)

  // In place: x[n] <- the sum over the group of every rank's x[n]. Collective; every rank calls
  // with the same n. Must not allocate (it runs inside forward and backward).
  virtual void all_reduce_sum(float* x, int64_t n) = 0;
  // The sum over the group of one value (the global gradient norm).
  virtual double all_reduce_sum(double v) = 0;
};

}  // namespace seqvit::model
