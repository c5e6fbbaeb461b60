// `mpirun seqvit train --data ... --dp D --sp P` on the small synthetic ERA5-like dataset
// (tests/eval/forecast_fixture.h), through the real binary: the same losses, gradient norms,
// validation scores and final weights as the single process with the same global batch
// (relative error <= 1e-5); checkpoints written by one layout resumed by another (dp 2 x sp 2 ->
// 1 process, 1 process -> dp 2, 1 process -> sp 2 -> sp 4) continuing with the uninterrupted
// run's losses; SIGTERM to one rank of four checkpoints and stops every rank, and so does a NaN
// loss; a multi-rank launch without --dp/--sp is refused. Tensor and pipeline parallelism (tp 2 x
// pp 2, micro-batches) match the single process too, including validation, and their (gathered,
// logical) checkpoints resume in any layout (dp 2 x sp 2 -> tp 2 x pp 2 -> dp 2 x pp 2,
// tp 2 x pp 2 -> 1 process). ZeRO-1/3 with dp 2 (and ZeRO-3 with dp 2 x tp 2) match the single
// process (validation through the stages and with a replica left without samples included), and
// ZeRO checkpoints resume in any layout (dp 2 ZeRO-3 -> 1 process, 1 process -> dp 2 x sp 2
// ZeRO-2, dp 2 ZeRO-3 -> dp 2 x tp 2 ZeRO-3).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cli/run_seqvit.h"
#include "eval/forecast_fixture.h"
#include "io/safetensors.h"
#include "eval/forecast_checkpoint.h"

namespace seqvit {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using seqvit_test::run_seqvit;
using seqvit_test::run_seqvit_mpi;

bool close(double a, double ref) {
  const double rel = 1e-5;
  return std::abs(a - ref) <= rel * std::max(std::abs(ref), 1e-12);
}

class TrainDataDistTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = testing::ForecastFixture::get().dir;
    tmp_ = fs::temp_directory_path() /
           ("seqvit_train_data_dist_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(tmp_);
    fs::create_directories(tmp_);
  }
  void TearDown() override { fs::remove_all(tmp_); }

