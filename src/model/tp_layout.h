// Which parameters tensor parallelism splits, and how a rank's share maps into the logical
// (single-process) buffer (docs/parallelism.md "Tensor parallelism"). The split is a function of
// the checkpoint name alone, so checkpoints, `seqvit grad` and the global gradient norm all read
// it from here:
//
//   tensor (logical shape)                      split          rank t of T holds
//   blocks.i.attn.qkv.weight [3D, D]            HeadRows       rows [tD/T, (t+1)D/T) of each of
//   blocks.i.attn.qkv.bias   [3D]                              the q, k and v blocks: [3D/T, D]
//   var_agg.in_proj_weight   [3D, D]  (+ bias)  HeadRows       (its heads, in q | k | v order)
//   blocks.i.mlp.fc1.weight  [F, D]   (+ bias)  Rows           rows [tF/T, (t+1)F/T): [F/T, D]
//   blocks.i.attn.proj.weight [D, D]            Columns        columns [t in/T, (t+1) in/T) of
//   blocks.i.mlp.fc2.weight   [D, F]                           every row: [D, in/T]
//   var_agg.out_proj.weight   [D, D]
//   everything else (LayerNorms, embeddings, the biases of proj, fc2 and out_proj, the head)
//                                               Replicated     all of it
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/climax.h"

namespace seqvit::model {

enum class TpSplit { Replicated, HeadRows, Rows, Columns };

TpSplit tp_split(const std::string& name);

// Appends to `runs` the runs of one tensor of logical shape `shape` whose rank-t-of-T share
// starts at local_offset in the rank's buffer and whose logical copy starts at logical_offset.
void append_tp_runs(TpSplit split, const std::vector<int64_t>& shape, int T, int t,
                    int64_t local_offset, int64_t logical_offset, std::vector<LogicalRun>& runs);

}  // namespace seqvit::model
