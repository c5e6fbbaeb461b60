// The rank grid (docs/parallelism.md): world = dp x pp x tp x sp ranks, laid out by
// an order string that lists the axes outermost first ("dp,pp,tp,sp": sp innermost, so an SP
// group is a run of consecutive ranks, on one node; tp next). For 2-D sequence parallelism the
// sp axis is itself sp_ring x sp_ulysses with the Ulysses sub-axis innermost.
//
// GridLayout is the pure arithmetic (coordinates, groups, description), usable without MPI;
// RankGrid builds one communicator per axis from it; validate() checks a configuration against
// the world size, the model and the batch before anything is allocated.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "parallel/comm.h"
#include "model/config.h"

namespace seqvit::parallel {

// Sequence-parallel scheme (docs/parallelism.md): Ulysses (all-to-all over heads), LSS (segments
// with an all-gather of K,V), ring (K,V blocks passed around), 2d (Ulysses inside a group x ring
// across groups: GridConfig::sp_outer, ring or lss).
enum class SpMode { Ulysses, Lss, Ring, TwoD };
std::string to_string(SpMode m);             // "ulysses" | "lss" | "ring" | "2d"
SpMode parse_sp_mode(const std::string& s);  // throws seqvit::Error listing the valid modes
SpMode parse_sp_outer(const std::string& s);  // "ring" | "lss"; throws otherwise

struct GridConfig {
  int dp = 1;          // data-parallel replicas
  int tp = 1;          // tensor-parallel degree (heads / MLP columns)
  int pp = 1;          // pipeline stages
  int sp_ulysses = 1;  // degree of the head-splitting SP axis (sp_mode ulysses or 2d)
  int sp_ring = 1;     // degree of the segment SP axis (sp_mode lss, ring or 2d)
  SpMode sp_mode = SpMode::Ulysses;
  SpMode sp_outer = SpMode::Ring;  // sp_mode 2d: the scheme across Ulysses groups (ring or lss)
  int zero = 0;            // ZeRO stage 0..3
  bool recompute = false;  // activation recomputation per block
  int micro_batches = 1;   // per step and data-parallel replica (pipeline / accumulation)
  std::string order = "dp,pp,tp,sp";  // axes, outermost first

  int sp() const { return sp_ulysses * sp_ring; }
  int64_t world_size() const { return int64_t(dp) * pp * tp * sp(); }
};

// The SP fields of `g` from the command line's --sp P --sp-mode M [--sp-ulysses U --sp-outer O]:
// ulysses puts P on sp_ulysses, lss and ring on sp_ring; 2d splits P = U x P/U (U must divide P)
// with O (ring or lss) across the Ulysses groups. sp_ulysses = 0 means "not given" (required for
// 2d, refused for the 1-D modes unless equal to P for ulysses). Throws seqvit::Error naming the
// values; the rest (heads, tokens) is validate()'s.
void set_sp_degrees(GridConfig& g, int sp, SpMode mode, int sp_ulysses = 0,
                    SpMode outer = SpMode::Ring);

// One axis of the grid, and the derived groups.
enum class Axis { Dp, Pp, Tp, Sp, SpUlysses, SpRing, SpDp };
inline constexpr std::array<Axis, 7> kAllAxes{Axis::Dp,        Axis::Pp,     Axis::Tp,  Axis::Sp,
                                              Axis::SpUlysses, Axis::SpRing, Axis::SpDp};
const char* to_string(Axis a);  // "dp", "pp", "tp", "sp", "sp_ulysses", "sp_ring", "sp_dp"

struct GridCoords {
  int dp = 0, pp = 0, tp = 0, sp = 0;
  int sp_ulysses = 0, sp_ring = 0;  // sp = sp_ring * sp_ulysses_degree + sp_ulysses
  bool operator==(const GridCoords&) const = default;
};

class GridLayout {
 public:
  // Checks the order string and that every degree is >= 1 (not the model: see validate()).
  explicit GridLayout(const GridConfig& config);

  const GridConfig& config() const { return c_; }
  int world_size() const { return static_cast<int>(c_.world_size()); }
  GridCoords coords(int rank) const;
  int rank_of(const GridCoords& c) const;
  // The group size of an axis (sp_dp: dp * sp).
  int degree(Axis a) const;
  // A rank's position in its group of `a`, the MPI rank it gets in that communicator
  // (sp_dp: dp * sp_degree + sp).
  int coord(Axis a, int rank) const;
  // The ranks of the group of `a` that holds `rank`, ordered by coord(a, .).
  std::vector<int> group(Axis a, int rank) const;
  // The smallest rank of that group; identifies the group (the split color).
  int group_id(Axis a, int rank) const;
  // All groups of `a`, ordered by group_id.
  std::vector<std::vector<int>> groups(Axis a) const;
  // What rank 0 prints: the layout, each rank's coordinates and, for each axis, which ranks
  // share each group.
  std::string describe() const;

 private:
  GridConfig c_;
  // Stride of dp, pp, tp, sp in the rank numbering (the innermost axis has stride 1).
  int stride_dp_ = 1, stride_pp_ = 1, stride_tp_ = 1, stride_sp_ = 1;
};

// Validates a configuration before any allocation; throws seqvit::Error naming the values and
// listing valid ones: the order string, degrees, sp_mode vs its degrees, zero stage, world size
// vs dp x pp x tp x sp, heads vs tp and the Ulysses degree, MLP width vs tp, tokens vs the SP
// degree, depth vs pp, batch vs dp and micro_batches. Calls model.validate() first.
void validate(const GridConfig& config, int64_t world_size, const model::ModelConfig& model,
              int64_t batch);

// [begin, end) of rank r of z over n values, [r n / z, (r + 1) n / z): the balanced split of a
// flat buffer over a group (ZeRO's own ranges, train/zero.h; the planner's bytes).
inline std::pair<int64_t, int64_t> zero_range(int64_t n, int z, int r) {
  return {n * r / z, n * (r + 1) / z};
}

// The communicators of this rank. Collective over `world` (every rank constructs it with the
// same config). Every communicator exists for every config; an axis of degree 1 gives a
// one-rank communicator, and in 1-D SP modes sp_ulysses or sp_ring coincides with sp.
class RankGrid {
 public:
  RankGrid(const Comm& world, const GridConfig& config);

  const GridLayout& layout() const { return layout_; }
  const GridConfig& config() const { return layout_.config(); }
  int rank() const { return rank_; }  // in `world`
  const GridCoords& coords() const { return coords_; }

  Comm& comm(Axis a) { return comms_[static_cast<int>(a)]; }
  Comm& dp() { return comm(Axis::Dp); }
  Comm& pp() { return comm(Axis::Pp); }
  Comm& tp() { return comm(Axis::Tp); }
  Comm& sp() { return comm(Axis::Sp); }
  Comm& sp_ulysses() { return comm(Axis::SpUlysses); }
  Comm& sp_ring() { return comm(Axis::SpRing); }
  Comm& sp_dp() { return comm(Axis::SpDp); }  // gradient averaging of SP-replicated weights

  // Counters of every communicator of the grid, and their reset.
  CommStats stats() const;
  void reset_stats();
  std::string describe() const { return layout_.describe(); }

 private:
  GridLayout layout_;
  int rank_ = 0;
  GridCoords coords_;
  std::vector<Comm> comms_;  // indexed by Axis
};

}  // namespace seqvit::parallel
