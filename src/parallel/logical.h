// Logical (single-process) parameter buffers from sharded ones and back (model::LogicalRun):
// what checkpoints, `seqvit grad` and cross-layout resume use, whatever the layout. Every rank
// describes its share of the logical buffer by runs; a logical element held by several ranks
// (replicas over DP, SP or TP) must have the same value on each of them.
//
// These are point-to-point exchanges with one root, for checkpoints and reports, not for the
// training step: the root holds the whole logical buffer, the others only their share.
#pragma once

#include <cstdint>
#include <span>

#include "parallel/comm.h"
#include "model/climax.h"

namespace seqvit::parallel {

// Assembles logical[logical_total] on `root` from every rank's `local` buffer described by its
// `runs`. Elements that no rank holds are left as they were; where several ranks hold one, the
// lowest rank's value is kept. `logical` is read only on root (may be null elsewhere).
// Collective over `c`.
void gather_logical(Comm& c, std::span<const model::LogicalRun> runs, const float* local,
                    float* logical, int64_t logical_total, int root);

// The inverse: every rank fills the parts of `local` described by its runs from root's
// logical[logical_total] (read only on root). Collective over `c`.
void scatter_logical(Comm& c, std::span<const model::LogicalRun> runs, float* local,
                     const float* logical, int64_t logical_total, int root);

// Checks runs against the buffer sizes (inside both buffers, count >= 0); throws seqvit::Error
// naming the run.
void check_runs(std::span<const model::LogicalRun> runs, int64_t local_total,
                int64_t logical_total);

}  // namespace seqvit::parallel
