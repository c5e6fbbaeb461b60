// The trainer, AdamW and checkpoints on the CUDA backend against the CPU backend (ctest label
// gpu; skipped without a usable GPU, failed instead with SEQVIT_REQUIRE_GPU=1):
//  - 10 AdamW steps (warmup, weight decay, clipping; also with dropout and drop-path): every
//    step's loss and gradient norm within 1e-5 of the CPU run's, the final parameters and
//    moments within 1e-4 (norm-wise);
//  - a checkpoint round trip GPU -> CPU -> GPU: 2 steps on the GPU, saved; 2 steps on the CPU
//    from that file, saved; 2 more on the GPU from that file. The losses follow a run of all 6
//    steps on the CPU within 1e-5, and the files are the same format on every device.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <vector>

#include "backend/device.h"
#include "eval/checkpoint.h"
#include "gpu_test.h"
#include "rel_err.h"
#include "train/checkpoint.h"
#include "train/synthetic_batch.h"
#include "train/trainer_steps.h"
#include "train/trainer.h"

using namespace seqvit;
using seqvit_test::rel_err;
namespace fs = std::filesystem;

namespace {

using seqvit_test::train_steps;
using seqvit_test::TrainRun;

train::OptimConfig opt() { return seqvit_test::clipping_optim(3, 12); }

bool close(double a, double ref, double tol) { return std::fabs(a - ref) <= tol * std::fabs(ref); }

class CudaTrainer : public ::testing::Test {
 protected:
  void SetUp() override { SEQVIT_NEED_DEVICE("cuda"); }
};

}  // namespace

TEST_F(CudaTrainer, TenAdamWStepsFollowTheCpu) {
  // plain, and with dropout and drop-path (the same hashed masks on both devices)
  for (auto [tok, drop] : {std::pair{model::Tokenization::Aggregate, model::Dropout{}},
                           std::pair{model::Tokenization::PerVariable, model::Dropout{}},
                           std::pair{model::Tokenization::Aggregate, model::Dropout{0.1, 0.2, 4}}}) {
    auto gpu = backend::make_device("cuda");
    const TrainRun ref = train_steps(backend::cpu(), opt(), model::Precision::F32, tok, 10, drop);
    const TrainRun got = train_steps(*gpu, opt(), model::Precision::F32, tok, 10, drop);
    for (size_t s = 0; s < ref.steps.size(); ++s) {
      EXPECT_TRUE(close(got.steps[s].loss, ref.steps[s].loss, 1e-5))
          << "step " << s << ": loss " << got.steps[s].loss << " vs cpu " << ref.steps[s].loss;
      EXPECT_TRUE(close(got.steps[s].grad_norm, ref.steps[s].grad_norm, 1e-5))
          << "step " << s << ": gradient norm " << got.steps[s].grad_norm << " vs cpu "
          << ref.steps[s].grad_norm;
      EXPECT_EQ(got.steps[s].lr, ref.steps[s].lr) << "step " << s;
    }
    EXPECT_LE(rel_err(got.params, ref.params), 1e-4) << "parameters after 10 steps";
    EXPECT_LE(rel_err(got.m, ref.m), 1e-4) << "first moments";
    EXPECT_LE(rel_err(got.v, ref.v), 1e-4) << "second moments";
  }
}

TEST_F(CudaTrainer, CheckpointRoundTripGpuCpuGpu) {
  auto gpu = backend::make_device("cuda");
  const auto c = seqvit_test::tiny_config();
  seqvit_test::SyntheticBatch d(c, 2);
  const fs::path dir = fs::temp_directory_path() / "seqvit_cuda_ckpt";
  fs::create_directories(dir);
  const TrainRun all_cpu = train_steps(backend::cpu(), opt(), model::Precision::F32,
                                  model::Tokenization::Aggregate, 6);
  std::vector<double> losses;
  // `steps` steps on `dev` from the checkpoint `from` (none: a fresh model), saved to `to`
  auto leg = [&](backend::Device& dev, const std::string& from, const std::string& to, int s0) {
    train::Trainer tr(c, opt(), 2, model::Precision::F32, 3, {}, dev);
    std::vector<float> p(static_cast<size_t>(tr.model().params().total()));
    if (!from.empty()) {
      eval::load_parameters(from, tr.model().params(), p.data());
      tr.write_params(p.data());
      train::load_optimizer(eval::optimizer_path(from), tr.model().params(), tr.optimizer());
      EXPECT_EQ(tr.optimizer().steps_done(), s0);
    }
    for (int s = s0; s < s0 + 2; ++s) losses.push_back(tr.step(d.batch(s)).loss);
    tr.read_params(p.data());
    eval::save_model(to, c, tr.model().params(), p.data());
    train::save_optimizer(eval::optimizer_path(to), tr.model().params(), tr.optimizer());
  };
  const std::string a = (dir / "gpu1.safetensors").string(), b = (dir / "cpu.safetensors").string(),
                    e = (dir / "gpu2.safetensors").string();
  leg(*gpu, "", a, 0);
  leg(backend::cpu(), a, b, 2);
  leg(*gpu, b, e, 4);
  ASSERT_EQ(losses.size(), 6u);
  for (size_t s = 0; s < losses.size(); ++s)
    EXPECT_TRUE(close(losses[s], all_cpu.steps[s].loss, 1e-5))
        << "step " << s << ": " << losses[s] << " vs all-CPU " << all_cpu.steps[s].loss;
  fs::remove_all(dir);
}
