// The commands on the guarded backend (`--device guarded`: device memory the host cannot touch,
// backend/guarded): `seqvit train` (synthetic, one process and under mpirun with --sp 2 --zero 2;
// --data), `grad` (one process and --sp 2), `evaluate` and `predict` produce what `--device cpu`
// produces, bit for bit (the guarded backend runs the same CPU kernels in the same order), so
// no code path above the backend reads or writes device memory on the host. An unknown --device
// exits with status 1 naming the devices this build has.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/cli_fixture.h"
#include "cli/run_seqvit.h"
#include "eval/forecast_checkpoint.h"
#include "eval/forecast_fixture.h"
#include "backend/device.h"

namespace {

namespace fs = std::filesystem;
using seqvit_test::expect_error;
using seqvit_test::run_seqvit;
using seqvit_test::run_seqvit_mpi;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// The same bytes (and a file that exists).
void expect_same_file(const std::string& a, const std::string& b) {
  ASSERT_TRUE(fs::exists(a)) << a;
  ASSERT_TRUE(fs::exists(b)) << b;
  EXPECT_TRUE(slurp(a) == slurp(b)) << a << " and " << b << " differ";
}

// The lines of `text` that start with `prefix` (after leading blanks).
std::vector<std::string> lines_with(const std::string& text, const std::string& prefix) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string line;
  while (std::getline(ss, line))
    if (line.find_first_not_of(' ') != std::string::npos &&
        line.compare(line.find_first_not_of(' '), prefix.size(), prefix) == 0)
      out.push_back(line);
  return out;
}

class GuardedCliTest : public seqvit_test::GradCliTest {
 protected:
  std::string train_args(const std::string& name) const {
    return "train --steps 3 --batch 4 --img 8x16 --patch 4 --embed-dim 16 --depth 2 "
           "--decoder-depth 1 --heads 2 --mlp-ratio 2 --variables t2m,u10 --warmup 1 "
           "--lr 1e-3 --grad-clip 0.05 --seed 3 --threads 1 --log-every 1 --out " +
           path(name + ".safetensors") + " --loss-log " + path(name + ".loss");
  }
  void expect_same_train(const std::string& a, const std::string& b) {
    expect_same_file(path(a + ".loss"), path(b + ".loss"));
    expect_same_file(path(a + ".safetensors"), path(b + ".safetensors"));
    expect_same_file(path(a + ".optim.safetensors"), path(b + ".optim.safetensors"));
  }
};

TEST_F(GuardedCliTest, GuardedSyntheticTrainMatchesCpu) {
  const auto cpu = run_seqvit(train_args("cpu") + " --device cpu");
  ASSERT_EQ(cpu.status, 0) << cpu.output;
  const auto guarded = run_seqvit(train_args("guarded") + " --device guarded --bf16");
  ASSERT_EQ(guarded.status, 0) << guarded.output;  // bf16 too runs (no comparison)
  const auto g = run_seqvit(train_args("guarded") + " --device guarded");
  ASSERT_EQ(g.status, 0) << g.output;
  EXPECT_NE(g.output.find("device guarded"), std::string::npos) << g.output;
  expect_same_train("cpu", "guarded");
}

TEST_F(GuardedCliTest, GuardedDistributedTrainMatchesCpu) {
  for (const std::string flags : {"--sp 2 --zero 2", "--dp 2"}) {
    const auto cpu = run_seqvit_mpi(2, train_args("cpu") + " --device cpu " + flags);
    ASSERT_EQ(cpu.status, 0) << cpu.output;
    const auto g = run_seqvit_mpi(2, train_args("guarded") + " --device guarded " + flags);
    ASSERT_EQ(g.status, 0) << g.output;
    EXPECT_NE(g.output.find("weights identical on all 2 ranks"), std::string::npos) << g.output;
    SCOPED_TRACE(flags);
    expect_same_train("cpu", "guarded");
  }
}

