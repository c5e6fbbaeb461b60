// The trainer, its optimizer and checkpoints on the guarded backend (backend/guarded): every
// step's loss, gradient norm and learning rate, and the final parameters and moments, equal the
// CPU backend's bit for bit (fp32 and bf16, with clipping); a checkpoint written from device
// memory and loaded into a new guarded trainer resumes with the same losses as the run that
// went on. So no line of train/ reads or writes device memory itself.
#include <gtest/gtest.h>

#include <filesystem>
#include <vector>

#include "backend/guarded/guarded_device.h"
#include "eval/checkpoint.h"
#include "train/checkpoint.h"
#include "train/synthetic_batch.h"
#include "train/trainer_steps.h"
#include "train/trainer.h"

using namespace seqvit;
namespace fs = std::filesystem;

namespace {

using seqvit_test::train_steps;
using Run = seqvit_test::TrainRun;

train::OptimConfig opt() { return seqvit_test::clipping_optim(2, 8); }

void expect_same(const Run& a, const Run& b) {
  ASSERT_EQ(a.steps.size(), b.steps.size());
  for (size_t s = 0; s < a.steps.size(); ++s) {
    EXPECT_EQ(a.steps[s].loss, b.steps[s].loss) << "step " << s;
    EXPECT_EQ(a.steps[s].grad_norm, b.steps[s].grad_norm) << "step " << s;
    EXPECT_EQ(a.steps[s].lr, b.steps[s].lr) << "step " << s;
  }
  EXPECT_EQ(a.params, b.params);
  EXPECT_EQ(a.m, b.m);
  EXPECT_EQ(a.v, b.v);
}

}  // namespace

TEST(GuardedTrainer, StepsMatchCpuFp32) {
  backend::GuardedDevice g;
  expect_same(train_steps(backend::cpu(), opt(), model::Precision::F32, model::Tokenization::Aggregate, 3),
              train_steps(g, opt(), model::Precision::F32, model::Tokenization::Aggregate, 3));
  EXPECT_EQ(g.live_allocations(), 0u);
}

TEST(GuardedTrainer, StepsMatchCpuBf16PerVariable) {
  backend::GuardedDevice g;
  expect_same(
      train_steps(backend::cpu(), opt(), model::Precision::BF16, model::Tokenization::PerVariable, 3),
      train_steps(g, opt(), model::Precision::BF16, model::Tokenization::PerVariable, 3));
}

TEST(GuardedTrainer, CheckpointResumesBitIdentically) {
  backend::GuardedDevice dev;
  const auto c = seqvit_test::tiny_config();
  seqvit_test::SyntheticBatch d(c, 2);
  const fs::path dir = fs::temp_directory_path() / "seqvit_guarded_ckpt";
  fs::create_directories(dir);
  const std::string model_file = (dir / "m.safetensors").string();
  std::vector<double> cont, resumed;
  {
    train::Trainer tr(c, opt(), 2, model::Precision::F32, 9, {}, dev);
    for (int s = 0; s < 2; ++s) tr.step(d.batch(s));
    std::vector<float> p(static_cast<size_t>(tr.model().params().total()));
    tr.read_params(p.data());
    eval::save_model(model_file, c, tr.model().params(), p.data());
    train::save_optimizer(eval::optimizer_path(model_file), tr.model().params(), tr.optimizer());
    for (int s = 2; s < 5; ++s) cont.push_back(tr.step(d.batch(s)).loss);
  }
  {
    train::Trainer tr(c, opt(), 2, model::Precision::F32, 1234, {}, dev);  // other init
    std::vector<float> p(static_cast<size_t>(tr.model().params().total()));
    eval::load_parameters(model_file, tr.model().params(), p.data());
    tr.write_params(p.data());
    train::load_optimizer(eval::optimizer_path(model_file), tr.model().params(), tr.optimizer());
    EXPECT_EQ(tr.optimizer().steps_done(), 2);
    for (int s = 2; s < 5; ++s) resumed.push_back(tr.step(d.batch(s)).loss);
  }
  EXPECT_EQ(cont, resumed);
  EXPECT_EQ(dev.live_allocations(), 0u);
  fs::remove_all(dir);
}