  // 16x32 grid (coarsen 2, 32 tokens of patch 4), global batch 4, 6 steps (the epoch has 3
  // batches, so the run crosses an epoch boundary), validation every 3 steps.
  std::string base(const std::string& run, const std::string& tok = "aggregate") const {
    return "train --data " + data_ + " --coarsen 2 --train-range 1979-01-01/1979-01-05 "
           "--val-range 1979-01-05/1979-01-07 --lead-hours 6 --batch 4 --embed-dim 16 "
           "--heads 2 --depth 1 --decoder-depth 1 --mlp-ratio 2 --warmup 1 --lr 1e-3 --seed 5 "
           "--steps 6 --checkpoint-every 2 --keep 10 --val-every 3 --log-every 1 "
           "--tokenization " + tok + " --stats-cache " + (tmp_ / "stats.safetensors").string() +
           " --run-dir " + (tmp_ / run).string() + " --threads 1";
  }
  // Every event of a run's log with this name, in order.
  std::vector<json> events(const std::string& run, const std::string& name) const {
    std::ifstream f(tmp_ / run / "log.jsonl");
    std::vector<json> out;
    std::string line;
    while (std::getline(f, line)) {
      auto j = json::parse(line);
      if (j.at("event") == name) out.push_back(j);
    }
    return out;
  }
  // The last `n` steps of `run` have ref's losses and gradient norms of the same steps.
  void expect_same_steps(const std::string& run, const std::string& ref, size_t n) const {
    const auto a = events(run, "step"), r = events(ref, "step");
    ASSERT_GE(a.size(), n) << run;
    ASSERT_GE(r.size(), n) << ref;
    for (size_t k = 0; k < n; ++k) {
      const auto& x = a[a.size() - n + k];
      const auto& y = r[r.size() - n + k];
      EXPECT_EQ(x.at("step"), y.at("step")) << run;
      EXPECT_PRED2(close, x.at("loss").get<double>(), y.at("loss").get<double>())
          << run << " step " << y.at("step");
      EXPECT_PRED2(close, x.at("grad_norm").get<double>(), y.at("grad_norm").get<double>())
          << run << " step " << y.at("step") << " gradient norm";
    }
  }
  // Every tensor of the final checkpoints (model and AdamW state) within 1e-5.
  void expect_same_weights(const std::string& run, const std::string& ref) const {
    for (const char* f : {"model.safetensors", "model.optim.safetensors"}) {
      const fs::path dir = fs::path("checkpoints") / "step_00000006";
      seqvit_test::expect_same_tensors((tmp_ / ref / dir / f).string(),
                                       (tmp_ / run / dir / f).string(), 1e-5, run + " " + f);
    }
  }
  // Both validations of `run` score like ref's: the same forecasts counted, and RMSE, ACC and
  // the persistence and climatology RMSE of every variable and lead within 1e-5.
  void expect_same_validation(const std::string& run, const std::string& ref) const {
    const auto vp = events(run, "validation"), vo = events(ref, "validation");
    ASSERT_EQ(vp.size(), 2u) << run;
    ASSERT_EQ(vo.size(), 2u) << ref;
    for (size_t k = 0; k < 2; ++k) {
      const auto &a = vp[k].at("scores"), &b = vo[k].at("scores");
      ASSERT_EQ(a.size(), b.size()) << run;
      for (size_t i = 0; i < a.size(); ++i) {
        EXPECT_EQ(a[i].at("forecasts"), b[i].at("forecasts")) << run;
        for (const char* s : {"rmse_wb2", "rmse_mean_per_forecast", "acc", "rmse_wb2_persistence",
                              "rmse_wb2_climatology", "rmse_mean_per_forecast_climatology"})
          EXPECT_PRED2(close, a[i].at(s).get<double>(), b[i].at(s).get<double>())
              << run << " " << s << " of " << b[i].at("variable");
      }
    }
  }
  // A copy of `run` without its checkpoints after `step` (as if it had stopped there).
  void cut(const std::string& run, const std::string& to, int step) const {
    fs::copy(tmp_ / run, tmp_ / to, fs::copy_options::recursive);
    for (const auto& [s, dir] : eval::list_checkpoints((tmp_ / to).string()))
      if (s > step) fs::remove_all(dir);
  }
  // The (WeatherBench2) RMSE of the first score of the last validation of a run.
  double first_rmse(const std::string& run) const {
    return events(run, "validation").back().at("scores")[0].at("rmse_wb2").get<double>();
  }
  std::string layout_of(const std::string& run, int step) const {
    io::SafetensorsReader r(
        (tmp_ / run / "checkpoints" / eval::step_dir_name(step) / "model.safetensors").string());
    return r.metadata().at("seqvit.layout");
  }
  static std::string mpi(int dp, int sp, const std::string& mode = "ulysses") {
    return " --dp " + std::to_string(dp) + " --sp " + std::to_string(sp) + " --sp-mode " + mode;
  }

  std::string data_;
  fs::path tmp_;
};

TEST_F(TrainDataDistTest, DpTimesSpMatchesTheSingleProcess) {
  // The 4-rank run first: rank 0 computes the statistics cache, the others read it.
  const auto par = run_seqvit_mpi(4, base("par") + mpi(2, 2, "lss"));
  ASSERT_EQ(par.status, 0) << par.output;
  EXPECT_NE(par.output.find("statistics computed"), std::string::npos) << par.output;
  EXPECT_NE(par.output.find("parallel: dp 2 x sp 2 (lss)"), std::string::npos) << par.output;
  const auto one = run_seqvit(base("one"));
  ASSERT_EQ(one.status, 0) << one.output;
  EXPECT_NE(one.output.find("statistics from the cache"), std::string::npos) << one.output;
  expect_same_steps("par", "one", 6);
  expect_same_weights("par", "one");
  // Validation, sharded over the replicas, scores like the single process.
  expect_same_validation("par", "one");
  // Only rank 0 logs (one start event, one line per step) and the layout is recorded.
  EXPECT_EQ(events("par", "start").size(), 1u);
  EXPECT_EQ(events("par", "step").size(), 6u);
  const auto lay = json::parse(layout_of("par", 6));
  EXPECT_EQ(lay.at("dp"), 2);
  EXPECT_EQ(lay.at("sp"), 2);
  EXPECT_EQ(lay.at("sp_mode"), "lss");
}