TEST_F(GuardedCliTest, GuardedDataTrainMatchesCpu) {
  const std::string data = seqvit::testing::ForecastFixture::get().dir;
  auto args = [&](const std::string& run) {
    return "train --data " + data + " --coarsen 2 --train-range 1979-01-01/1979-01-05 "
           "--val-range 1979-01-05/1979-01-07 --lead-hours 6 --batch 4 --embed-dim 32 "
           "--heads 2 --depth 1 --decoder-depth 1 --steps 4 --val-every 2 --checkpoint-every 2 "
           "--stats-cache " + path("stats.safetensors") + " --run-dir " + path(run) +
           " --threads 2";
  };
  const auto cpu = run_seqvit(args("cpu") + " --device cpu");
  ASSERT_EQ(cpu.status, 0) << cpu.output;
  const auto g = run_seqvit(args("guarded") + " --device guarded");
  ASSERT_EQ(g.status, 0) << g.output;
  // the validation scores, the losses and gradient norms of the log, and every checkpoint
  EXPECT_EQ(lines_with(cpu.output, "validation at step").size(), 2u) << cpu.output;
  auto scores = [](const std::string& text) {
    std::vector<std::string> out;
    for (auto l : lines_with(text, "validation at step")) out.push_back(l.substr(l.find("): ")));
    return out;
  };
  EXPECT_EQ(scores(cpu.output), scores(g.output));
  auto steps = [&](const std::string& run) {
    std::ifstream f(path(run) + "/log.jsonl");
    std::vector<std::pair<double, double>> out;
    std::string line;
    while (std::getline(f, line)) {
      const auto j = nlohmann::json::parse(line);
      if (j.at("event") == "step") out.emplace_back(j.at("loss"), j.at("grad_norm"));
    }
    return out;
  };
  EXPECT_EQ(steps("cpu").size(), 4u);
  EXPECT_EQ(steps("cpu"), steps("guarded"));
  for (const char* ck : {"step_00000002", "step_00000004"})
    for (const char* f : {"model.safetensors", "model.optim.safetensors"})
      seqvit_test::expect_same_tensors(path("cpu") + "/checkpoints/" + ck + "/" + f,
                                       path("guarded") + "/checkpoints/" + ck + "/" + f, 0.0,
                                       std::string(ck) + "/" + f);
}

TEST_F(GuardedCliTest, GuardedGradMatchesCpu) {
  write_inputs(seqvit::model::Tokenization::Aggregate, 2, 4);
  const auto cpu = run_seqvit(grad_args("cpu.safetensors") + " --device cpu");
  ASSERT_EQ(cpu.status, 0) << cpu.output;
  const auto g = run_seqvit(grad_args("guarded.safetensors") + " --device guarded");
  ASSERT_EQ(g.status, 0) << g.output;
  expect_same_file(path("cpu.safetensors"), path("guarded.safetensors"));
  const auto cm = run_seqvit(grad_args("cpu_m.safetensors") + " --device cpu --micro-batches 2");
  ASSERT_EQ(cm.status, 0) << cm.output;
  const auto gm =
      run_seqvit(grad_args("guarded_m.safetensors") + " --device guarded --micro-batches 2");
  ASSERT_EQ(gm.status, 0) << gm.output;
  expect_same_file(path("cpu_m.safetensors"), path("guarded_m.safetensors"));
  for (const std::string flags : {"--sp 2", "--dp 2 --zero 2"}) {
    const auto c2 = run_seqvit_mpi(2, grad_args("cpu2.safetensors") + " --device cpu " + flags);
    ASSERT_EQ(c2.status, 0) << c2.output;
    const auto g2 =
        run_seqvit_mpi(2, grad_args("guarded2.safetensors") + " --device guarded " + flags);
    ASSERT_EQ(g2.status, 0) << g2.output;
    SCOPED_TRACE(flags);
    expect_same_file(path("cpu2.safetensors"), path("guarded2.safetensors"));
  }
}

