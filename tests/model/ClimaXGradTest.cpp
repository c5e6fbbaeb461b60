// Finite-difference checks of the whole ClimaX backward: every parameter tensor of both
// tokenizations is probed at several entries, so every layer (patch embedding, variable
// aggregation, position/lead-time embeddings, blocks, head, loss) is covered.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/check.h"
#include "core/rng.h"
#include "model/climax.h"
#include "model/finite_difference.h"

using namespace seqvit;
using namespace seqvit::model;

namespace {

// 2 samples, 2 blocks
struct Fixture : seqvit_test::GradFixture {
  explicit Fixture(Tokenization tok) : GradFixture(tok, 2, 2) {}
};

void check_gradients(Tokenization tok) {
  Fixture f(tok);
  ClimaX m(f.cfg);
  const int64_t n = m.params().total();
  std::vector<float> P(n), G(n, 0.f);
  m.init(P.data(), 3);
  // perturb so that nothing is trivially zero or symmetric (var_query starts at 0)
  Rng rng(7);
  for (auto& p : P) p += static_cast<float>(0.05 * rng.normal());
  m.plan(f.B, Precision::F32);
  m.sync_weights(P.data());
  m.forward(P.data(), f.view());
  m.backward(P.data(), G.data());
  const int checked =
      seqvit_test::expect_gradients_match_finite_differences(m, P, G, f.view(), rng);
  EXPECT_GT(checked, 40);
}

}  // namespace

TEST(ClimaXGrad, AggregateMatchesFiniteDifferences) { check_gradients(Tokenization::Aggregate); }
TEST(ClimaXGrad, PerVariableMatchesFiniteDifferences) {
  check_gradients(Tokenization::PerVariable);
}

TEST(ClimaXGrad, GradientsAccumulate) {
  Fixture f(Tokenization::Aggregate);
  ClimaX m(f.cfg);
  std::vector<float> P(m.params().total()), G1(P.size(), 0.f), G2(P.size(), 0.f);
  m.init(P.data(), 1);
  m.plan(f.B, Precision::F32);
  m.forward(P.data(), f.view());
  m.backward(P.data(), G1.data());
  m.forward(P.data(), f.view());
  m.backward(P.data(), G2.data());
  m.forward(P.data(), f.view());
  m.backward(P.data(), G2.data());
  for (size_t i = 0; i < P.size(); ++i) ASSERT_NEAR(G2[i], 2 * G1[i], 1e-6 + 1e-5 * std::fabs(G1[i]));
}

TEST(ClimaXGrad, RejectsBadConfigurations) {
  ModelConfig c;
  c.embed_dim = 100;
  c.num_heads = 3;
  try {
    ClimaX m(c);
    FAIL() << "expected an error";
  } catch (const seqvit::Error& e) {
    EXPECT_NE(std::string(e.what()).find("embed_dim 100 is not divisible by num_heads 3"),
              std::string::npos)
        << e.what();
  }
  c = ModelConfig();
  c.img_h = 30;
  c.patch_size = 4;
  try {
    ClimaX m(c);
    FAIL() << "expected an error";
  } catch (const seqvit::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not divisible by patch_size 4"), std::string::npos)
        << e.what();
  }
}

TEST(ClimaXInit, SinCosEmbeddingsAndTruncatedNormal) {
  ModelConfig c;
  c.img_h = 8;
  c.img_w = 16;
  c.patch_size = 2;  // grid 4 x 8
  c.embed_dim = 64;
  c.num_heads = 4;
  ClimaX m(c);
  std::vector<float> P(m.params().total());
  m.init(P.data(), 11);
  const int64_t D = 64, half = 32;
  // pos_embed: first D/2 channels encode the patch column, the rest the patch row (ClimaX)
  const float* pos = P.data() + m.params().get("pos_embed").offset;
  const int64_t r = 3, col = 5, l = r * 8 + col;
  EXPECT_NEAR(pos[l * D + 0], std::sin(5.0), 1e-6);
  EXPECT_NEAR(pos[l * D + 16], std::cos(5.0), 1e-6);
  EXPECT_NEAR(pos[l * D + half + 0], std::sin(3.0), 1e-6);
  EXPECT_NEAR(pos[l * D + half + 16 + 1], std::cos(3.0 / std::pow(10000.0, 1.0 / 16)), 1e-6);
  // var_embed: 1-D sin-cos over the variable index
  const float* ve = P.data() + m.params().get("var_embed").offset;
  EXPECT_NEAR(ve[2 * D + 0], std::sin(2.0), 1e-6);
  EXPECT_NEAR(ve[2 * D + half], std::cos(2.0), 1e-6);
  EXPECT_NEAR(ve[2 * D + 1], std::sin(2.0 / std::pow(10000.0, 1.0 / half)), 1e-6);
  // var_query zero, LayerNorm (1, 0), biases 0
  for (const char* n : {"var_query", "blocks.0.norm1.bias", "blocks.0.attn.qkv.bias", "head.0.bias"}) {
    const auto& e = m.params().get(n);
    for (int64_t i = 0; i < e.numel; ++i) ASSERT_EQ(P[e.offset + i], 0.f) << n;
  }
  const auto& n1 = m.params().get("blocks.0.norm1.weight");
  for (int64_t i = 0; i < n1.numel; ++i) ASSERT_EQ(P[n1.offset + i], 1.f);
  // Linear weights: normal(0, 0.02) truncated at +-2 std (std of the truncated law 0.88 * 0.02)
  const auto& w = m.params().get("blocks.0.mlp.fc1.weight");
  double s = 0, s2 = 0;
  for (int64_t i = 0; i < w.numel; ++i) {
    const double v = P[w.offset + i];
    ASSERT_LE(std::fabs(v), 0.04 + 1e-7);
    s += v;
    s2 += v * v;
  }
  const double mean = s / w.numel, sd = std::sqrt(s2 / w.numel - mean * mean);
  EXPECT_NEAR(mean, 0.0, 1e-3);
  EXPECT_NEAR(sd, 0.02 * 0.8796, 0.02 * 0.03);
}
