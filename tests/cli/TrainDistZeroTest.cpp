// `mpirun seqvit train --dp D --sp P --zero Z [--recompute]` (synthetic mode, tiny model, 3
// steps) against the single-process run of the same global batch: every step's loss and
// gradient norm (--loss-log), every tensor of the model file AND of the optimizer file (the
// logical AdamW moments, gathered from the ZeRO ranges) within relative error 1e-5; the ranks'
// weights identical at the end; the same composed with --tp and --pp (+ micro-batches); bad
// --zero configurations end with one message.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli/run_seqvit.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;

namespace {

using seqvit_test::run_seqvit_mpi;

std::vector<double> read_losses(const std::string& path) {
  std::ifstream f(path);
  std::vector<double> out;
  double v;
  while (f >> v) out.push_back(v);
  return out;
}

class TrainDistZeroTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = fs::temp_directory_path() / ("seqvit_trainzero_" + std::to_string(::getpid()));
    fs::create_directories(tmp_);
  }
  void TearDown() override { fs::remove_all(tmp_); }
  std::string path(const std::string& name) const { return (tmp_ / name).string(); }

  std::string train_args(const std::string& name) const {
    return "train --steps 3 --batch 4 --img 8x16 --patch 4 --embed-dim 16 --depth 2 "
           "--decoder-depth 1 --heads 2 --mlp-ratio 2 --variables t2m,u10 --warmup 1 "
           "--lr 1e-3 --weight-decay 0.1 --grad-clip 0.05 --seed 3 --threads 1 --log-every 1 "
           "--out " + path(name + ".safetensors") + " --loss-log " + path(name + ".loss");
  }
  void compare_files(const std::string& a, const std::string& b, const std::string& what) {
    seqvit_test::expect_same_tensors(a, b, 1e-5, what);
  }
  void check(int dp, int sp, int zero, bool recompute) {
    const std::string name = "dp" + std::to_string(dp) + "_sp" + std::to_string(sp) + "_zero" +
                             std::to_string(zero) + (recompute ? "_rc" : "");
    auto r = run_seqvit_mpi(dp * sp, train_args(name) + " --dp " + std::to_string(dp) +
                                         " --sp " + std::to_string(sp) + " --zero " +
                                         std::to_string(zero) + (recompute ? " --recompute" : ""));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("ZeRO-" + std::to_string(zero) + " over the"), std::string::npos)
        << r.output;
    EXPECT_NE(r.output.find("weights identical on all " + std::to_string(dp * sp) + " ranks"),
              std::string::npos)
        << r.output;
    const auto ref = read_losses(path("single.loss")), got = read_losses(path(name + ".loss"));
    ASSERT_EQ(ref.size(), 6u);
    ASSERT_EQ(got.size(), 6u) << name;
    for (size_t i = 0; i < ref.size(); ++i)
      EXPECT_LE(std::abs(got[i] - ref[i]), 1e-5 * std::abs(ref[i]))
          << name << " step " << i / 2 + 1 << (i % 2 ? " gradient norm" : " loss");
    compare_files(path("single.safetensors"), path(name + ".safetensors"), name);
    compare_files(path("single.optim.safetensors"), path(name + ".optim.safetensors"),
                  name + " optimizer");
  }
  // ZeRO composed with tensor / pipeline parallelism: `flags` on `np` ranks vs the single run
  void check_composed(const std::string& name, const std::string& flags, int np, int zero) {
    auto r = run_seqvit_mpi(np, train_args(name) + " " + flags);
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("ZeRO-" + std::to_string(zero) + " over the"), std::string::npos)
        << r.output;
    EXPECT_NE(r.output.find("weights identical on all " + std::to_string(np) + " ranks"),
              std::string::npos)
        << r.output;
    const auto ref = read_losses(path("single.loss")), got = read_losses(path(name + ".loss"));
    ASSERT_EQ(ref.size(), 6u);
    ASSERT_EQ(got.size(), 6u) << name;
    for (size_t i = 0; i < ref.size(); ++i) {
      EXPECT_LE(std::abs(got[i] - ref[i]), 1e-5 * std::abs(ref[i]))
          << name << " step " << i / 2 + 1 << (i % 2 ? " gradient norm" : " loss");
      if (i % 2) EXPECT_GT(ref[i], 0.05) << "clipping (--grad-clip 0.05) acts at every step";
    }
    compare_files(path("single.safetensors"), path(name + ".safetensors"), name);
    compare_files(path("single.optim.safetensors"), path(name + ".optim.safetensors"),
                  name + " optimizer");
  }
  static void expect_error(const seqvit_test::Result& r, const std::string& needle) {
    EXPECT_EQ(r.status, 1) << r.output;
    EXPECT_NE(r.output.find(needle), std::string::npos) << "wanted '" << needle << "' in:\n"
                                                        << r.output;
  }
  fs::path tmp_;
};

TEST_F(TrainDistZeroTest, MatchesSingleProcess) {
  auto r = seqvit_test::run_seqvit(train_args("single"));
  ASSERT_EQ(r.status, 0) << r.output;
  check(2, 1, 1, false);
  check(2, 1, 3, true);
  check(1, 2, 2, false);
}

// ZeRO shards each rank's TP slice / pipeline stage over the replicas of its (tp, pp)
// coordinate; the clipping norm is the logical one; the checkpoint is the logical model and
// the logical moments (every rank's ZeRO range of its shard's logical runs).
TEST_F(TrainDistZeroTest, ComposesWithTensorAndPipelineParallelism) {
  auto r = seqvit_test::run_seqvit(train_args("single"));
  ASSERT_EQ(r.status, 0) << r.output;
  check_composed("z3_tp2_dp2", "--zero 3 --tp 2 --dp 2", 4, 3);
  check_composed("z1_pp2_dp2_mb2", "--zero 1 --pp 2 --dp 2 --micro-batches 2", 4, 1);
  check_composed("z3_pp2_dp2_mb2", "--zero 3 --pp 2 --dp 2 --micro-batches 2 --recompute", 4, 3);
  check_composed("z2_tp2_sp2", "--zero 2 --tp 2 --sp 2 --sp-mode ring", 4, 2);
}

TEST_F(TrainDistZeroTest, BadConfigurationsExitWithOneMessage) {
  expect_error(seqvit_test::run_seqvit(train_args("o") + " --zero 4"),
               "--zero 4 is out of range: valid stages are 0 (off)");
  expect_error(seqvit_test::run_seqvit(train_args("o") + " --zero 2"),
               "--zero 2 shards over the data- and sequence-parallel ranks");
  expect_error(seqvit_test::run_seqvit(train_args("o") + " --dp 2 --zero 3 --bf16"),
               "--zero 3 runs in fp32 only");
  expect_error(seqvit_test::run_seqvit("train --data " + path("nowhere") + " --zero 1"),
               "--zero 1 shards over the data- and sequence-parallel ranks");
  EXPECT_FALSE(fs::exists(path("o.safetensors")));
}

}  // namespace