TEST_F(TrainDataDistTest, PerVariableRingAnd2dSequenceParallelMatchTheSingleProcess) {
  const auto one = run_seqvit(base("one", "per_variable"));
  ASSERT_EQ(one.status, 0) << one.output;
  const auto par = run_seqvit_mpi(2, base("par", "per_variable") + mpi(1, 2, "ring"));
  ASSERT_EQ(par.status, 0) << par.output;
  expect_same_steps("par", "one", 6);
  expect_same_weights("par", "one");
  // 2-D SP: Ulysses 2 x LSS 2.
  const auto p2d = run_seqvit_mpi(4, base("p2d", "per_variable") + mpi(1, 4, "2d") +
                                         " --sp-ulysses 2 --sp-outer lss");
  ASSERT_EQ(p2d.status, 0) << p2d.output;
  expect_same_steps("p2d", "one", 6);
  expect_same_weights("p2d", "one");
  EXPECT_EQ(json::parse(layout_of("p2d", 6)).at("sp_ulysses"), 2);
  for (const char* run : {"par", "p2d"}) {
    const auto vp = events(run, "validation"), vo = events("one", "validation");
    ASSERT_EQ(vp.size(), 2u);
    for (size_t i = 0; i < vo[1].at("scores").size(); ++i)
      EXPECT_PRED2(close, vp[1].at("scores")[i].at("rmse_wb2").get<double>(),
                   vo[1].at("scores")[i].at("rmse_wb2").get<double>())
          << run;
  }
}

TEST_F(TrainDataDistTest, CheckpointsResumeAcrossLayouts) {
  const auto one = run_seqvit(base("one"));
  ASSERT_EQ(one.status, 0) << one.output;
  const auto par = run_seqvit_mpi(4, base("par") + mpi(2, 2, "ulysses"));
  ASSERT_EQ(par.status, 0) << par.output;

  // dp 2 x sp 2 -> 1 process: stopped after step 2, resumed by one process.
  cut("par", "par_to_one", 2);
  const auto a = run_seqvit(base("par_to_one") + " --resume");
  ASSERT_EQ(a.status, 0) << a.output;
  EXPECT_NE(a.output.find("checkpoint written by 4 ranks: dp 2 x sp 2 (ulysses)"),
            std::string::npos)
      << a.output;
  expect_same_steps("par_to_one", "one", 4);
  expect_same_weights("par_to_one", "one");

  // 1 process -> dp 2.
  cut("one", "one_to_dp2", 2);
  const auto b = run_seqvit_mpi(2, base("one_to_dp2") + mpi(2, 1) + " --resume");
  ASSERT_EQ(b.status, 0) << b.output;
  EXPECT_NE(b.output.find("checkpoint written by 1 process"), std::string::npos) << b.output;
  expect_same_steps("one_to_dp2", "one", 4);
  expect_same_weights("one_to_dp2", "one");

  // 1 process -> sp 2 (ring) for steps 3-4 -> sp 4 (ring) for steps 5-6.
  cut("one", "one_to_sp2", 2);
  const auto c = run_seqvit_mpi(2, base("one_to_sp2") + mpi(1, 2, "ring") + " --resume");
  ASSERT_EQ(c.status, 0) << c.output;
  EXPECT_EQ(json::parse(layout_of("one_to_sp2", 4)).at("sp"), 2);
  cut("one_to_sp2", "sp2_to_sp4", 4);
  const auto d = run_seqvit_mpi(4, base("sp2_to_sp4") + mpi(1, 4, "ring") + " --resume");
  ASSERT_EQ(d.status, 0) << d.output;
  EXPECT_NE(d.output.find("checkpoint written by 2 ranks: dp 1 x sp 2 (ring)"), std::string::npos)
      << d.output;
  expect_same_steps("one_to_sp2", "one", 4);
  expect_same_steps("sp2_to_sp4", "one", 2);  // the log before is the copied one's
  expect_same_weights("sp2_to_sp4", "one");

  // The refusal rules stay whatever the layout: another model is refused.
  cut("par", "other", 2);
  const auto e = run_seqvit_mpi(2, base("other") + mpi(2, 1) + " --embed-dim 32 --resume");
  EXPECT_NE(e.status, 0) << e.output;
  EXPECT_NE(e.output.find("differs from the one these options describe"), std::string::npos)
      << e.output;
}

