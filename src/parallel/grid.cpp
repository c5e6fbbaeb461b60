// Rank grid arithmetic, configuration validation and per-axis communicators (see grid.h).
#include "parallel/grid.h"

#include <algorithm>
#include <numeric>
#include <sstream>

#include "core/check.h"

namespace seqvit::parallel {

std::string to_string(SpMode m) {
  switch (m) {
    case SpMode::Ulysses: return "ulysses";
    case SpMode::Lss: return "lss";
    case SpMode::Ring: return "ring";
    case SpMode::TwoD: return "2d";
  }
  return "?";
}

SpMode parse_sp_mode(const std::string& s) {
  if (s == "ulysses") return SpMode::Ulysses;
  if (s == "lss") return SpMode::Lss;
  if (s == "ring") return SpMode::Ring;
  if (s == "2d") return SpMode::TwoD;
  fail("unknown sp_mode '{}': valid modes are ulysses, lss, ring and 2d", s);
}

SpMode parse_sp_outer(const std::string& s) {
  if (s == "ring") return SpMode::Ring;
  if (s == "lss") return SpMode::Lss;
  fail("unknown sp_outer '{}': 2-D SP runs ring or lss across its Ulysses groups", s);
}

const char* to_string(Axis a) {
  switch (a) {
    case Axis::Dp: return "dp";
    case Axis::Pp: return "pp";
    case Axis::Tp: return "tp";
    case Axis::Sp: return "sp";
    case Axis::SpUlysses: return "sp_ulysses";
    case Axis::SpRing: return "sp_ring";
    case Axis::SpDp: return "sp_dp";
  }
  return "?";
}

namespace {

constexpr const char* kDefaultOrder = "dp,pp,tp,sp";

std::vector<int64_t> divisors(int64_t n) {
  std::vector<int64_t> d;
  for (int64_t k = 1; k * k <= n; ++k)
    if (n % k == 0) {
      d.push_back(k);
      if (k != n / k) d.push_back(n / k);
    }
  std::sort(d.begin(), d.end());
  return d;
}

std::string join(const std::vector<int64_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += i + 1 == v.size() ? " or " : ", ";
    s += std::to_string(v[i]);
  }
  return s;
}

// The order string as axis names, outermost first; throws naming what is wrong.
std::vector<std::string> parse_order(const std::string& order) {
  static const std::vector<std::string> names{"dp", "pp", "tp", "sp"};
  std::vector<std::string> axes;
  std::stringstream ss(order);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    axes.push_back(item);
  }
  std::string problem;
  for (const auto& a : axes) {
    if (std::find(names.begin(), names.end(), a) == names.end()) {
      problem = fmt::format("unknown axis '{}'", a);
      break;
    }
    if (std::count(axes.begin(), axes.end(), a) > 1) {
      problem = fmt::format("'{}' is listed twice", a);
      break;
    }
  }
  if (problem.empty())
    for (const auto& n : names)
      if (std::find(axes.begin(), axes.end(), n) == axes.end()) {
        problem = fmt::format("'{}' is missing", n);
        break;
      }
  if (!problem.empty())
    fail(
        "grid order '{}': {}; the order lists each of dp, pp, tp, sp exactly once, outermost "
        "first, e.g. '{}' (sp innermost, then tp)",
        order, problem, kDefaultOrder);
  return axes;
}

void check_degrees(const GridConfig& c) {
  const std::pair<const char*, int> degrees[] = {{"dp", c.dp},
                                                 {"tp", c.tp},
                                                 {"pp", c.pp},
                                                 {"sp_ulysses", c.sp_ulysses},
                                                 {"sp_ring", c.sp_ring}};
  for (const auto& [name, v] : degrees)
    if (v < 1) fail("{} must be >= 1, got {}", name, v);
  if (c.world_size() > (1 << 30))
    fail("grid dp {} x pp {} x tp {} x sp {} is too large", c.dp, c.pp, c.tp, c.sp());
}

// Ranks as "[0 1 2 3]".
std::string bracket(const std::vector<int>& ranks) {
  std::string s = "[";
  for (size_t i = 0; i < ranks.size(); ++i) s += (i ? " " : "") + std::to_string(ranks[i]);
  return s + "]";
}

}  // namespace

// ---- GridLayout -------------------------------------------------------------------------------

GridLayout::GridLayout(const GridConfig& config) : c_(config) {
  check_degrees(c_);
  const auto order = parse_order(c_.order);
  int stride = 1;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {  // innermost first
    if (*it == "dp") stride_dp_ = stride, stride *= c_.dp;
    if (*it == "pp") stride_pp_ = stride, stride *= c_.pp;
    if (*it == "tp") stride_tp_ = stride, stride *= c_.tp;
    if (*it == "sp") stride_sp_ = stride, stride *= c_.sp();
  }
}

