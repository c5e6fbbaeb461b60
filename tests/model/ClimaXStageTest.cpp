// Pipeline stages of ClimaX in one process (model/climax.h ModelShard, activation slots): two
// stages chained by hand, with two micro-batches in flight in different slots, give the whole
// model's loss and every gradient; a stage's logical runs and init are the single-process ones;
// bad block ranges and slots are refused with clear messages; a stage's init does not hold the
// whole model.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "core/check.h"
#include "model/climax.h"
#include "model/model_batch.h"
#include "rel_err.h"

using namespace seqvit;

namespace {

using seqvit_test::rel_err;
using seqvit_test::tensor;

model::ModelShard blocks(int64_t first, int64_t last) {
  model::ModelShard s;
  s.first_block = first;
  s.last_block = last;
  return s;
}

void chain(model::Tokenization tok) {
  model::ModelConfig c = seqvit_test::tiny_config(tok);
  c.depth = 3;
  constexpr int64_t B = 4, Bm = 2;
  model::ClimaX whole(c), s0(c, blocks(0, 1)), s1(c, blocks(1, 3));
  EXPECT_TRUE(s0.has_embed() && !s0.has_head() && !s1.has_embed() && s1.has_head());
  const int64_t n = whole.params().total();
  std::vector<float> P(n), g(n, 0.f), P0(s0.params().total()), P1(s1.params().total());
  whole.init(P.data(), 9);
  s0.init(P0.data(), 9);
  s1.init(P1.data(), 9);
  // each stage is one contiguous run of the logical buffer, with the single-process values
  for (auto* s : {&s0, &s1}) {
    const auto runs = s->logical_runs();
    ASSERT_EQ(runs.size(), 1u);
    const auto& last = s->params().entries().back();
    EXPECT_EQ(runs[0].local_offset, 0);
    EXPECT_EQ(runs[0].count, last.offset + last.numel);  // trailing padding is not logical
    EXPECT_EQ(s->logical_total(), n);
    const float* mine = s == &s0 ? P0.data() : P1.data();
    EXPECT_EQ(std::memcmp(mine, P.data() + runs[0].logical_offset,
                          sizeof(float) * runs[0].count), 0);
  }
  EXPECT_EQ(s0.logical_runs()[0].logical_offset, 0);
  const auto& tail = whole.params().entries().back();
  EXPECT_EQ(s1.logical_runs()[0].logical_offset + s1.logical_runs()[0].count,
            tail.offset + tail.numel);

  seqvit_test::RandomBatch data(c, B);
  const model::BatchView b = data.batch(2);
  whole.plan(B, model::Precision::F32);
  const double lref = whole.forward(P.data(), b);
  whole.backward(P.data(), g.data());

  // two micro-batches of 2, both in flight (GPipe-like), normalised by the global batch
  s0.plan(Bm, model::Precision::F32, nullptr, B, 2);
  s1.plan(Bm, model::Precision::F32, nullptr, B, 2);
  std::vector<float> G0(P0.size(), 0.f), G1(P1.size(), 0.f);
  const int64_t HW = c.img_h * c.img_w, e = s0.stage_elems(Bm);
  double loss = 0;
  for (int k = 0; k < 2; ++k) {
    model::BatchView mb{Bm, b.x + k * Bm * c.V() * HW, b.y + k * Bm * c.Vo() * HW,
                        b.lead_times + k * Bm, b.lat};
    s0.select_slot(k);
    s1.select_slot(k);
    EXPECT_EQ(s0.forward(P0.data(), mb), 0.0);
    std::memcpy(s1.stage_input(), s0.stage_output(), sizeof(float) * e);
    loss += s1.forward(P1.data(), mb);
  }
  for (int k = 0; k < 2; ++k) {
    s0.select_slot(k);
    s1.select_slot(k);
    s1.backward(P1.data(), G1.data());
    std::memcpy(s0.stage_output_grad(), s1.stage_input_grad(), sizeof(float) * e);
    s0.backward(P0.data(), G0.data());
  }
  EXPECT_LE(std::fabs(loss - lref) / lref, 1e-6);
  for (auto* s : {&s0, &s1})
    for (const auto& t : s->params().entries()) {
      const float* G = s == &s0 ? G0.data() : G1.data();
      EXPECT_LE(rel_err(tensor(G, t), tensor(g.data(), whole.params().get(t.name))), 1e-5)
          << t.name;
    }
  // two slots of saved activations, one set of scratch
  EXPECT_GT(s0.activation_bytes(), 0u);
}

// This process's peak resident memory (VmHWM) in bytes, and a restart of it.
size_t peak_rss() {
  std::ifstream f("/proc/self/status");
  std::string key;
  size_t kib = 0;
  while (f >> key)
    if (key == "VmHWM:" && f >> kib) return kib * 1024;
  return 0;
}
void reset_peak_rss() {
  if (FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
    std::fputs("5", f);
    std::fclose(f);
  }
}

TEST(ClimaXStage, TwoStagesTwoSlotsMatchTheWholeModelAggregate) {
  chain(model::Tokenization::Aggregate);
}
TEST(ClimaXStage, TwoStagesTwoSlotsMatchTheWholeModelPerVariable) {
  chain(model::Tokenization::PerVariable);
}

TEST(ClimaXStage, RefusesBadRangesAndSlots) {
  const model::ModelConfig c = seqvit_test::tiny_config();  // depth 2
  for (auto [f, l] : {std::pair<int64_t, int64_t>{1, 1}, {0, 3}, {-1, 1}, {2, 2}}) {
    try {
      model::ClimaX m(c, blocks(f, l));
      ADD_FAILURE() << "accepted blocks [" << f << ", " << l << ")";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("0 <= first < last <= depth"), std::string::npos)
          << e.what();
    }
  }
  model::ClimaX m(c, blocks(1, 2));
  EXPECT_THROW(m.plan(1, model::Precision::F32, nullptr, 0, 0), Error);
  m.plan(1, model::Precision::F32, nullptr, 0, 2);
  EXPECT_THROW(m.select_slot(2), Error);
}

// The last block of an 8-block model as a stage: its init streams the single-process
// initialisation tensor by tensor, so its peak memory stays far below the whole model (8 x 12.6
// MB here), and its values are still the single-process ones.
TEST(ClimaXStage, InitDoesNotHoldTheWholeModel) {
  model::ModelConfig c = seqvit_test::tiny_config(model::Tokenization::Aggregate);
  c.embed_dim = 512;
  c.num_heads = 8;
  c.depth = 8;
  model::ClimaX whole(c), last(c, blocks(7, 8));
  std::vector<float> mine(static_cast<size_t>(last.params().total()));
  std::memset(mine.data(), 0, mine.size() * sizeof(float));  // committed before measuring
  const size_t whole_bytes = sizeof(float) * static_cast<size_t>(whole.params().total());
  ASSERT_GT(whole_bytes, size_t{90} << 20);
  reset_peak_rss();
  const size_t before = peak_rss();
  last.init(mine.data(), 5);
  const size_t grew = peak_rss() - before;
  EXPECT_LT(grew, whole_bytes / 4) << "init of one stage held " << grew << " bytes; the whole "
                                   << "model is " << whole_bytes;
  std::vector<float> P(static_cast<size_t>(whole.params().total()));
  whole.init(P.data(), 5);
  const auto runs = last.logical_runs();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(std::memcmp(mine.data(), P.data() + runs[0].logical_offset,
                        sizeof(float) * runs[0].count), 0);
}

}  // namespace
