// The training step, the learning-rate schedule, and checkpoints: a run saved and resumed
// continues with bit-identical losses; a NaN loss stops before the update.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <vector>

#include "core/check.h"
#include "train/checkpoint.h"
#include "train/synthetic_batch.h"
#include "train/trainer.h"

using namespace seqvit;
namespace fs = std::filesystem;

namespace {

using seqvit_test::SyntheticBatch;
using seqvit_test::tiny_config;

train::OptimConfig opt() {
  train::OptimConfig o;
  o.lr = 2e-3;
  o.warmup_steps = 2;
  o.total_steps = 8;
  o.min_lr = 1e-5;
  o.weight_decay = 0.05;
  o.grad_clip = 1.0;
  return o;
}

}  // namespace

TEST(Schedule, WarmupThenCosine) {
  train::OptimConfig o;
  o.lr = 1.0;
  o.warmup_start_lr = 0.1;
  o.warmup_steps = 4;
  o.total_steps = 12;
  o.min_lr = 0.01;
  EXPECT_DOUBLE_EQ(train::learning_rate(o, 0), 0.1);
  EXPECT_DOUBLE_EQ(train::learning_rate(o, 2), 0.55);
  EXPECT_DOUBLE_EQ(train::learning_rate(o, 4), 1.0);
  EXPECT_NEAR(train::learning_rate(o, 8), 0.505, 1e-12);
  EXPECT_NEAR(train::learning_rate(o, 12), 0.01, 1e-12);
  EXPECT_NEAR(train::learning_rate(o, 50), 0.01, 1e-12);  // stays at min after the end
}

TEST(Trainer, LossFallsOnSyntheticData) {
  const auto c = tiny_config();
  auto o = opt();
  o.lr = 4e-3;
  o.total_steps = 30;
  train::Trainer tr(c, o, 4, model::Precision::F32, 0);
  SyntheticBatch d(c, 4);
  const auto first = tr.step(d.batch(0)).loss;
  double last = 0;
  for (int s = 1; s < 30; ++s) last = tr.step(d.batch(0)).loss;  // same batch: fit it
  EXPECT_LT(last, 0.6 * first);
}

// Dropout acts in step() only, with the masks of the step being taken: loss_and_grad (seqvit
// grad) and a forward outside a step (evaluation) see the plain model; two trainers at the same
// step with the same seed drop alike.
TEST(Trainer, DropoutOnlyInsideSteps) {
  const auto c = tiny_config();
  SyntheticBatch d(c, 2);
  train::Trainer plain(c, opt(), 2, model::Precision::F32, 0), drop(c, opt(), 2,
                                                                     model::Precision::F32, 0);
  drop.set_dropout({0.2, 0.2, 9});
  EXPECT_EQ(drop.loss_and_grad(d.batch(0)), plain.loss_and_grad(d.batch(0))) << "grad";
  const auto sp = plain.step(d.batch(0)), sd = drop.step(d.batch(0));
  EXPECT_NE(sd.loss, sp.loss) << "a training step drops";
  train::Trainer again(c, opt(), 2, model::Precision::F32, 0);
  again.set_dropout({0.2, 0.2, 9});
  EXPECT_EQ(again.step(d.batch(0)).loss, sd.loss) << "same seed, same step: same masks";
  // after the step: off again (the weights differ now, so compare with a plain trainer at them)
  std::vector<float> w(static_cast<size_t>(drop.model().params().total()));
  drop.read_params(w.data());
  plain.write_params(w.data());
  EXPECT_EQ(drop.loss_and_grad(d.batch(1)), plain.loss_and_grad(d.batch(1)));
}

TEST(Trainer, NanLossStopsBeforeTheUpdate) {
  const auto c = tiny_config();
  train::Trainer tr(c, opt(), 2, model::Precision::F32, 0);
  SyntheticBatch d(c, 2);
  tr.step(d.batch(0));
  std::vector<float> before(tr.params(), tr.params() + tr.model().params().total());
  auto b = d.batch(1);
  d.x()[5] = std::numeric_limits<float>::quiet_NaN();
  try {
    tr.step(b);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("at step 2"), std::string::npos) << e.what();
  }
  for (size_t i = 0; i < before.size(); ++i) ASSERT_EQ(before[i], tr.params()[i]);
}

TEST(Trainer, ResumeFromCheckpointIsBitIdentical) {
  const auto c = tiny_config();
  const auto dir = fs::temp_directory_path() / ("seqvit_resume_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "ck.safetensors").string();
  SyntheticBatch d(c, 2);
  std::vector<double> straight;
  {
    train::Trainer tr(c, opt(), 2, model::Precision::F32, 5);
    for (int s = 0; s < 6; ++s) {
      straight.push_back(tr.step(d.batch(s)).loss);
      if (s == 2) {
        eval::save_model(path, c, tr.model().params(), tr.params());
        train::save_optimizer(eval::optimizer_path(path), tr.model().params(), tr.optimizer());
      }
    }
  }
  const auto c2 = eval::read_model_config(path);
  EXPECT_EQ(c2.to_json(), c.to_json());
  train::Trainer tr(c2, opt(), 2, model::Precision::F32, 999);  // different init, then loaded
  eval::load_parameters(path, tr.model().params(), tr.params());
  train::load_optimizer(eval::optimizer_path(path), tr.model().params(), tr.optimizer());
  tr.params_changed();
  EXPECT_EQ(tr.optimizer().steps_done(), 3);
  for (int s = 3; s < 6; ++s) EXPECT_EQ(tr.step(d.batch(s)).loss, straight[s]) << "step " << s;
  fs::remove_all(dir);
}

TEST(Trainer, MemoryPlanIsReportedAndAllocatedUpFront) {
  train::Trainer tr(tiny_config(), opt(), 2, model::Precision::BF16, 0);
  const auto r = tr.memory_report();
  for (const char* k : {"parameters", "gradients", "optimizer state", "activations", "workspace"})
    EXPECT_NE(r.find(k), std::string::npos) << r;
  EXPECT_GT(tr.model().activation_bytes(), 0u);
  EXPECT_GT(tr.model().workspace_bytes(), 0u);
}
