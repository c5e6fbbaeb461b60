// The commands with --device cuda (ctest label gpu; skipped without a usable GPU, failed instead
// with SEQVIT_REQUIRE_GPU=1):
//  - a short synthetic training run (30 steps) whose losses follow the CPU run's (within 1e-3:
//    rounding differences grow over the steps) and whose model file is the same format;
//  - grad on the GPU against the CPU within 1e-5 (every tensor);
//  - evaluate and predict on the GPU from a checkpoint trained on the CPU, scores within 1e-4;
//  - one small training step under compute-sanitizer's memcheck with no error.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/cli_fixture.h"
#include "cli/run_seqvit.h"
#include "eval/forecast_fixture.h"
#include "gpu_test.h"

namespace {

namespace fs = std::filesystem;
using seqvit_test::run_command;
using seqvit_test::run_seqvit;

std::vector<double> losses(const std::string& file) {
  std::ifstream in(file);
  std::vector<double> out;
  std::string line;
  while (std::getline(in, line)) {
    std::stringstream ss(line);
    double step = 0, loss = 0;
    if (ss >> step >> loss) out.push_back(loss);
  }
  return out;
}

class CudaCliTest : public seqvit_test::GradCliTest {
 protected:
  void SetUp() override {
    SEQVIT_NEED_DEVICE("cuda");
    GradCliTest::SetUp();
  }
  std::string train_args(const std::string& name, int steps) const {
    return "train --steps " + std::to_string(steps) +
           " --batch 4 --img 16x32 --patch 2 --embed-dim 64 --depth 2 --decoder-depth 1 "
           "--heads 2 --mlp-ratio 2 --variables t2m,u10 --warmup 3 --lr 1e-3 --grad-clip 1 "
           "--seed 3 --threads 2 --log-every 10 --out " +
           path(name + ".safetensors") + " --loss-log " + path(name + ".loss");
  }
};

}  // namespace

TEST_F(CudaCliTest, SyntheticTrainingFollowsTheCpu) {
  const auto cpu = run_seqvit(train_args("cpu", 30) + " --device cpu");
  ASSERT_EQ(cpu.status, 0) << cpu.output;
  const auto gpu = run_seqvit(train_args("gpu", 30) + " --device cuda");
  ASSERT_EQ(gpu.status, 0) << gpu.output;
  const auto a = losses(path("cpu.loss")), b = losses(path("gpu.loss"));
  ASSERT_EQ(a.size(), 30u);
  ASSERT_EQ(b.size(), a.size());
  for (size_t s = 0; s < a.size(); ++s)
    EXPECT_LE(std::fabs(b[s] - a[s]), 1e-3 * std::fabs(a[s]))
        << "step " << s << ": gpu " << b[s] << " cpu " << a[s];
  seqvit_test::expect_same_tensors(path("cpu.safetensors"), path("gpu.safetensors"), 1e-2,
                                   "weights after 30 steps");
}

TEST_F(CudaCliTest, GradMatchesTheCpu) {
  write_inputs(seqvit::model::Tokenization::Aggregate, 2, 4);
  const auto cpu = run_seqvit(grad_args("cpu.safetensors") + " --device cpu");
  ASSERT_EQ(cpu.status, 0) << cpu.output;
  const auto gpu = run_seqvit(grad_args("gpu.safetensors") + " --device cuda");
  ASSERT_EQ(gpu.status, 0) << gpu.output;
  seqvit_test::expect_same_tensors(path("cpu.safetensors"), path("gpu.safetensors"), 1e-5,
                                   "grad on cuda");
}

TEST_F(CudaCliTest, EvaluateAndPredictOnTheGpu) {
  const auto& fx = seqvit::testing::ForecastFixture::get();
  for (const char* dev : {"cpu", "cuda"}) {
    const auto r = run_seqvit("evaluate --checkpoint " + fx.checkpoint +
                              " --batch 4 --threads 2 --json " + path(std::string(dev) + ".json") +
                              " --device " + dev);
    ASSERT_EQ(r.status, 0) << r.output;
    const auto p = run_seqvit("predict --checkpoint " + fx.checkpoint +
                              " --time 1979-01-07T06:00:00Z --lead-hours 12 --threads 2 --out " +
                              path(std::string(dev) + ".nc") + " --device " + dev);
    ASSERT_EQ(p.status, 0) << p.output;
  }
  std::ifstream a(path("cpu.json")), b(path("cuda.json"));
  const auto ja = nlohmann::json::parse(a), jb = nlohmann::json::parse(b);
  const auto& sa = ja.at("scores");
  const auto& sb = jb.at("scores");
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i)
    for (const auto& [key, value] : sa[i].items())
      if (value.is_number_float())
        EXPECT_LE(std::fabs(sb[i].at(key).get<double>() - value.get<double>()),
                  1e-4 * std::max(1.0, std::fabs(value.get<double>())))
            << "score " << i << " " << key;
}

TEST_F(CudaCliTest, OneStepUnderComputeSanitizerHasNoError) {
  std::string tool = "/usr/local/cuda/bin/compute-sanitizer";
  if (!fs::exists(tool)) {
    const auto which = run_command("command -v compute-sanitizer");
    tool = which.output.substr(0, which.output.find('\n'));
  }
  if (tool.empty() || !fs::exists(tool)) {
    if (seqvit_test::gpu_required()) FAIL() << "compute-sanitizer not found";
    GTEST_SKIP() << "compute-sanitizer not found";
  }
  const auto r = run_command(tool + " --tool memcheck --leak-check full --error-exitcode 3 " +
                             SEQVIT_BINARY_DIR + "/seqvit " + train_args("san", 1) +
                             " --device cuda 2>&1");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("ERROR SUMMARY: 0 errors"), std::string::npos) << r.output;
}