// Tensor and pipeline parallelism (docs/training.md "Tensor and pipeline parallelism"): depth 2
// (one block per stage), 2 heads (one per TP rank).
std::string deep(const std::string& b) {
  const std::string d1 = " --depth 1 ";
  const auto at = b.find(d1);
  return b.substr(0, at) + " --depth 2 " + b.substr(at + d1.size());
}

TEST_F(TrainDataDistTest, TpTimesPpMatchesTheSingleProcessAndResumesOnOneProcess) {
  // tp 2 x pp 2 with 2 micro-batches (1F1B): validation batches of 4 run in chunks of 2 through
  // both stages.
  const auto par = run_seqvit_mpi(4, deep(base("par")) + " --tp 2 --pp 2 --micro-batches 2");
  ASSERT_EQ(par.status, 0) << par.output;
  EXPECT_NE(par.output.find("parallel: dp 1 x sp 1 (ulysses) x tp 2 x pp 2"), std::string::npos)
      << par.output;
  const auto one = run_seqvit(deep(base("one")));
  ASSERT_EQ(one.status, 0) << one.output;
  // --micro-batches alone: gradient accumulation in one process (no MPI), chunked validation.
  const auto acc = run_seqvit(deep(base("acc")) + " --micro-batches 4");
  ASSERT_EQ(acc.status, 0) << acc.output;
  expect_same_steps("acc", "one", 6);
  expect_same_weights("acc", "one");
  EXPECT_PRED2(close, first_rmse("acc"), first_rmse("one"));
  expect_same_steps("par", "one", 6);
  expect_same_weights("par", "one");
  expect_same_validation("par", "one");
  const auto lay = json::parse(layout_of("par", 6));
  EXPECT_EQ(lay.at("tp"), 2);
  EXPECT_EQ(lay.at("pp"), 2);
  EXPECT_EQ(lay.at("micro_batches"), 2);
  EXPECT_EQ(lay.at("state"), "sharded");

  // tp 2 x pp 2 -> 1 process: stopped after step 4, resumed by one process.
  cut("par", "par_to_one", 4);
  const auto a = run_seqvit(deep(base("par_to_one")) + " --resume");
  ASSERT_EQ(a.status, 0) << a.output;
  EXPECT_NE(a.output.find("checkpoint written by 4 ranks: dp 1 x sp 1 x tp 2 x pp 2, 2 "
                          "micro-batches"),
            std::string::npos)
      << a.output;
  expect_same_steps("par_to_one", "one", 2);
  expect_same_weights("par_to_one", "one");
}

TEST_F(TrainDataDistTest, DpTimesSpCheckpointResumesUnderTpTimesPp) {
  const auto one = run_seqvit(deep(base("one")));
  ASSERT_EQ(one.status, 0) << one.output;
  const auto par = run_seqvit_mpi(4, deep(base("par")) + mpi(2, 2, "ulysses"));
  ASSERT_EQ(par.status, 0) << par.output;
  // dp 2 x sp 2 -> tp 2 x pp 2 x 2 micro-batches (GPipe) for steps 3-4 -> dp 2 x pp 2 for 5-6.
  cut("par", "to_tp_pp", 2);
  const auto a = run_seqvit_mpi(4, deep(base("to_tp_pp")) +
                                       " --tp 2 --pp 2 --micro-batches 2 --pp-schedule gpipe "
                                       "--resume");
  ASSERT_EQ(a.status, 0) << a.output;
  EXPECT_NE(a.output.find("checkpoint written by 4 ranks: dp 2 x sp 2 (ulysses)"),
            std::string::npos)
      << a.output;
  expect_same_steps("to_tp_pp", "one", 4);
  expect_same_weights("to_tp_pp", "one");
  cut("to_tp_pp", "to_dp_pp", 4);
  const auto b = run_seqvit_mpi(4, deep(base("to_dp_pp")) + mpi(2, 1) + " --pp 2 --resume");
  ASSERT_EQ(b.status, 0) << b.output;
  expect_same_steps("to_dp_pp", "one", 2);
  expect_same_weights("to_dp_pp", "one");
  // 1 process -> tp 2 x sp 2 (lss): TP without stages validates with the plain forward.
  cut("one", "to_tp_sp", 2);
  const auto c =
      run_seqvit_mpi(4, deep(base("to_tp_sp")) + mpi(1, 2, "lss") + " --tp 2 --resume");
  ASSERT_EQ(c.status, 0) << c.output;
  expect_same_steps("to_tp_sp", "one", 4);
  expect_same_weights("to_tp_sp", "one");
  EXPECT_PRED2(close, first_rmse("to_tp_sp"), first_rmse("one"));
}

