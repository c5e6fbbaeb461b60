// The seqvit binary on bad input: every case must exit with status 1 and one clear message that
// names the file, tensor or value — never a crash, never an internal error.
#include <gtest/gtest.h>

#include "cli/run_seqvit.h"
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "io/safetensors.h"

using namespace seqvit;
namespace fs = std::filesystem;

namespace {

const std::string kRef = std::string(SEQVIT_BINARY_DIR) + "/parity/aggregate";

using seqvit_test::Result;
Result run(const std::string& args) { return seqvit_test::run_seqvit(args); }

class CliBadInput : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = fs::temp_directory_path() / ("seqvit_cli_" + std::to_string(::getpid()));
    fs::create_directories(tmp_);
  }
  void TearDown() override { fs::remove_all(tmp_); }
  std::string path(const std::string& name) const { return (tmp_ / name).string(); }

  // Copies a safetensors file, letting `edit` change the tensor set and metadata.
  template <typename Edit>
  std::string rewrite(const std::string& src, const std::string& name, Edit edit) {
    io::SafetensorsReader r(src);
    io::SafetensorsWriter w;
    auto meta = r.metadata();
    std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>> t;
    for (const auto& n : r.names()) t[n] = {r.info(n).shape, r.read_f32(n)};
    edit(t, meta);
    for (const auto& [k, v] : meta) w.set_metadata(k, v);
    for (const auto& [n, sv] : t) w.add_f32(n, sv.first, sv.second.data());
    const std::string out = path(name);
    w.write(out);
    return out;
  }
  std::string grad_args(const std::string& model, const std::string& batch) {
    return "grad --model " + model + " --batch " + batch + " --out " + path("g.safetensors");
  }
  static void expect_error(const Result& r, const std::string& needle) {
    EXPECT_EQ(r.status, 1) << r.output;
    EXPECT_NE(r.output.find("seqvit: error:"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(needle), std::string::npos) << "wanted '" << needle << "' in:\n"
                                                        << r.output;
  }
  fs::path tmp_;
};

using Tensors = std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>>;
using Meta = std::map<std::string, std::string>;

}  // namespace

TEST_F(CliBadInput, BatchWithWrongShape) {
  auto b = rewrite(kRef + "/batch.safetensors", "b.safetensors", [](Tensors& t, Meta&) {
    auto& x = t["x"];
    x.first[1] += 1;  // one variable too many
    x.second.resize(x.first[0] * x.first[1] * x.first[2] * x.first[3], 0.5f);
  });
  expect_error(run(grad_args(kRef + "/model.safetensors", b)), "tensor 'x' has shape [2, 4, 8, 16], expected [2, 3, 8, 16]");
}

TEST_F(CliBadInput, BatchMissingTensor) {
  auto b = rewrite(kRef + "/batch.safetensors", "b.safetensors", [](Tensors& t, Meta&) { t.erase("lat"); });
  expect_error(run(grad_args(kRef + "/model.safetensors", b)), "missing tensor 'lat'");
}

TEST_F(CliBadInput, ModelMissingTensor) {
  auto m = rewrite(kRef + "/model.safetensors", "m.safetensors", [](Tensors& t, Meta&) { t.erase("blocks.1.mlp.fc2.bias"); });
  expect_error(run(grad_args(m, kRef + "/batch.safetensors")), "missing tensor 'blocks.1.mlp.fc2.bias'");
}

TEST_F(CliBadInput, ModelExtraTensor) {
  auto m = rewrite(kRef + "/model.safetensors", "m.safetensors", [](Tensors& t, Meta&) {
    t["blocks.7.attn.qkv.weight"] = {{2, 2}, {1, 2, 3, 4}};
  });
  expect_error(run(grad_args(m, kRef + "/batch.safetensors")), "unexpected tensor 'blocks.7.attn.qkv.weight'");
}

