// `seqvit train --benchmark --report-json` under mpirun and `seqvit plan --json` for the same
// layout: the record the benchmark suite (bench/suite.py) reads has every rank, its planned
// bytes and its first step's bytes per communicator; the planner predicts that rank's planned
// bytes (to 0.1%) and its bytes per axis exactly; --benchmark writes no checkpoint.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/cli_fixture.h"
#include "cli/run_seqvit.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

class RunReportTest : public seqvit_test::CliDirTest {
 protected:
  static constexpr const char* kModel =
      " --embed-dim 32 --depth 2 --heads 4 --decoder-depth 1 --mlp-ratio 2";
  json read(const std::string& name) {
    std::ifstream f(path(name));
    EXPECT_TRUE(f.good()) << path(name);
    return json::parse(f);
  }
  // train under mpirun with `layout`, plan the same; compare rank 0 of each (no pipeline here:
  // every rank has the same plan).
  void check(int np, const std::string& train_layout, const std::string& plan_layout) {
    const std::string rep = "r" + std::to_string(np) + ".json";
    auto r = seqvit_test::run_seqvit_mpi(
        np, std::string("train --steps 2 --batch 2 --img 8x16 --patch 2 --variables t2m,u10 "
                        "--tokenization per_variable --threads 1 --benchmark --report-json ") +
                path(rep) + " --out " + path("m.safetensors") + kModel + " " + train_layout);
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_NE(r.output.find("benchmark: 2 steps in"), std::string::npos) << r.output;
    EXPECT_FALSE(fs::exists(path("m.safetensors")));  // --benchmark: no checkpoint
    const json j = read(rep);
    ASSERT_EQ(j["ranks"].size(), static_cast<size_t>(np));
    EXPECT_EQ(j["step_seconds"].size(), 2u);
    EXPECT_EQ(j["model"]["tokens"], 64);
    for (const auto& k : j["ranks"]) {
      EXPECT_GT(k["peak_rss_bytes"].get<double>(), 0.0);
      EXPECT_GT(k["planned_bytes"]["total"].get<double>(), 0.0);
    }
    auto p = seqvit_test::run_seqvit(
        std::string("plan --variables 2 --patch 2 --seq 64 --precision fp32 --batch 2 "
                    "--threads 1 --recompute off --micro-batches 1 --devices ") +
        std::to_string(np) + " --json " + path("p.json") + kModel + " " + plan_layout);
    ASSERT_EQ(p.status, 0) << p.output;
    const json plan = read("p.json");
    ASSERT_FALSE(plan["fitting"].empty()) << p.output;
    const json& e = plan["fitting"][0];
    const json& k = j["ranks"][0];
    const double planned = k["planned_bytes"]["total"].get<double>(),
                 predicted = e["memory_bytes"]["total"].get<double>();
    EXPECT_NEAR(predicted, planned, 1e-3 * planned) << e["layout"];
    double sp = 0, dp = 0, tp = 0;
    for (const auto& c : k["first_step_comm"]) {
      const std::string comm = c["comm"];
      const double b = c["bytes"].get<double>();
      if (comm.rfind("sp", 0) == 0 && comm != "sp_dp") sp += b;
      else if (comm == "tp") tp += b;
      else dp += b;
    }
    EXPECT_EQ(sp, e["bytes_sent"]["sp"].get<double>()) << e["layout"];
    EXPECT_EQ(tp, e["bytes_sent"]["tp"].get<double>()) << e["layout"];
    EXPECT_EQ(dp, e["bytes_sent"]["dp"].get<double>()) << e["layout"];
  }
};

TEST_F(RunReportTest, UlyssesRecordMatchesThePlanner) {
  check(2, "--sp 2 --sp-mode ulysses", "--dp 1 --tp 1 --pp 1 --sp 2 --sp-mode ulysses --zero 0");
}

TEST_F(RunReportTest, TensorAndDataParallelRecordMatchesThePlanner) {
  check(4, "--tp 2 --dp 2", "--dp 2 --tp 2 --pp 1 --sp 1 --zero 0");
}

TEST_F(RunReportTest, ReportAndBenchmarkAreSyntheticModeOnly) {
  auto r = seqvit_test::run_seqvit("train --data " + path("none") + " --benchmark");
  seqvit_test::expect_error(r, "--report-json, --loss-log and --benchmark are for the synthetic "
                               "mode", 1);
}

}  // namespace