TEST_F(TrainDataDistTest, BadTpPpCombinationsAreRefused) {
  auto expect_refused = [&](const seqvit_test::Result& r, const std::string& needle) {
    EXPECT_NE(r.status, 0) << r.output;
    EXPECT_NE(r.output.find(needle), std::string::npos) << needle << "\n" << r.output;
  };
  expect_refused(run_seqvit(deep(base("z")) + " --zero 1"),
                 "--zero 1 shards over the data- and sequence-parallel ranks");
  expect_refused(run_seqvit_mpi(2, base("p") + " --pp 2"),
                 "depth 1 cannot be split into pp = 2 pipeline stages of equal block counts; "
                 "valid pp: 1");
  expect_refused(run_seqvit_mpi(3, deep(base("t")) + " --tp 3"),
                 "tp = 3 must divide the 2 heads and the MLP width 32");
  expect_refused(run_seqvit(deep(base("m")) + " --micro-batches 3"),
                 "the batch per data-parallel replica, 4 (batch 4 / dp 1), cannot be split into "
                 "micro_batches = 3; valid micro-batch counts: 1, 2 or 4");
  expect_refused(run_seqvit_mpi(2, deep(base("s")) + " --pp 2 --pp-schedule zigzag"),
                 "unknown pipeline schedule 'zigzag': valid schedules are 1f1b and gpipe");
  expect_refused(run_seqvit_mpi(2, deep(base("w")) + " --tp 2 --pp 2"),
                 "--dp 1 --sp 1 --pp 2 --tp 2 needs 4 ranks (mpirun -np 4), but this job has 2");
  for (const char* r : {"z", "p", "t", "m", "s", "w"})
    EXPECT_FALSE(fs::exists(tmp_ / r / "log.jsonl")) << r;
}

// ZeRO (docs/training.md "ZeRO"): the steps, the validation scores and the final (gathered,
// logical) model and AdamW files of the single process.
TEST_F(TrainDataDistTest, ZeroMatchesTheSingleProcess) {
  const auto one = run_seqvit(base("one"));
  ASSERT_EQ(one.status, 0) << one.output;
  const std::vector<std::pair<std::string, std::string>> runs = {
      {"z1", " --dp 2 --zero 1"}, {"z3", " --dp 2 --zero 3"}, {"z3_tp", " --dp 2 --tp 2 --zero 3"}};
  for (const auto& [run, flags] : runs) {
    const auto r = run_seqvit_mpi(run == "z3_tp" ? 4 : 2, base(run) + flags);
    ASSERT_EQ(r.status, 0) << run << "\n" << r.output;
    expect_same_steps(run, "one", 6);
    expect_same_weights(run, "one");
    expect_same_validation(run, "one");
    const auto lay = json::parse(layout_of(run, 6));
    EXPECT_EQ(lay.at("state"), "zero") << run;
    EXPECT_EQ(lay.at("zero"), run == "z1" ? 1 : 3) << run;
  }
}

