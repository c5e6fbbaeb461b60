// Dropout and drop-path in the ClimaX model (docs/model.md "Dropout"): the backward matches
// finite differences of the forward with the same masks (they are hashed from the seed, step,
// site and element, so two forwards of one step drop the same elements); dropout is off unless a
// step is set; the masks change with the step and seed and not with activation recomputation.
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

// depth 3: drop-path rates 0, path / 2, path
struct Fixture : seqvit_test::GradFixture {
  explicit Fixture(Tokenization tok) : GradFixture(tok, 3, 3) {}
};

struct Result {
  double loss = 0;
  std::vector<float> grads;
};

// One forward + backward at `step` (-1: dropout off) of a model with dropout d.
Result run(const Fixture& f, const Dropout& d, int64_t step, bool recompute = false) {
  ClimaX m(f.cfg);
  std::vector<float> P(m.params().total());
  m.init(P.data(), 3);
  m.set_dropout(d);
  m.set_recompute(recompute);
  m.plan(f.B, Precision::F32);
  m.set_dropout_step(step);
  Result r;
  r.grads.assign(P.size(), 0.f);
  r.loss = m.forward(P.data(), f.view());
  m.backward(P.data(), r.grads.data());
  return r;
}

void check_gradients(Tokenization tok) {
  Fixture f(tok);
  ClimaX m(f.cfg);
  const int64_t n = m.params().total();
  std::vector<float> P(n), G(n, 0.f);
  m.init(P.data(), 3);
  Rng rng(7);
  for (auto& p : P) p += static_cast<float>(0.05 * rng.normal());
  m.set_dropout({0.2, 0.5, 11});
  m.plan(f.B, Precision::F32);
  m.set_dropout_step(4);
  const double l0 = m.forward(P.data(), f.view());
  m.backward(P.data(), G.data());
  const int checked =
      seqvit_test::expect_gradients_match_finite_differences(m, P, G, f.view(), rng);
  EXPECT_GT(checked, 40);
  EXPECT_EQ(m.forward(P.data(), f.view()), l0) << "the same step draws the same masks";
}

}  // namespace

TEST(ClimaXDropout, AggregateMatchesFiniteDifferences) { check_gradients(Tokenization::Aggregate); }
TEST(ClimaXDropout, PerVariableMatchesFiniteDifferences) {
  check_gradients(Tokenization::PerVariable);
}

TEST(ClimaXDropout, OffOutsideTrainingStepsAndDeterministic) {
  Fixture f(Tokenization::Aggregate);
  const Dropout d{0.1, 0.1, 5};
  const Result plain = run(f, {}, -1);
  const Result off = run(f, d, -1);  // no step set: evaluation, predict, grad
  EXPECT_EQ(off.loss, plain.loss);
  EXPECT_EQ(off.grads, plain.grads);
  const Result zero_rates = run(f, {0, 0, 5}, 7);  // rates 0: nothing drops at any step
  EXPECT_EQ(zero_rates.loss, plain.loss);
  const Result s7 = run(f, d, 7);
  EXPECT_NE(s7.loss, plain.loss);
  EXPECT_EQ(run(f, d, 7).loss, s7.loss);
  EXPECT_EQ(run(f, d, 7).grads, s7.grads);
  EXPECT_NE(run(f, d, 8).loss, s7.loss) << "another step";
  EXPECT_NE(run(f, {0.1, 0.1, 6}, 7).loss, s7.loss) << "another seed";
  EXPECT_NE(run(f, {0.1, 0, 5}, 7).loss, run(f, {0, 0.1, 5}, 7).loss);
}

TEST(ClimaXDropout, RecomputationDrawsTheSameMasks) {
  for (auto tok : {Tokenization::Aggregate, Tokenization::PerVariable}) {
    Fixture f(tok);
    const Dropout d{0.2, 0.3, 9};
    const Result a = run(f, d, 3, false), b = run(f, d, 3, true);
    EXPECT_EQ(a.loss, b.loss);
    EXPECT_EQ(a.grads, b.grads);
  }
}

TEST(ClimaXDropout, RejectsRatesOutsideTheUnitInterval) {
  ClimaX m(Fixture(Tokenization::Aggregate).cfg);
  for (auto [d, msg] : {std::pair{Dropout{1.0, 0, 0}, "dropout rate 1 is outside [0, 1)"},
                        std::pair{Dropout{0, -0.1, 0}, "drop-path rate -0.1 is outside [0, 1)"}}) {
    try {
      m.set_dropout(d);
      FAIL() << msg;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(msg), std::string::npos) << e.what();
    }
  }
}
