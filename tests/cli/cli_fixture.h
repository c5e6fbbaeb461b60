// The shared pieces of the CLI tests that run the seqvit binary (run_seqvit.h): a temporary
// directory per test, a loss log read back as numbers, the check of a refused command, the
// comparison of two safetensors files tensor by tensor, and the model + batch files of the
// `seqvit grad` tests.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli/run_seqvit.h"
#include "io/safetensors.h"
#include "model/climax.h"
#include "train/checkpoint.h"
#include "train/synthetic_batch.h"

namespace seqvit_test {

// Whitespace-separated numbers of a text file (a --loss-log).
inline std::vector<double> read_numbers(const std::string& path) {
  std::ifstream f(path);
  std::vector<double> out;
  double v;
  while (f >> v) out.push_back(v);
  return out;
}

// A fresh directory per test, named after the suite and the process, removed afterwards.
class CliDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    tmp_ = std::filesystem::temp_directory_path() /
           ("seqvit_" + std::string(info->test_suite_name()) + "_" + std::to_string(::getpid()));
    std::filesystem::create_directories(tmp_);
  }
  void TearDown() override { std::filesystem::remove_all(tmp_); }
  std::string path(const std::string& name) const { return (tmp_ / name).string(); }

  // `seqvit train` runs: the run `name` (its --loss-log NAME.loss, NAME.safetensors and, with
  // `optimizer`, NAME.optim.safetensors) against the single-process run "single": the loss and
  // gradient norm of each of `steps` steps and every tensor, relative error <= 1e-5.
  void expect_same_run(const std::string& name, const std::string& what, bool optimizer = true,
                       size_t steps = 3) const;

  std::filesystem::path tmp_;
};

// A refused command: exit status `status` (any non-zero one when negative), the "seqvit: error:"
// line and `needle` in the output.
inline void expect_error(const Result& r, const std::string& needle, int status = -1) {
  if (status < 0)
    EXPECT_NE(r.status, 0) << r.output;
  else
    EXPECT_EQ(r.status, status) << r.output;
  EXPECT_NE(r.output.find("seqvit: error:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(needle), std::string::npos) << "wanted '" << needle << "' in:\n"
                                                      << r.output;
}

inline void CliDirTest::expect_same_run(const std::string& name, const std::string& what,
                                        bool optimizer, size_t steps) const {
  const auto ref = read_numbers(path("single.loss")), got = read_numbers(path(name + ".loss"));
  ASSERT_EQ(ref.size(), 2 * steps);  // (loss, gradient norm) per step
  ASSERT_EQ(got.size(), 2 * steps) << what;
  for (size_t i = 0; i < ref.size(); ++i)
    EXPECT_LE(std::abs(got[i] - ref[i]), 1e-5 * std::abs(ref[i]))
        << what << " step " << i / 2 + 1 << (i % 2 ? " gradient norm" : " loss");
  expect_same_tensors(path("single.safetensors"), path(name + ".safetensors"), 1e-5, what);
  if (optimizer)
    expect_same_tensors(path("single.optim.safetensors"), path(name + ".optim.safetensors"), 1e-5,
                        what + " (optimizer)");
}

// The `seqvit grad` tests: model.safetensors (tiny_config with `heads`, weights of seed 5) and
// batch.safetensors (B samples, SyntheticBatch step 1) in the test's directory.
class GradCliTest : public CliDirTest {
 protected:
  void write_inputs(seqvit::model::Tokenization tok, int64_t heads, int64_t B) {
    seqvit::model::ModelConfig c = tiny_config(tok);
    c.num_heads = heads;
    seqvit::model::ClimaX m(c);
    std::vector<float> params(m.params().total());
    m.init(params.data(), 5);
    seqvit::eval::save_model(path("model.safetensors"), c, m.params(), params.data());
    SyntheticBatch data(c, B);
    const seqvit::model::BatchView b = data.batch(1);
    seqvit::io::SafetensorsWriter w;
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
  // Every tensor of the file `out` against `single` (the single-process run's file).
  void compare(const std::string& out, const std::string& what,
               const std::string& single = "single.safetensors", double tol = 1e-5) {
    expect_same_tensors(path(single), path(out), tol, what);
  }
};

}  // namespace seqvit_test
