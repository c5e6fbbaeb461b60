// ClimaX with its token sequence split over the SP group (model/sequence_parallel.h,
// parallel/sp_model.h) against the single-process model on the same weights and batch: the loss
// summed over the group, pred gathered to rank 0 and EVERY parameter gradient after the SP
// all-reduce match with relative error <= 1e-5 (fp32), for Ulysses, LSS and ring, both
// tokenizations, and Ulysses with uneven head splits (6 heads over 4 ranks: 2, 2, 1, 1); and 2-D
// SP (parallel/sp_attention_2d.h), Ulysses x ring and Ulysses x LSS: 2 x 2 at np 4, Ulysses 2 x 1 at
// np 2, 1 x 1 at np 1, with even (4) and uneven (3 over 2: 2 + 1) heads.
// Every rank also computes the single-process reference itself (tiny model, cheap).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "parallel/grid.h"
#include "parallel/mpi_test.h"
#include "train/reference_step.h"
#include "rel_err.h"
#include "parallel/sp_model.h"
#include "model/climax.h"
#include "train/synthetic_batch.h"

using namespace seqvit;

namespace {

using seqvit_test::rel_err;
using seqvit_test::tensor;

constexpr double kTol = 1e-5;

class SpModelMpiTest : public seqvit_test::MpiTest {
 protected:
  // outer: for mode 2d, the scheme across Ulysses groups; the Ulysses degree is 2 when the world
  // has 2 or more ranks (so 2 x 2 at np 4).
  // prec bf16: both sides in mixed precision (the SP attention itself runs in fp32, the single
  // process's in bf16), compared at tolerance `tol`.
  void check(model::Tokenization tok, parallel::SpMode mode, int64_t heads, int64_t D,
             parallel::SpMode outer = parallel::SpMode::Ring,
             model::Precision prec = model::Precision::F32, double tol = kTol) {
    model::ModelConfig c = seqvit_test::tiny_config(tok);
    c.num_heads = heads;
    c.embed_dim = D;
    constexpr int64_t B = 2;
    // the single-process reference
    const seqvit_test::ReferenceStep r(c, B, prec);
    const std::vector<float>&params = r.params, &gref = r.grads, &pref = r.pred;
    const model::BatchView batch = r.batch;
    const double lref = r.loss;
    const int64_t np = static_cast<int64_t>(params.size());

    // the same step, one shard per rank
    parallel::GridConfig g;
    const bool two_d = mode == parallel::SpMode::TwoD;
    parallel::set_sp_degrees(g, size(), mode, two_d ? std::min(size(), 2) : 0, outer);
    parallel::validate(g, size(), c, B);
    parallel::RankGrid grid(world, g);
    parallel::SpBlockAttention attn(grid);
    model::ClimaX m(c);
    m.plan(B, prec, &attn);
    m.sync_weights(params.data());
    ASSERT_EQ(m.local_tokens(), c.N() / size());
    ASSERT_EQ(m.first_token(), rank() * c.N() / size());
    std::vector<float> grads(np, 0.f), pred(pref.size(), 0.f), full(pref.size(), NAN);
    const double loss =
        parallel::sp_reduce_loss(grid.sp(), m.forward(params.data(), batch, pred.data()));
    m.backward(params.data(), grads.data());
    parallel::sp_reduce_gradients(grid.sp(), grads.data(), np);
    parallel::sp_gather_pred(grid.sp(), pred.data(), full.data(), static_cast<int64_t>(full.size()), 0);

    EXPECT_LE(std::fabs(loss - lref) / std::fabs(lref), tol) << loss << " vs " << lref;
    if (rank() == 0)
      EXPECT_LE(rel_err(full, pref), tol) << "pred";
    double worst = 0;
    for (const auto& e : m.params().entries()) {
      const auto err = rel_err(tensor(grads.data(), e), tensor(gref.data(), e));
      EXPECT_LE(err, tol) << "grad." << e.name;
      worst = std::max<double>(worst, err);
    }
    if (rank() == 0)
      std::printf("  %s%s %s%s, %lld heads, P=%d: loss %.3e, worst gradient %.3e\n",
                  parallel::to_string(mode).c_str(),
                  two_d ? (" (ulysses x " + parallel::to_string(outer) + ")").c_str() : "",
                  model::to_string(tok).c_str(), prec == model::Precision::BF16 ? " bf16" : "",
                  static_cast<long long>(heads), size(), std::fabs(loss - lref) / lref, worst);
  }
  // 2-D SP with `outer` across: both tokenizations, 4 heads, and 3 heads (2 + 1 over sp_ulysses
  // 2: the two ring groups then run different head counts).
  void check_two_d(parallel::SpMode outer) {
    for (auto tok : {model::Tokenization::Aggregate, model::Tokenization::PerVariable}) {
      check(tok, parallel::SpMode::TwoD, 4, 32, outer);
      check(tok, parallel::SpMode::TwoD, 3, 24, outer);
    }
  }
};

using parallel::SpMode;
using model::Tokenization;

TEST_F(SpModelMpiTest, UlyssesAggregate) { check(Tokenization::Aggregate, SpMode::Ulysses, 4, 32); }
TEST_F(SpModelMpiTest, UlyssesPerVariable) {
  check(Tokenization::PerVariable, SpMode::Ulysses, 4, 32);
}
TEST_F(SpModelMpiTest, LssAggregate) { check(Tokenization::Aggregate, SpMode::Lss, 4, 32); }
TEST_F(SpModelMpiTest, LssPerVariable) { check(Tokenization::PerVariable, SpMode::Lss, 4, 32); }
TEST_F(SpModelMpiTest, RingAggregate) { check(Tokenization::Aggregate, SpMode::Ring, 4, 32); }
TEST_F(SpModelMpiTest, RingPerVariable) { check(Tokenization::PerVariable, SpMode::Ring, 4, 32); }
// 6 heads: 3 + 3 at P=2, 2 + 2 + 1 + 1 at P=4
TEST_F(SpModelMpiTest, UlyssesUnevenHeadsAggregate) {
  check(Tokenization::Aggregate, SpMode::Ulysses, 6, 24);
}
TEST_F(SpModelMpiTest, UlyssesUnevenHeadsPerVariable) {
  check(Tokenization::PerVariable, SpMode::Ulysses, 6, 24);
}

// 2-D SP: Ulysses over sp_ulysses inside, ring or LSS over sp_ring across.
TEST_F(SpModelMpiTest, UlyssesRing) { check_two_d(SpMode::Ring); }
TEST_F(SpModelMpiTest, UlyssesLss) { check_two_d(SpMode::Lss); }

// Mixed precision under SP: the matrix products in bf16 as on one process, the SP attention in
// fp32 (the operators have no bf16 path); against the single-process bf16 model.
TEST_F(SpModelMpiTest, Bf16) {
  for (auto mode : {SpMode::Ulysses, SpMode::Lss, SpMode::Ring})
    check(Tokenization::Aggregate, mode, 4, 32, SpMode::Ring, model::Precision::BF16, 5e-3);
  check(Tokenization::PerVariable, SpMode::TwoD, 4, 32, SpMode::Ring, model::Precision::BF16,
        5e-3);
}

}  // namespace
