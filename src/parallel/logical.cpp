// Logical buffers from shards and back (see logical.h): the root exchanges with each rank in
// turn, first its runs (3 int64 each), then the run data packed in run order, in messages of at
// most kChunk floats (MPI counts are int).
#include "parallel/logical.h"

#include <algorithm>
#include <vector>

#include "core/check.h"

namespace seqvit::parallel {

namespace {

constexpr int64_t kChunk = int64_t{1} << 28;  // floats per message
constexpr int kTagRuns = 7101, kTagCount = 7102, kTagData = 7103;

int64_t run_floats(std::span<const model::LogicalRun> runs) {
  int64_t n = 0;
  for (const auto& r : runs) n += r.count;
  return n;
}

std::vector<int64_t> flatten(std::span<const model::LogicalRun> runs) {
  std::vector<int64_t> f;
  f.reserve(runs.size() * 3);
  for (const auto& r : runs) f.insert(f.end(), {r.local_offset, r.logical_offset, r.count});
  return f;
}

void send_floats(Comm& c, const float* p, int64_t n, int dest) {
  for (int64_t at = 0; at < n; at += kChunk) {
    const int64_t m = std::min(kChunk, n - at);
    c.isend(std::span<const float>(p + at, static_cast<size_t>(m)), dest, kTagData).wait();
  }
}

void recv_floats(Comm& c, float* p, int64_t n, int source) {
  for (int64_t at = 0; at < n; at += kChunk) {
    const int64_t m = std::min(kChunk, n - at);
    c.irecv(std::span<float>(p + at, static_cast<size_t>(m)), source, kTagData).wait();
  }
}

// Root side: the runs of rank r (root's own are given).
std::vector<int64_t> runs_of(Comm& c, int r) {
  int64_t n = 0;
  c.irecv(std::span<int64_t>(&n, 1), r, kTagCount).wait();
  std::vector<int64_t> f(static_cast<size_t>(n));
  if (n > 0) c.irecv(std::span<int64_t>(f), r, kTagRuns).wait();
  return f;
}

void send_runs(Comm& c, std::span<const model::LogicalRun> runs, int root) {
  const auto f = flatten(runs);
  const int64_t n = static_cast<int64_t>(f.size());
  c.isend(std::span<const int64_t>(&n, 1), root, kTagCount).wait();
  if (n > 0) c.isend(std::span<const int64_t>(f), root, kTagRuns).wait();
}

}  // namespace

void check_runs(std::span<const model::LogicalRun> runs, int64_t local_total,
                int64_t logical_total) {
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i];
    SEQVIT_CHECK(r.count >= 0 && r.local_offset >= 0 && r.logical_offset >= 0 &&
                     r.local_offset + r.count <= local_total &&
                     r.logical_offset + r.count <= logical_total,
                 "logical run {} (local {}, logical {}, count {}) lies outside the local buffer "
                 "of {} or the logical buffer of {} floats",
                 i, r.local_offset, r.logical_offset, r.count, local_total, logical_total);
  }
}

void gather_logical(Comm& c, std::span<const model::LogicalRun> runs, const float* local,
                    float* logical, int64_t logical_total, int root) {
  if (c.rank() != root) {
    send_runs(c, runs, root);
    std::vector<float> packed(static_cast<size_t>(run_floats(runs)));
    float* dst = packed.data();
    for (const auto& r : runs) dst = std::copy_n(local + r.local_offset, r.count, dst);
    send_floats(c, packed.data(), static_cast<int64_t>(packed.size()), root);
    return;
  }
  // Highest rank first, so that where ranks share an element the lowest rank's value stays.
  std::vector<float> packed;
  for (int r = c.size() - 1; r >= 0; --r) {
    if (r == root) {
      for (const auto& run : runs)
        std::copy_n(local + run.local_offset, run.count, logical + run.logical_offset);
      continue;
    }
    const auto f = runs_of(c, r);
    int64_t n = 0;
    for (size_t i = 2; i < f.size(); i += 3) n += f[i];
    packed.resize(static_cast<size_t>(n));
    recv_floats(c, packed.data(), n, r);
    const float* src = packed.data();
    for (size_t i = 0; i < f.size(); i += 3) {
      SEQVIT_CHECK(f[i + 1] >= 0 && f[i + 2] >= 0 && f[i + 1] + f[i + 2] <= logical_total,
                   "rank {} sent a logical run [{}, +{}) outside the logical buffer of {} floats",
                   r, f[i + 1], f[i + 2], logical_total);
      std::copy_n(src, f[i + 2], logical + f[i + 1]);
      src += f[i + 2];
    }
  }
}

void scatter_logical(Comm& c, std::span<const model::LogicalRun> runs, float* local,
                     const float* logical, int64_t logical_total, int root) {
  if (c.rank() != root) {
    send_runs(c, runs, root);
    std::vector<float> packed(static_cast<size_t>(run_floats(runs)));
    recv_floats(c, packed.data(), static_cast<int64_t>(packed.size()), root);
    const float* src = packed.data();
    for (const auto& r : runs) {
      std::copy_n(src, r.count, local + r.local_offset);
      src += r.count;
    }
    return;
  }
  std::vector<float> packed;
  for (int r = 0; r < c.size(); ++r) {
    if (r == root) {
      for (const auto& run : runs)
        std::copy_n(logical + run.logical_offset, run.count, local + run.local_offset);
      continue;
    }
    const auto f = runs_of(c, r);
    packed.clear();
    for (size_t i = 0; i < f.size(); i += 3) {
      SEQVIT_CHECK(f[i + 1] >= 0 && f[i + 2] >= 0 && f[i + 1] + f[i + 2] <= logical_total,
                   "rank {} asked for a logical run [{}, +{}) outside the logical buffer of {} "
                   "floats",
                   r, f[i + 1], f[i + 2], logical_total);
      packed.insert(packed.end(), logical + f[i + 1], logical + f[i + 1] + f[i + 2]);
    }
    send_floats(c, packed.data(), static_cast<int64_t>(packed.size()), r);
  }
}

}  // namespace seqvit::parallel
