// ClimaX weights (docs/checkpoints.md "ClimaX weights"): the independent PyTorch reference
// (scripts/torch_reference.py --climax-layout) writes a ClimaX-layout Lightning checkpoint with
// random weights and 7 default variables, and the forward of its own ClimaX module on a subset of
// them; scripts/climax_checkpoint.py imports the checkpoint for that subset (seqvit names,
// mapped by the script's name table), and `seqvit grad`'s forward on the converted weights must
// match PyTorch's. Then: import -> export -> import is exact (with --base and without), the
// fine-tuned model exported into the base keeps the other variables' rows, and the errors name
// the variable and list the available ones.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>

#include "cli/run_seqvit.h"
#include "io/safetensors.h"

namespace seqvit {
namespace {

namespace fs = std::filesystem;
using seqvit_test::rel_err;
using seqvit_test::run_command;
using seqvit_test::run_seqvit;

const std::string kPython = "/usr/bin/python3 ";
const std::string kScripts = std::string(SEQVIT_SOURCE_DIR) + "/scripts/";
// The reference's default variables (ClimaX names), and the forward's inputs in seqvit names:
// geopotential_500, 2m_temperature, land_sea_mask -> 2m_temperature, geopotential_500.
const std::string kClimaxVars =
    "land_sea_mask,orography,2m_temperature,10m_u_component_of_wind,geopotential_500,"
    "temperature_850,u_component_of_wind_250";
const std::string kArch = " --climax-variables " + kClimaxVars + " --num-heads 4 --img-size 8 16";

class ConvertClimaXTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = fs::temp_directory_path() /
           ("seqvit_climax_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(tmp_);
    fs::create_directories(tmp_);
    const auto r = run_command(kPython + kScripts + "torch_reference.py --climax-layout --out " +
                               tmp_.string() + " --seed 5 --threads 1 2>&1");
    ASSERT_EQ(r.status, 0) << r.output;
  }
  void TearDown() override { fs::remove_all(tmp_); }
  std::string at(const std::string& f) const { return (tmp_ / f).string(); }
  seqvit_test::Result convert(const std::string& args) const {
    return run_command(kPython + kScripts + "climax_checkpoint.py " + args + " 2>&1");
  }
  // import of `ckpt` for the reference's inputs into `model`
  void import(const std::string& ckpt, const std::string& model, const std::string& extra = kArch,
              const std::string& vars = "z_500,t2m,lsm",
              const std::string& outs = "t2m,z_500") const {
    const auto r = convert("import " + at(ckpt) + " " + at(model) + " --variables " + vars +
                           " --out-variables " + outs + extra);
    ASSERT_EQ(r.status, 0) << r.output;
  }
  // every tensor of two model files bit for bit
  void expect_identical(const std::string& a, const std::string& b) const {
    io::SafetensorsReader ra(at(a)), rb(at(b));
    ASSERT_EQ(ra.names(), rb.names()) << a << " vs " << b;
    for (const auto& n : ra.names()) {
      EXPECT_EQ(ra.info(n).shape, rb.info(n).shape) << n;
      EXPECT_EQ(ra.read_f32(n), rb.read_f32(n)) << a << " vs " << b << ": " << n;
    }
  }
  fs::path tmp_;
};

TEST_F(ConvertClimaXTest, ImportedWeightsGiveTheReferenceForward) {
  import("climax.ckpt", "m.safetensors");
  const auto g = run_seqvit("grad --model " + at("m.safetensors") + " --batch " +
                            at("climax_batch.safetensors") + " --out " + at("g.safetensors"));
  ASSERT_EQ(g.status, 0) << g.output;
  io::SafetensorsReader ours(at("g.safetensors")), ref(at("climax_reference.safetensors"));
  const double perr = rel_err(ours.read_f32("pred"), ref.read_f32("pred"));
  EXPECT_LE(perr, 1e-5) << "pred";  // fp32 against PyTorch in float64 (measured 1.7e-7)
  const double l = ours.read_f32("loss")[0], lref = ref.read_f32("loss")[0];
  EXPECT_LE(std::fabs(l - lref) / lref, 1e-5) << l << " vs " << lref;
  std::printf("  pred relative error %.3e\n", perr);
  // the stacked patch embeddings of parallel_patch_embed=True give the same model
  import("climax_parallel.ckpt", "par.safetensors");
  expect_identical("m.safetensors", "par.safetensors");
  // the variable subset really selects rows: another order of the same inputs is another model
  import("climax.ckpt", "swapped.safetensors", kArch, "t2m,z_500,lsm");
  io::SafetensorsReader a(at("m.safetensors")), b(at("swapped.safetensors"));
  EXPECT_EQ(a.read_f32("token_embeds.0.proj.weight"), b.read_f32("token_embeds.1.proj.weight"));
  EXPECT_NE(a.read_f32("var_embed"), b.read_f32("var_embed"));
}

TEST_F(ConvertClimaXTest, RoundTripsExactlyAndFineTunedWeightsGoBackIntoTheBase) {
  import("climax.ckpt", "m1.safetensors");
  // into the base checkpoint, and standalone (the model's variables only): both import back
  ASSERT_EQ(convert("export " + at("m1.safetensors") + " " + at("e1.ckpt") + " --base " +
                    at("climax.ckpt") + " --climax-variables " + kClimaxVars).status, 0);
  import("e1.ckpt", "m2.safetensors");
  expect_identical("m1.safetensors", "m2.safetensors");
  const auto alone = convert("export " + at("m1.safetensors") + " " + at("e2.ckpt"));
  ASSERT_EQ(alone.status, 0) << alone.output;
  EXPECT_NE(alone.output.find("(3 ClimaX variables)"), std::string::npos) << alone.output;
  import("e2.ckpt", "m3.safetensors", "");  // its own list, grid and heads travel with it
  expect_identical("m1.safetensors", "m3.safetensors");

  // fine-tune two steps (with dropout) from the import, export into the base, import again
  const auto ft = run_seqvit("train --init-from " + at("m1.safetensors") +
                             " --variables z_500,t2m,lsm --out-variables t2m,z_500 --img 8x16 "
                             "--patch 2 --embed-dim 64 --heads 4 --depth 2 --decoder-depth 2 "
                             "--steps 2 --batch 2 --threads 2 --dropout 0.1 --drop-path 0.1 "
                             "--out " + at("ft.safetensors"));
  ASSERT_EQ(ft.status, 0) << ft.output;
  ASSERT_EQ(convert("export " + at("ft.safetensors") + " " + at("ft.ckpt") + " --base " +
                    at("climax.ckpt") + " --climax-variables " + kClimaxVars).status, 0);
  import("ft.ckpt", "ft2.safetensors");
  expect_identical("ft.safetensors", "ft2.safetensors");
  // the variables the model does not have keep the base's weights
  import("climax.ckpt", "other_base.safetensors", kArch, "orography,u_250,t_850",
         "t_850");
  import("ft.ckpt", "other_ft.safetensors", kArch, "orography,u_250,t_850", "t_850");
  io::SafetensorsReader ob(at("other_base.safetensors")), of(at("other_ft.safetensors"));
  for (const char* n : {"token_embeds.0.proj.weight", "token_embeds.2.proj.bias", "var_embed"})
    EXPECT_EQ(ob.read_f32(n), of.read_f32(n)) << n;
  EXPECT_NE(ob.read_f32("blocks.0.attn.qkv.weight"), of.read_f32("blocks.0.attn.qkv.weight"))
      << "the shared tensors are the fine-tuned ones";
}

TEST_F(ConvertClimaXTest, ErrorsNameTheVariableAndListTheAvailableOnes) {
  auto fails_with = [&](const std::string& args, const std::string& needle) {
    const auto r = convert(args);
    EXPECT_EQ(r.status, 1) << args << "\n" << r.output;
    EXPECT_NE(r.output.find(needle), std::string::npos) << args << "\n" << r.output;
  };
  const std::string ck = at("climax.ckpt"), out = at("x.safetensors");
  fails_with("import " + ck + " " + out + " --variables z_500,q_700" + kArch,
             "variable 'q_700' (ClimaX 'specific_humidity_700') is not among the checkpoint's 7 "
             "variables; available: lsm (land_sea_mask), orography (orography), t2m "
             "(2m_temperature), u10 (10m_u_component_of_wind), z_500 (geopotential_500), t_850 "
             "(temperature_850), u_250 (u_component_of_wind_250)");
  fails_with("import " + ck + " " + out + " --variables t2m,foo" + kArch,
             "seqvit variable 'foo' has no ClimaX name");
  // without the list, ClimaX's 48 default variables do not fit the 7 rows
  fails_with("import " + ck + " " + out + " --variables t2m --num-heads 4 --img-size 8 16",
             "var_embed has 7 rows, but the default-variable list has 48");
  fails_with("import " + ck + " " + out + " --variables t2m --climax-variables " + kClimaxVars +
                 " --num-heads 4",
             "pos_embed has 32 patches, but a 32x64 grid with patch 2 has 512");
  fails_with("import " + at("climax_batch.safetensors") + " " + out + " --variables t2m",
             "cannot read a PyTorch checkpoint");
  // per_variable models have no ClimaX counterpart
  ASSERT_EQ(run_seqvit("train --steps 1 --batch 1 --img 8x16 --patch 2 --embed-dim 32 --heads 2 "
                       "--depth 1 --tokenization per_variable --threads 1 --out " +
                       at("pv.safetensors"))
                .status,
            0);
  fails_with("export " + at("pv.safetensors") + " " + at("pv.ckpt"),
             "per_variable tokenization has no ClimaX counterpart");
}

}  // namespace
}  // namespace seqvit
