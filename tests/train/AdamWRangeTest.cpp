// AdamW on ranges of the flat buffer (ZeRO, train/zero.h): ranges that cut through tensors
// (decayed and undecayed ones) together give bitwise the update of the whole-table optimizer,
// given the same global norm, with or without clipping; and PageBuffer::release hands back only
// whole interior pages, never a neighbour's data.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "core/check.h"
#include "core/page_buffer.h"
#include "core/rng.h"
#include "train/optimizer.h"

using namespace seqvit;

namespace {

TensorTable table() {
  TensorTable t;
  t.add("pos_embed", {1, 37, 8});  // no weight decay
  t.add("blocks.0.attn.qkv.weight", {24, 8});
  t.add("var_embed", {1, 3, 8});  // no weight decay
  t.add("head.0.bias", {13});
  return t;
}

void run(double clip) {
  const TensorTable t = table();
  const int64_t n = t.total();
  train::OptimConfig c;
  c.weight_decay = 0.3;
  c.warmup_steps = 0;
  c.grad_clip = clip;
  Rng rng(7);
  std::vector<float> p0(n), g(n);
  for (const auto& e : t.entries())
    for (int64_t i = 0; i < e.numel; ++i) {
      p0[e.offset + i] = static_cast<float>(rng.normal());
      g[e.offset + i] = static_cast<float>(rng.normal());
    }
  std::vector<float> pf = p0, gf = g;
  train::AdamW full(t, c);
  // split into 4 ranges at points inside tensors
  const std::vector<int64_t> cut = {0, 150, 400, 505, n};  // inside pos_embed, qkv, var_embed
  std::vector<std::unique_ptr<train::AdamW>> parts;
  for (size_t k = 0; k + 1 < cut.size(); ++k)
    parts.push_back(std::make_unique<train::AdamW>(t, c, cut[k], cut[k + 1]));
  std::vector<float> pr = p0;
  for (int step = 0; step < 3; ++step) {
    std::vector<float> gs = g;
    gf = g;
    const double norm = full.step(pf.data(), gf.data());
    double sq = 0;
    for (auto& a : parts) sq += a->range_sum_squares(gs.data() + a->begin());
    EXPECT_NEAR(std::sqrt(sq), norm, 1e-9 * norm);
    for (auto& a : parts) a->update(pr.data() + a->begin(), gs.data() + a->begin(), norm);
    EXPECT_EQ(std::memcmp(pr.data(), pf.data(), sizeof(float) * n), 0) << "step " << step;
  }
  for (auto& a : parts) {
    EXPECT_EQ(a->state_bytes(), 2 * sizeof(float) * static_cast<size_t>(a->end() - a->begin()));
    EXPECT_EQ(std::memcmp(a->m(), full.m() + a->begin(), sizeof(float) * (a->end() - a->begin())),
              0);
  }
}

TEST(AdamWRange, RangesThroughTensorsEqualTheWholeTable) { run(0); }
TEST(AdamWRange, RangesWithClippingByTheGlobalNorm) { run(0.5); }

TEST(AdamWRange, RejectsARangeOutsideTheTable) {
  const TensorTable t = table();
  EXPECT_THROW(train::AdamW(t, train::OptimConfig{}, 5, t.total() + 1), seqvit::Error);
}

TEST(PageBuffer, ReleaseKeepsPagesSharedWithNeighbours) {
  const int64_t per_page = static_cast<int64_t>(page_bytes() / sizeof(float));
  const int64_t n = 4 * per_page + 100;
  PageBuffer b(n);
  for (int64_t i = 0; i < n; ++i) b.data()[i] = 1.f;
  std::vector<unsigned char> scratch;
  EXPECT_EQ(resident_bytes(b.data(), n, scratch), 5 * page_bytes());
  // [per_page/2, 3.5 pages): only pages 1 and 2 are wholly inside
  b.release(per_page / 2, 3 * per_page);
  EXPECT_EQ(resident_bytes(b.data(), n, scratch), 3 * page_bytes());
  for (int64_t i = 0; i < n; ++i) {
    const bool gone = i >= per_page && i < 3 * per_page;
    ASSERT_EQ(b.data()[i], gone ? 0.f : 1.f) << i;  // released pages read as zero
  }
  b.release(3 * per_page + 1, n - 3 * per_page - 1);  // the tail: its last page is ours
  EXPECT_EQ(b.data()[3 * per_page], 1.f);
  EXPECT_EQ(b.data()[4 * per_page + 50], 0.f);
}

}  // namespace
