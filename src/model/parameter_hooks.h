// The model's hook for sharded parameters (ZeRO-2/3, FSDP; docs/parallelism.md "ZeRO / FSDP").
// ClimaX splits its flat parameter buffer into units, consecutive ranges of the table in the
// order of the forward: unit 0 the embeddings (patch embeddings, variable aggregation,
// pos_embed, lead-time embedding), unit 1 + i block i, and the last unit the final norm and
// the head (ClimaX::num_units(), unit_range()). With hooks set, forward() and backward() call
// them around each unit's use of the parameters, so an implementation can
//  - all-gather the unit's parameters before *_begin and release them after *_end (ZeRO-3), and
//  - reduce-scatter the unit's gradients after backward_end and release them (ZeRO-2/3).
// backward_begin(u) is also where the unit's gradient range must be made zero: the model
// ACCUMULATES into it. The model library does not link MPI; src/train/zero.h implements this.
#pragma once

namespace seqvit::model {

class ParameterHooks {
 public:
  virtual ~ParameterHooks() = default;
  virtual void forward_begin(int unit) = 0;
  virtual void forward_end(int unit) = 0;
  virtual void backward_begin(int unit) = 0;
  virtual void backward_end(int unit) = 0;
};

}  // namespace seqvit::model
