// `seqvit grad --recompute` (activation recomputation) writes bitwise the same pred, loss and
// gradients as without it: one process, and under `mpirun -np 2 ... --sp 2` (the SP attention
// forward runs again in backward and must give the same values).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "cli/cli_fixture.h"
#include "cli/run_seqvit.h"
#include "io/safetensors.h"
#include "model/climax.h"
#include "train/checkpoint.h"
#include "train/synthetic_batch.h"

using namespace seqvit;
namespace fs = std::filesystem;

namespace {

using seqvit_test::expect_error;

class GradSpRecomputeTest : public seqvit_test::GradCliTest {
 protected:
  void write_inputs() { GradCliTest::write_inputs(model::Tokenization::PerVariable, 2, 2); }
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