TEST_F(GuardedCliTest, GuardedEvaluateAndPredictMatchCpu) {
  const auto& fx = seqvit::testing::ForecastFixture::get();
  for (const char* dev : {"cpu", "guarded"}) {
    const auto r = run_seqvit("evaluate --checkpoint " + fx.checkpoint +
                              " --batch 4 --threads 2 --json " + path(std::string(dev) + ".json") +
                              " --device " + dev);
    ASSERT_EQ(r.status, 0) << r.output;
    const auto p = run_seqvit("predict --checkpoint " + fx.checkpoint +
                              " --time 1979-01-07T06:00:00Z --lead-hours 12 --threads 2 --out " +
                              path(std::string(dev) + ".nc") + " --png " +
                              path(std::string(dev) + "_maps") + " --device " + dev);
    ASSERT_EQ(p.status, 0) << p.output;
    std::ofstream(path(std::string(dev) + ".rmse")) << [&] {
      std::string s;
      for (const auto& l : lines_with(p.output, "")) if (l.find(" RMSE ") != std::string::npos) s += l + "\n";
      return s;
    }();
  }
  auto scores = [&](const char* dev) {
    return nlohmann::json::parse(slurp(path(std::string(dev) + ".json"))).at("scores").dump();
  };
  EXPECT_EQ(scores("cpu"), scores("guarded"));
  expect_same_file(path("cpu.rmse"), path("guarded.rmse"));
  EXPECT_FALSE(slurp(path("cpu.rmse")).empty());
  for (const auto& e : fs::directory_iterator(path("cpu_maps")))
    expect_same_file(e.path().string(), path("guarded_maps") + "/" + e.path().filename().string());
}

TEST_F(GuardedCliTest, UnknownDeviceExitsOneNamingTheDevices) {
  write_inputs(seqvit::model::Tokenization::Aggregate, 2, 4);
  const auto& fx = seqvit::testing::ForecastFixture::get();
  for (const std::string& cmd :
       {train_args("o") + " --device nosuch", grad_args("o.safetensors") + " --device nosuch",
        "evaluate --checkpoint " + fx.checkpoint + " --device nosuch",
        "predict --checkpoint " + fx.checkpoint + " --time 1979-01-07T06:00:00Z --out " +
            path("o.nc") + " --device nosuch"})
    expect_error(run_seqvit(cmd), "unknown device 'nosuch': this build has cpu, guarded", 1);
  EXPECT_FALSE(fs::exists(path("o.safetensors")));
}

// --device cuda where it cannot run (this build without the plugin, or a machine without a GPU,
// as in CI): exit status 1 and a message that says why, for every command; nothing written.
TEST_F(GuardedCliTest, CudaWithoutAGpuExitsOneSayingWhy) {
  std::string why;
  if (seqvit::backend::device_available("cuda", &why)) GTEST_SKIP() << "a GPU is usable here";
  write_inputs(seqvit::model::Tokenization::Aggregate, 2, 4);
  const auto& fx = seqvit::testing::ForecastFixture::get();
  for (const std::string& cmd :
       {train_args("o") + " --device cuda", grad_args("o.safetensors") + " --device cuda:0",
        "evaluate --checkpoint " + fx.checkpoint + " --device cuda",
        "predict --checkpoint " + fx.checkpoint + " --time 1979-01-07T06:00:00Z --out " +
            path("o.nc") + " --device cuda"}) {
    const auto r = run_seqvit(cmd);
    EXPECT_EQ(r.status, 1) << cmd << "\n" << r.output;
    EXPECT_TRUE(r.output.find("device 'cuda") != std::string::npos ||
                r.output.find("unknown device 'cuda") != std::string::npos)
        << r.output;
    EXPECT_EQ(r.output.find("Segmentation"), std::string::npos) << r.output;
  }
  EXPECT_FALSE(fs::exists(path("o.safetensors")));
  EXPECT_FALSE(fs::exists(path("o.nc")));
}

}  // namespace
