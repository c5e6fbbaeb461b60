// `seqvit grad --recompute` (activation recomputation) writes bitwise the same pred, loss and
// gradients as without it: one process, and under `mpirun -np 2 ... --sp 2` (the SP attention
// forward runs again in backward and must give the same values).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
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

class GradSpRecomputeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = fs::temp_directory_path() / ("seqvit_gradrc_" + std::to_string(::getpid()));
    fs::create_directories(tmp_);
  }
  void TearDown() override { fs::remove_all(tmp_); }
  std::string path(const std::string& name) const { return (tmp_ / name).string(); }

  void write_inputs() {
    const model::ModelConfig c = seqvit_test::tiny_config(model::Tokenization::PerVariable);
    model::ClimaX m(c);
    std::vector<float> params(m.params().total());
    m.init(params.data(), 5);
    train::save_model(path("model.safetensors"), c, m.params(), params.data());
    constexpr int64_t B = 2;
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
  void expect_identical(const std::string& a, const std::string& b) {
    io::SafetensorsReader ra(path(a)), rb(path(b));
    ASSERT_EQ(ra.names(), rb.names());
    for (const auto& n : ra.names()) {
      const auto x = ra.read_f32(n), y = rb.read_f32(n);
      ASSERT_EQ(x.size(), y.size()) << n;
      EXPECT_EQ(std::memcmp(x.data(), y.data(), sizeof(float) * x.size()), 0)
          << b << ": " << n << " differs from " << a;
    }
  }
  fs::path tmp_;
};

TEST_F(GradSpRecomputeTest, RecomputeGivesIdenticalFiles) {
  write_inputs();
  for (const char* f : {"plain.safetensors", "rc.safetensors"}) {
    auto r = seqvit_test::run_seqvit(grad_args(f) + (f[0] == 'r' ? " --recompute" : ""));
    ASSERT_EQ(r.status, 0) << r.output;
  }
  expect_identical("plain.safetensors", "rc.safetensors");
  for (const char* f : {"sp.safetensors", "sp_rc.safetensors"}) {
    auto r = seqvit_test::run_seqvit_mpi(
        2, grad_args(f) + " --sp 2 --sp-mode ring" +
               (std::string(f) == "sp_rc.safetensors" ? " --recompute" : ""));
    ASSERT_EQ(r.status, 0) << r.output;
  }
  expect_identical("sp.safetensors", "sp_rc.safetensors");
}

}  // namespace