// ZeRO-3 validation: batches of 2 leave the last of the 7 validation samples alone, so one
// replica has no forward (the weights are then gathered whole for the validation); through two
// stages x 2 micro-batches (one full validation batch) the forwards gather per unit and stage.
TEST_F(TrainDataDistTest, ZeroThreeValidatesPartialBatchesAndThroughStages) {
  auto b2 = [&](const std::string& run) {
    std::string s = base(run);
    s.replace(s.find("--batch 4"), 9, "--batch 2");
    return s;
  };
  const auto one = run_seqvit(b2("one"));
  ASSERT_EQ(one.status, 0) << one.output;
  const auto z3 = run_seqvit_mpi(2, b2("z3") + " --dp 2 --zero 3");
  ASSERT_EQ(z3.status, 0) << z3.output;
  expect_same_steps("z3", "one", 6);
  expect_same_weights("z3", "one");
  EXPECT_PRED2(close, first_rmse("z3"), first_rmse("one"));
  // --val-batches 1: only full batches, so the staged forwards gather per unit
  const auto deep_one = run_seqvit(deep(base("deep_one")) + " --val-batches 1");
  ASSERT_EQ(deep_one.status, 0) << deep_one.output;
  const auto pp = run_seqvit_mpi(
      4, deep(base("pp")) + " --dp 2 --pp 2 --micro-batches 2 --zero 3 --val-batches 1");
  ASSERT_EQ(pp.status, 0) << pp.output;
  expect_same_steps("pp", "deep_one", 6);
  expect_same_weights("pp", "deep_one");
  EXPECT_PRED2(close, first_rmse("pp"), first_rmse("deep_one"));
}

TEST_F(TrainDataDistTest, ZeroCheckpointsResumeAcrossLayouts) {
  const auto one = run_seqvit(base("one"));
  ASSERT_EQ(one.status, 0) << one.output;
  const auto z3 = run_seqvit_mpi(2, base("z3") + " --dp 2 --zero 3");
  ASSERT_EQ(z3.status, 0) << z3.output;
  // dp 2 ZeRO-3 -> 1 process: stopped after step 2, resumed by one process.
  cut("z3", "z3_to_one", 2);
  const auto a = run_seqvit(base("z3_to_one") + " --resume");
  ASSERT_EQ(a.status, 0) << a.output;
  EXPECT_NE(a.output.find("checkpoint written by 2 ranks: dp 2 x sp 1, ZeRO-3"),
            std::string::npos)
      << a.output;
  expect_same_steps("z3_to_one", "one", 4);
  expect_same_weights("z3_to_one", "one");
  // 1 process -> dp 2 x sp 2 (ring) ZeRO-2.
  cut("one", "one_to_z2", 2);
  const auto b = run_seqvit_mpi(4, base("one_to_z2") + mpi(2, 2, "ring") + " --zero 2 --resume");
  ASSERT_EQ(b.status, 0) << b.output;
  EXPECT_NE(b.output.find("checkpoint written by 1 process"), std::string::npos) << b.output;
  expect_same_steps("one_to_z2", "one", 4);
  expect_same_weights("one_to_z2", "one");
  EXPECT_PRED2(close, first_rmse("one_to_z2"), first_rmse("one"));
  // dp 2 ZeRO-3 -> dp 2 x tp 2 ZeRO-3: each rank keeps its range of its TP slice.
  cut("z3", "z3_to_tp", 4);
  const auto c = run_seqvit_mpi(4, base("z3_to_tp") + " --dp 2 --tp 2 --zero 3 --resume");
  ASSERT_EQ(c.status, 0) << c.output;
  expect_same_steps("z3_to_tp", "one", 2);
  expect_same_weights("z3_to_tp", "one");
}

