// Finite-difference checks of the whole ClimaX backward: every parameter tensor of both
// tokenizations is probed at several entries, so every layer (patch embedding, variable
// aggregation, position/lead-time embeddings, blocks, head, loss) is covered.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/check.h"
#include "core/rng.h"
#include "model/climax.h"

using namespace seqvit;
using namespace seqvit::model;

namespace {

struct Fixture {
  ModelConfig cfg;
  int64_t B = 2;
  std::vector<float> x, y, lt, lat;
  explicit Fixture(Tokenization tok) {
    cfg.img_h = 4;
    cfg.img_w = 6;
    cfg.patch_size = 2;
    cfg.embed_dim = 32;
    cfg.num_heads = 2;
    cfg.depth = 2;
    cfg.decoder_depth = 1;
    cfg.variables = {"t2m", "z_500", "u10"};
    cfg.out_variables = {"z_500", "t2m"};
    cfg.tokenization = tok;
    Rng rng(42);
    const int64_t HW = cfg.img_h * cfg.img_w;
    x.resize(B * cfg.V() * HW);
    y.resize(B * cfg.Vo() * HW);
    for (auto& v : x) v = static_cast<float>(rng.normal());
    for (auto& v : y) v = static_cast<float>(rng.normal());
    lt = {6.f, 72.f};
    lat = {60.f, 20.f, -15.f, -70.f};
  }
  BatchView view() const { return {B, x.data(), y.data(), lt.data(), lat.data()}; }
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
  int checked = 0;
  for (const auto& e : m.params().entries()) {
    double max_err = 0;
    for (int probe = 0; probe < 4; ++probe) {
      const int64_t i = e.offset + static_cast<int64_t>(rng.uniform() * e.numel) % e.numel;
      const float saved = P[i];
      const float h = 1e-2f * std::max(1.0f, std::fabs(saved));
      P[i] = saved + h;
      const double lp = m.forward(P.data(), f.view());
      P[i] = saved - h;
      const double lm = m.forward(P.data(), f.view());
      P[i] = saved;
      // central difference with the actual (rounded) step; O(h^2) truncation error
      const double fd = (lp - lm) / (2.0 * h);
      const double err = std::fabs(fd - G[i]) / (1e-4 + std::fabs(fd));
      max_err = std::max(max_err, err);
      ++checked;
    }
    EXPECT_LT(max_err, 2e-2) << e.name;
  }
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