GridCoords GridLayout::coords(int rank) const {
  SEQVIT_CHECK(rank >= 0 && rank < world_size(), "rank {} is not in the grid of {} ranks", rank,
               world_size());
  GridCoords g;
  g.dp = (rank / stride_dp_) % c_.dp;
  g.pp = (rank / stride_pp_) % c_.pp;
  g.tp = (rank / stride_tp_) % c_.tp;
  g.sp = (rank / stride_sp_) % c_.sp();
  g.sp_ulysses = g.sp % c_.sp_ulysses;
  g.sp_ring = g.sp / c_.sp_ulysses;
  return g;
}

int GridLayout::rank_of(const GridCoords& g) const {
  return g.dp * stride_dp_ + g.pp * stride_pp_ + g.tp * stride_tp_ + g.sp * stride_sp_;
}

int GridLayout::degree(Axis a) const {
  switch (a) {
    case Axis::Dp: return c_.dp;
    case Axis::Pp: return c_.pp;
    case Axis::Tp: return c_.tp;
    case Axis::Sp: return c_.sp();
    case Axis::SpUlysses: return c_.sp_ulysses;
    case Axis::SpRing: return c_.sp_ring;
    case Axis::SpDp: return c_.dp * c_.sp();
  }
  return 1;
}

int GridLayout::coord(Axis a, int rank) const {
  const GridCoords g = coords(rank);
  switch (a) {
    case Axis::Dp: return g.dp;
    case Axis::Pp: return g.pp;
    case Axis::Tp: return g.tp;
    case Axis::Sp: return g.sp;
    case Axis::SpUlysses: return g.sp_ulysses;
    case Axis::SpRing: return g.sp_ring;
    case Axis::SpDp: return g.dp * c_.sp() + g.sp;
  }
  return 0;
}

std::vector<int> GridLayout::group(Axis a, int rank) const {
  const GridCoords base = coords(rank);
  std::vector<int> out;
  out.reserve(degree(a));
  for (int v = 0; v < degree(a); ++v) {
    GridCoords g = base;
    switch (a) {
      case Axis::Dp: g.dp = v; break;
      case Axis::Pp: g.pp = v; break;
      case Axis::Tp: g.tp = v; break;
      case Axis::Sp: g.sp = v; break;
      case Axis::SpUlysses: g.sp = base.sp_ring * c_.sp_ulysses + v; break;
      case Axis::SpRing: g.sp = v * c_.sp_ulysses + base.sp_ulysses; break;
      case Axis::SpDp: g.dp = v / c_.sp(), g.sp = v % c_.sp(); break;
    }
    out.push_back(rank_of(g));
  }
  return out;
}

int GridLayout::group_id(Axis a, int rank) const {
  const auto g = group(a, rank);
  return *std::min_element(g.begin(), g.end());
}

std::vector<std::vector<int>> GridLayout::groups(Axis a) const {
  std::vector<std::vector<int>> out;
  for (int r = 0; r < world_size(); ++r)
    if (group_id(a, r) == r) out.push_back(group(a, r));
  return out;
}

std::string GridLayout::describe() const {
  constexpr int kMaxRanks = 64, kMaxGroups = 16;
  const bool two_d = c_.sp_mode == SpMode::TwoD;
  std::string s = fmt::format("rank grid: {} ranks = dp {} x pp {} x tp {} x sp {}", world_size(),
                              c_.dp, c_.pp, c_.tp, c_.sp());
  if (two_d) s += fmt::format(" (sp_ring {} x sp_ulysses {})", c_.sp_ring, c_.sp_ulysses);
  s += fmt::format(", order {} (outermost first)\n", c_.order);
  s += fmt::format("  sp_mode {}{}, zero {}, micro_batches {}, recompute {}\n",
                   to_string(c_.sp_mode),
                   two_d ? fmt::format(" (ulysses inside, {} across)", to_string(c_.sp_outer)) : "",
                   c_.zero, c_.micro_batches, c_.recompute ? "on" : "off");
  s += two_d ? "  rank: (dp, pp, tp, sp = ring.ulysses)\n" : "  rank: (dp, pp, tp, sp)\n";
  std::string line;
  for (int r = 0; r < std::min(world_size(), kMaxRanks); ++r) {
    const GridCoords g = coords(r);
    std::string item =
        two_d ? fmt::format("{}: ({}, {}, {}, {}.{})", r, g.dp, g.pp, g.tp, g.sp_ring, g.sp_ulysses)
              : fmt::format("{}: ({}, {}, {}, {})", r, g.dp, g.pp, g.tp, g.sp);
    if (line.size() + item.size() > 92) s += "   " + line + "\n", line.clear();
    line += "  " + item;
  }
  if (!line.empty()) s += "   " + line + "\n";
  if (world_size() > kMaxRanks)
    s += fmt::format("    ... and {} more ranks\n", world_size() - kMaxRanks);

  std::vector<Axis> axes{Axis::Dp, Axis::Pp, Axis::Tp, Axis::Sp};
  if (two_d) axes.insert(axes.end(), {Axis::SpUlysses, Axis::SpRing});
  axes.push_back(Axis::SpDp);
  for (Axis a : axes) {
    const char* what = a == Axis::SpDp ? " (gradient averaging over sp x dp)" : "";
    if (degree(a) == 1) {
      s += fmt::format("  {} groups: size 1, no communication{}\n", to_string(a), what);
      continue;
    }
    const auto gs = groups(a);
    s += fmt::format("  {} groups ({} of {} ranks){}:", to_string(a), gs.size(), degree(a), what);
    for (size_t i = 0; i < gs.size() && i < kMaxGroups; ++i) s += " " + bracket(gs[i]);
    if (gs.size() > kMaxGroups) s += fmt::format(" ... and {} more", gs.size() - kMaxGroups);
    s += "\n";
  }
  return s;
}