TEST_F(TrainDataDistTest, SigtermToOneRankCheckpointsOnEveryRankAndResumes) {
  // Each rank writes its pid (the shell execs seqvit), so that one rank alone can be signalled.
  const std::string args = base("sig") + mpi(2, 2) + " --steps 100000 --checkpoint-every 100000 "
                           "--val-every 0";
  const fs::path log = tmp_ / "sig" / "log.jsonl";
  const std::string cmd =
      "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
      "OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1 "
      "OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1 "
      "timeout 60 " SEQVIT_MPIEXEC " -np 4 --oversubscribe sh -c 'echo $$ > " +
      (tmp_ / "pid.").string() + "$OMPI_COMM_WORLD_RANK; exec " SEQVIT_BINARY_DIR "/seqvit " +
      args + "' > " + (tmp_ / "out.txt").string() + " 2>&1 & job=$!; for i in $(seq 600); do " +
      "grep -q '\"event\":\"step\"' " + log.string() + " 2>/dev/null && break; sleep 0.05; done; " +
      "kill -TERM $(cat " + (tmp_ / "pid.2").string() + "); wait $job; echo $? > " +
      (tmp_ / "status.txt").string();
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::ifstream st(tmp_ / "status.txt"), out(tmp_ / "out.txt");
  int status = -1;
  st >> status;
  const std::string text((std::istreambuf_iterator<char>(out)), std::istreambuf_iterator<char>());
  EXPECT_EQ(status, 1) << text;
  EXPECT_NE(text.find("seqvit: error: interrupted by signal 15"), std::string::npos) << text;
  EXPECT_EQ(text.find("error on rank"), std::string::npos) << text;  // no abort
  std::vector<int64_t> steps;
  for (const auto& [s, dir] : eval::list_checkpoints((tmp_ / "sig").string())) steps.push_back(s);
  ASSERT_EQ(steps.size(), 1u) << text;
  EXPECT_GE(steps[0], 1);
  EXPECT_EQ(events("sig", "interrupted").size(), 1u);
  const auto r = run_seqvit_mpi(4, base("sig") + mpi(2, 2) + " --steps " +
                                       std::to_string(steps[0] + 2) +
                                       " --checkpoint-every 100000 --val-every 0 --resume");
  ASSERT_EQ(r.status, 0) << r.output;
  std::vector<int64_t> after;
  for (const auto& [s, dir] : eval::list_checkpoints((tmp_ / "sig").string())) after.push_back(s);
  EXPECT_EQ(after.back(), steps[0] + 2);
}

TEST_F(TrainDataDistTest, NanLossStopsEveryRankAtTheSameStep) {
  // An absurd learning rate without clipping: step 1 is fine, step 2 overflows on every rank
  // (the loss is all-reduced), which stop together with the checkpoint of step 1 intact.
  const auto r = run_seqvit_mpi(2, base("nan") + mpi(2, 1) +
                                       " --lr 1e3 --warmup 0 --grad-clip 0 --checkpoint-every 1 "
                                       "--val-every 0");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("at step 2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("step_00000001"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("error on rank"), std::string::npos) << r.output;  // no abort
  const auto cks = eval::list_checkpoints((tmp_ / "nan").string());
  ASSERT_EQ(cks.size(), 1u);
  EXPECT_EQ(cks[0].first, 1);
  EXPECT_EQ(events("nan", "non_finite_loss").size(), 1u);
}

TEST_F(TrainDataDistTest, AnErrorOnOneRankEndsTheJobNamingTheRank) {
  // MPMD launch: rank 1 looks for the statistics cache elsewhere than rank 0 wrote it (as on a
  // node that does not share the file system): it fails alone, and the job ends at once.
  std::string other = base("run") + mpi(2, 1);
  const std::string cache = (tmp_ / "stats.safetensors").string();
  other.replace(other.find(cache), cache.size(), (tmp_ / "elsewhere.safetensors").string());
  const auto r = seqvit_test::run_command(
      "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
      "OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1 "
      "OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1 "
      "timeout 60 " SEQVIT_MPIEXEC " --oversubscribe -np 1 " SEQVIT_BINARY_DIR "/seqvit " +
      base("run") + mpi(2, 1) + " : -np 1 " SEQVIT_BINARY_DIR "/seqvit " + other + " 2>&1");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.status, 124) << "timed out (a hang):\n" << r.output;
  EXPECT_NE(r.output.find("seqvit: error on rank 1: forecast dataset: the statistics cache"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("elsewhere.safetensors"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(tmp_ / "elsewhere.safetensors"));  // never written by rank 1
}

TEST_F(TrainDataDistTest, MultiRankLaunchWithoutDpSpIsRefused) {
  const auto r = run_seqvit_mpi(2, base("run"));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("launched as 2 ranks without --dp/--sp"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(tmp_ / "run" / "log.jsonl"));
  const auto bad = run_seqvit_mpi(2, base("run") + mpi(2, 1) + " --batch 3");
  EXPECT_NE(bad.status, 0) << bad.output;
  EXPECT_NE(bad.output.find("global batch 3 cannot be split over dp = 2"), std::string::npos)
      << bad.output;
}

}  // namespace
}  // namespace seqvit