TEST_F(CliBadInput, ModelTensorWithWrongShape) {
  auto m = rewrite(kRef + "/model.safetensors", "m.safetensors", [](Tensors& t, Meta&) {
    auto& p = t["pos_embed"];
    p.first = {1, 16, 128};
  });
  expect_error(run(grad_args(m, kRef + "/batch.safetensors")), "'pos_embed' has shape [1, 16, 128], expected [1, 32, 64]");
}

TEST_F(CliBadInput, TruncatedModelFile) {
  const std::string m = path("trunc.safetensors");
  fs::copy_file(kRef + "/model.safetensors", m);
  fs::resize_file(m, fs::file_size(m) - 1000);
  const auto r = run(grad_args(m, kRef + "/batch.safetensors"));
  expect_error(r, "trunc.safetensors");
}

TEST_F(CliBadInput, EmbedDimNotDivisibleByHeads) {
  auto m = rewrite(kRef + "/model.safetensors", "m.safetensors", [](Tensors&, Meta& meta) {
    auto c = nlohmann::json::parse(meta["seqvit.config"]);
    c["num_heads"] = 5;
    meta["seqvit.config"] = c.dump();
  });
  expect_error(run(grad_args(m, kRef + "/batch.safetensors")), "embed_dim 64 is not divisible by num_heads 5");
}

TEST_F(CliBadInput, ImageNotDivisibleByPatch) {
  auto m = rewrite(kRef + "/model.safetensors", "m.safetensors", [](Tensors&, Meta& meta) {
    auto c = nlohmann::json::parse(meta["seqvit.config"]);
    c["patch_size"] = 3;
    meta["seqvit.config"] = c.dump();
  });
  expect_error(run(grad_args(m, kRef + "/batch.safetensors")), "image 8x16 is not divisible by patch_size 3");
}

TEST_F(CliBadInput, UnknownConfigKey) {
  auto m = rewrite(kRef + "/model.safetensors", "m.safetensors", [](Tensors&, Meta& meta) {
    auto c = nlohmann::json::parse(meta["seqvit.config"]);
    c["embed_dims"] = 64;
    meta["seqvit.config"] = c.dump();
  });
  expect_error(run(grad_args(m, kRef + "/batch.safetensors")), "unknown model configuration key 'embed_dims'");
}

TEST_F(CliBadInput, MissingFile) {
  expect_error(run(grad_args(path("nope.safetensors"), kRef + "/batch.safetensors")), "nope.safetensors");
}

TEST_F(CliBadInput, NotASafetensorsFile) {
  const std::string m = path("text.safetensors");
  std::ofstream(m) << "this is not a checkpoint at all";
  expect_error(run(grad_args(m, kRef + "/batch.safetensors")), "text.safetensors");
}

TEST_F(CliBadInput, TrainFlags) {
  expect_error(run("train --img 30x64 --patch 4 --steps 1"), "image 30x64 is not divisible by patch_size 4");
  expect_error(run("train --tokenization tokens --steps 1"), "unknown tokenization 'tokens'");
  expect_error(run("train --embed-dim 100 --heads 3 --steps 1"), "embed_dim 100 is not divisible by num_heads 3");
  expect_error(run("train --img 32by64 --steps 1"), "--img must look like HxW");
  expect_error(run("train --out-variables q700 --steps 1"), "'q700' is not one of the input variables");
}

TEST(Cli, TrainRunsAndWritesALoadableCheckpoint) {
  const auto dir = fs::temp_directory_path() / ("seqvit_cli_train_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string out = (dir / "m.safetensors").string();
  const auto r = run("train --steps 3 --batch 2 --embed-dim 32 --heads 2 --depth 1 --log-every 1 --out " + out);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("memory plan: parameters"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("step     3/3"), std::string::npos) << r.output;
  io::SafetensorsReader m(out);
  EXPECT_TRUE(m.metadata().count("seqvit.config"));
  EXPECT_TRUE(m.has("blocks.0.attn.qkv.weight"));
  io::SafetensorsReader o(dir / "m.optim.safetensors");
  EXPECT_TRUE(o.has("adam.m.blocks.0.attn.qkv.weight"));
  fs::remove_all(dir);
}