// ---- validation -------------------------------------------------------------------------------

void validate(const GridConfig& c, int64_t world_size, const model::ModelConfig& m, int64_t batch) {
  m.validate();
  parse_order(c.order);
  check_degrees(c);
  if (c.zero < 0 || c.zero > 3)
    fail(
        "zero stage {} is out of range: valid stages are 0 (off), 1 (optimizer state sharded), "
        "2 (+ gradients), 3 (+ parameters)",
        c.zero);
  if (c.micro_batches < 1) fail("micro_batches must be >= 1, got {}", c.micro_batches);
  if (m.attention == model::AttentionKernel::Dense && c.sp() > 1)
    fail("--attention dense does not work with sequence parallelism (sp = {}): the SP "
         "operators run flash attention; valid choices with sp > 1: flash",
         c.sp());

  // The SP degrees each mode uses.
  const std::string mode = to_string(c.sp_mode);
  if (c.sp_mode == SpMode::Ulysses && c.sp_ring != 1)
    fail(
        "sp_mode ulysses uses sp_ulysses only, but sp_ring = {}; use sp_mode 2d for Ulysses "
        "inside groups x ring across them",
        c.sp_ring);
  if ((c.sp_mode == SpMode::Lss || c.sp_mode == SpMode::Ring) && c.sp_ulysses != 1)
    fail(
        "sp_mode {} splits the sequence into segments over sp_ring, but sp_ulysses = {}; set "
        "sp_ring = {} and sp_ulysses = 1, or use sp_mode 2d",
        mode, c.sp_ulysses, c.sp_ulysses * c.sp_ring);
  if (c.sp_mode == SpMode::TwoD && c.sp_outer != SpMode::Ring && c.sp_outer != SpMode::Lss)
    fail("sp_mode 2d runs ring or lss across its Ulysses groups, but sp_outer = {}",
         to_string(c.sp_outer));

  // World size.
  const int64_t product = c.world_size();
  if (world_size != product) {
    const int64_t replica = int64_t(c.pp) * c.tp * c.sp();
    std::string hint =
        world_size % replica == 0
            ? fmt::format("with {} ranks use dp = {}", world_size, world_size / replica)
            : fmt::format(
                  "pp x tp x sp = {} does not divide {}; world sizes that fit are "
                  "multiples of {}",
                  replica, world_size, replica);
    fail("world size {} does not match the grid dp {} x pp {} x tp {} x sp {} = {}; {}", world_size,
         c.dp, c.pp, c.tp, c.sp(), product, hint);
  }

  // Tensor parallelism splits heads (qkv columns, proj rows) and MLP hidden units.
  const int64_t heads = m.num_heads, hidden = m.hidden();
  if (heads % c.tp != 0 || hidden % c.tp != 0) {
    std::vector<int64_t> valid;
    for (int64_t d : divisors(heads))
      if (hidden % d == 0) valid.push_back(d);
    fail("tp = {} must divide the {} heads and the MLP width {}; valid tp: {}", c.tp, heads, hidden,
         join(valid));
  }

  // Ulysses splits the heads of a tensor-parallel shard; uneven splits (per-rank head counts
  // differing by one) are allowed when there are at least as many heads as ranks.
  const int64_t local_heads = heads / c.tp;
  if (c.sp_ulysses > local_heads) {
    const std::string heads_desc =
        c.tp == 1 ? fmt::format("{} heads", heads)
                  : fmt::format("{} heads per tensor-parallel rank ({} heads / tp {})", local_heads,
                                heads, c.tp);
    fail(
        "{} cannot be split over sp_ulysses = {}: uneven head splits are allowed only when "
        "heads >= degree; valid Ulysses degrees: 1 to {} (even splits: {})",
        heads_desc, c.sp_ulysses, local_heads, join(divisors(local_heads)));
  }

  // Every SP rank holds an equal segment of the N tokens.
  const int64_t n = m.N();
  if (n % c.sp() != 0) {
    const std::string sp_desc =
        c.sp_mode == SpMode::TwoD
            ? fmt::format("sp = sp_ulysses {} x sp_ring {} = {}", c.sp_ulysses, c.sp_ring, c.sp())
            : fmt::format("sp = {}", c.sp());
    fail(
        "{} tokens ({} tokenization, {}x{} grid, patch {}) cannot be split into equal segments "
        "over {}; SP degrees that divide {}: {}",
        n, model::to_string(m.tokenization), m.img_h, m.img_w, m.patch_size, sp_desc, n,
        join(divisors(n)));
  }

  // Pipeline stages hold equal numbers of blocks.
  if (c.pp > 1 && (m.depth < c.pp || m.depth % c.pp != 0))
    fail(
        "depth {} cannot be split into pp = {} pipeline stages of equal block counts; valid pp: "
        "{}",
        m.depth, c.pp, m.depth > 0 ? join(divisors(m.depth)) : std::string("1"));

  // The global batch is split over dp replicas, then into micro-batches.
  if (batch < 1) fail("batch must be >= 1, got {}", batch);
  if (batch % c.dp != 0)
    fail(
        "global batch {} cannot be split over dp = {} data-parallel replicas; use a batch that "
        "is a multiple of {} (dp that divide {}: {})",
        batch, c.dp, c.dp, batch, join(divisors(batch)));
  const int64_t local = batch / c.dp;
  if (local % c.micro_batches != 0)
    fail(
        "the batch per data-parallel replica, {} (batch {} / dp {}), cannot be split into "
        "micro_batches = {}; valid micro-batch counts: {}",
        local, batch, c.dp, c.micro_batches, join(divisors(local)));
}

