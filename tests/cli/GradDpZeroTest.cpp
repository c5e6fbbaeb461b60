// `mpirun seqvit grad --dp D [--zero Z]` (with --sp/--tp/--pp) against the single-process
// `seqvit grad` on the same model and batch files: the samples split over D replicas, the
// gradients (ZeRO-2/3) and parameters (ZeRO-3) sharded over the dp x sp replicas; rank 0
// writes the logical file, which must hold the same pred, loss and every grad.<name> (relative
// error <= 1e-5, fp32); bad --dp/--zero configurations end every rank with one message.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "cli/run_seqvit.h"
#include "io/safetensors.h"
#include "model/climax.h"
#include "train/checkpoint.h"
#include "train/synthetic_batch.h"

using namespace seqvit;
namespace fs = std::filesystem;

namespace {

using seqvit_test::rel_err;
using seqvit_test::run_seqvit_mpi;

class GradDpZeroTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = fs::temp_directory_path() / ("seqvit_graddpzero_" + std::to_string(::getpid()));
    fs::create_directories(tmp_);
  }
  void TearDown() override { fs::remove_all(tmp_); }
  std::string path(const std::string& name) const { return (tmp_ / name).string(); }

  // model.safetensors (tiny config, 4 heads, 2 blocks) and batch.safetensors (B = 4).
  void write_inputs(model::Tokenization tok) {
    model::ModelConfig c = seqvit_test::tiny_config(tok);
    c.num_heads = 4;
    model::ClimaX m(c);
    std::vector<float> params(m.params().total());
    m.init(params.data(), 5);
    train::save_model(path("model.safetensors"), c, m.params(), params.data());
    constexpr int64_t B = 4;
    seqvit_test::SyntheticBatch data(c, B);
    const model::BatchView b = data.batch(1);
    io::SafetensorsWriter w;
    w.add_f32("x", {B, c.V(), c.img_h, c.img_w}, b.x);
    w.add_f32("y", {B, c.Vo(), c.img_h, c.img_w}, b.y);
    w.add_f32("lead_times", {B}, b.lead_times);
    w.add_f32("lat", {c.img_h}, b.lat);
    w.write(path("batch.safetensors"));
  }
  std::string grad_args(const std::string& out) const {
    return "grad --model " + path("model.safetensors") + " --batch " + path("batch.safetensors") +
           " --out " + path(out);
  }
  void compare(const std::string& out, const std::string& what,
               const std::string& single = "single.safetensors", double tol = 1e-5) {
    io::SafetensorsReader ref(path(single)), got(path(out));
    ASSERT_EQ(ref.names(), got.names()) << what;
    for (const auto& n : ref.names())
      EXPECT_LE(rel_err(got.read_f32(n), ref.read_f32(n)), tol) << what << ": " << n;
  }
  void check(model::Tokenization tok) {
    write_inputs(tok);
    auto single = seqvit_test::run_seqvit(grad_args("single.safetensors"));
    ASSERT_EQ(single.status, 0) << single.output;
    struct Run {
      int np;
      std::string flags, name, needle;
    };
    const std::vector<Run> runs = {
        {2, "--dp 2", "dp2", "data parallel: 2 replicas, 2 of 4 samples each"},
        {2, "--zero 3 --sp 2", "zero3_sp2", "ZeRO-3 over the 2 ranks"},
        {4, "--zero 3 --dp 2 --tp 2", "zero3_dp2_tp2", "ZeRO-3 over the 2 ranks"},
        {4, "--zero 2 --dp 2 --pp 2 --micro-batches 2", "zero2_dp2_pp2", "ZeRO-2 over the 2"},
    };
    for (const auto& r : runs) {
      auto res = run_seqvit_mpi(r.np, grad_args(r.name + ".safetensors") + " " + r.flags);
      ASSERT_EQ(res.status, 0) << r.flags << "\n" << res.output;
      EXPECT_NE(res.output.find(r.needle), std::string::npos) << res.output;
      compare(r.name + ".safetensors", r.flags);
    }
  }
  static void expect_error(const seqvit_test::Result& r, const std::string& needle) {
    EXPECT_NE(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("seqvit: error:"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(needle), std::string::npos) << "wanted '" << needle << "' in:\n"
                                                        << r.output;
  }
  fs::path tmp_;
};

TEST_F(GradDpZeroTest, AggregateMatchesSingleProcess) { check(model::Tokenization::Aggregate); }

TEST_F(GradDpZeroTest, BadConfigurationsEndEveryRankWithOneMessage) {
  write_inputs(model::Tokenization::Aggregate);  // batch 4
  expect_error(run_seqvit_mpi(2, grad_args("o.safetensors") + " --dp 4"),
               "--dp 4 needs 4 ranks (mpirun -np 4), but this job has 2");
  expect_error(run_seqvit_mpi(3, grad_args("o.safetensors") + " --dp 3"),
               "global batch 4 cannot be split over dp = 3");
  expect_error(seqvit_test::run_seqvit(grad_args("o.safetensors") + " --zero 3"),
               "--zero 3 shards over the data- and sequence-parallel ranks");
  expect_error(seqvit_test::run_seqvit(grad_args("o.safetensors") + " --dp 2 --zero 4"),
               "--zero 4 is out of range");
  EXPECT_FALSE(fs::exists(path("o.safetensors")));
}

}  // namespace
