// ClimaX with dense (standard) block attention vs flash: the same loss and every gradient in
// fp32 (relative error <= 1e-5), with and without activation recomputation, both
// tokenizations; the planned memory grows by exactly the probability buffers [B, Ht, N, N] per
// block (one shared buffer with recomputation) plus the difference of the attention scratch;
// refused under sequence parallelism.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/check.h"
#include "backend/device.h"
#include "model/climax.h"
#include "rel_err.h"
#include "model/model_batch.h"

using namespace seqvit;
using namespace seqvit::model;

namespace {

struct Result {
  double loss = 0;
  std::vector<float> grads, pred;
  size_t act = 0, ws = 0;
};

Result run(ModelConfig c, AttentionKernel k, bool recompute, Precision prec = Precision::F32) {
  c.attention = k;
  ClimaX m(c);
  m.set_recompute(recompute);
  const int64_t B = 2;
  std::vector<float> P(m.params().total());
  m.init(P.data(), 11);
  m.plan(B, prec);
  m.sync_weights(P.data());
  seqvit_test::RandomBatch data(c, B);
  const BatchView b = data.batch(3);
  Result r;
  r.pred.resize(B * c.Vo() * c.img_h * c.img_w);
  r.loss = m.forward(P.data(), b, r.pred.data());
  r.grads.assign(P.size(), 0.f);
  m.backward(P.data(), r.grads.data());
  r.act = m.activation_bytes();
  r.ws = m.workspace_bytes();
  return r;
}

// Attention scratch as ClimaX::plan sizes it: the block attention's or the aggregation's.
size_t attention_scratch(const ModelConfig& c, bool dense, int64_t B) {
  AttentionArgs blk;
  blk.batch = B;
  blk.heads = c.num_heads;
  blk.nq = blk.nk = c.N();
  blk.head_dim = c.head_dim();
  backend::Device& dev = backend::cpu();
  using backend::AttentionKind;
  size_t ws = dev.attention_workspace_bytes(dense ? AttentionKind::Dense : AttentionKind::Flash,
                                            blk);
  if (c.tokenization == Tokenization::Aggregate) {
    AttentionArgs ag = blk;
    ag.batch = c.Lp();
    ag.nq = 1;
    ag.nk = c.V();
    ws = std::max(ws, dev.attention_workspace_bytes(AttentionKind::Flash, ag));
  }
  return ws;
}

void check_same(Tokenization tok, bool recompute) {
  const ModelConfig c = seqvit_test::tiny_config(tok);
  const Result f = run(c, AttentionKernel::Flash, recompute);
  const Result d = run(c, AttentionKernel::Dense, recompute);
  const std::string where = to_string(tok) + (recompute ? " recompute" : "");
  EXPECT_NEAR(d.loss, f.loss, 1e-5 * std::abs(f.loss)) << where;
  EXPECT_LE(seqvit_test::rel_err(d.pred, f.pred), 1e-5) << where;
  EXPECT_LE(seqvit_test::rel_err(d.grads, f.grads), 1e-5) << where;
  // every parameter tensor on its own
  ClimaX m(c);
  for (const auto& e : m.params().entries())
    EXPECT_LE(seqvit_test::rel_err(seqvit_test::tensor(d.grads.data(), e),
                                   seqvit_test::tensor(f.grads.data(), e)),
              1e-5)
        << e.name << " " << where;
  // memory: B * Hh * N * N floats of probabilities per block (one shared buffer with
  // recomputation, counted as workspace), plus the attention scratch difference
  const size_t probs = 4ull * 2 * c.num_heads * c.N() * c.N();
  const size_t ws_diff = attention_scratch(c, true, 2) - attention_scratch(c, false, 2);
  if (recompute) {
    EXPECT_EQ(d.act, f.act) << where;
    EXPECT_EQ(d.ws, f.ws + probs + ws_diff) << where;
  } else {
    EXPECT_EQ(d.act, f.act + static_cast<size_t>(c.depth) * probs) << where;
    EXPECT_EQ(d.ws, f.ws + ws_diff) << where;
  }
}

}  // namespace

TEST(ClimaXDense, AggregateMatchesFlash) { check_same(Tokenization::Aggregate, false); }
TEST(ClimaXDense, PerVariableMatchesFlash) { check_same(Tokenization::PerVariable, false); }
TEST(ClimaXDense, RecomputeMatchesFlash) {
  check_same(Tokenization::Aggregate, true);
  check_same(Tokenization::PerVariable, true);
}

TEST(ClimaXDense, Bf16CloseToFlash) {
  const ModelConfig c = seqvit_test::tiny_config(Tokenization::PerVariable);
  const Result f = run(c, AttentionKernel::Flash, false, Precision::BF16);
  const Result d = run(c, AttentionKernel::Dense, false, Precision::BF16);
  EXPECT_NEAR(d.loss, f.loss, 1e-2 * std::abs(f.loss));
  EXPECT_LE(seqvit_test::rel_err(d.grads, f.grads), 3e-2);
}

namespace {
class FakeSp : public SequenceParallelAttention {
 public:
  int size() const override { return 2; }
  int rank() const override { return 0; }
  size_t saved_bytes(int64_t, int64_t, int64_t, int64_t) const override { return 0; }
  size_t workspace_bytes(int64_t, int64_t, int64_t, int64_t, int) const override { return 0; }
  void forward(const AttentionArgs&, void*, size_t) override {}
  void backward(const AttentionArgs&, void*, size_t) override {}
};
}  // namespace

TEST(ClimaXDense, RefusedUnderSequenceParallelism) {
  ModelConfig c = seqvit_test::tiny_config(Tokenization::Aggregate);
  c.attention = AttentionKernel::Dense;
  ClimaX m(c);
  FakeSp sp;
  try {
    m.plan(2, Precision::F32, &sp);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("--attention dense"), std::string::npos) << msg;
    EXPECT_NE(msg.find("flash"), std::string::npos) << msg;
  }
}

TEST(ClimaXDense, ParsesKernelNames) {
  EXPECT_EQ(parse_attention_kernel("flash"), AttentionKernel::Flash);
  EXPECT_EQ(parse_attention_kernel("dense"), AttentionKernel::Dense);
  EXPECT_EQ(to_string(AttentionKernel::Dense), "dense");
  try {
    parse_attention_kernel("naive");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'naive'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("'flash' and 'dense'"), std::string::npos) << msg;
  }
}