void set_sp_degrees(GridConfig& g, int sp, SpMode mode, int sp_ulysses, SpMode outer) {
  if (sp < 1) fail("--sp must be >= 1, got {}", sp);
  g.sp_mode = mode;
  g.sp_outer = outer;
  if (mode != SpMode::TwoD) {
    if (sp_ulysses != 0 && !(mode == SpMode::Ulysses && sp_ulysses == sp))
      fail("--sp-ulysses {} is for --sp-mode 2d; with --sp-mode {} all {} SP ranks use one scheme",
           sp_ulysses, to_string(mode), sp);
    g.sp_ulysses = mode == SpMode::Ulysses ? sp : 1;
    g.sp_ring = mode == SpMode::Ulysses ? 1 : sp;
    return;
  }
  if (sp_ulysses < 1 || sp % sp_ulysses != 0)
    fail(
        "--sp-mode 2d needs --sp-ulysses U dividing --sp {} (U ranks split the heads inside a "
        "group, --sp / U groups run {} across them); got {}; valid U: {}",
        sp, to_string(outer), sp_ulysses == 0 ? std::string("none") : std::to_string(sp_ulysses),
        join(divisors(sp)));
  g.sp_ulysses = sp_ulysses;
  g.sp_ring = sp / sp_ulysses;
}

// ---- RankGrid ---------------------------------------------------------------------------------

RankGrid::RankGrid(const Comm& world, const GridConfig& config) : layout_(config) {
  if (world.size() != layout_.world_size())
    fail("communicator '{}' has {} ranks but the grid dp {} x pp {} x tp {} x sp {} needs {}",
         world.name(), world.size(), config.dp, config.pp, config.tp, config.sp(),
         layout_.world_size());
  rank_ = world.rank();
  coords_ = layout_.coords(rank_);
  comms_.reserve(kAllAxes.size());
  for (Axis a : kAllAxes)
    comms_.push_back(
        world.split(layout_.group_id(a, rank_), layout_.coord(a, rank_), to_string(a)));
}

CommStats RankGrid::stats() const {
  CommStats s;
  for (const auto& c : comms_) s += c.stats();
  return s;
}

void RankGrid::reset_stats() {
  for (auto& c : comms_) c.reset_stats();
}

}  // namespace seqvit::parallel
