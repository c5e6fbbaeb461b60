// Forecast checkpoints: the dataset configuration, the normalisation and the climatology travel
// with the weights.
#include <gtest/gtest.h>

#include <filesystem>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "eval/forecast_fixture.h"
#include "eval/forecast_checkpoint.h"
#include "eval/checkpoint.h"
#include "io/safetensors.h"

namespace seqvit {
namespace {

namespace fs = std::filesystem;

TEST(ForecastCheckpointTest, RoundTripOfConfigNormalisationAndWeights) {
  const auto& f = testing::ForecastFixture::get();
  const auto ck = eval::load_forecast_checkpoint(f.checkpoint);
  EXPECT_EQ(ck.model.to_json(), f.model.to_json());
  EXPECT_EQ(data::forecast_config_to_json(ck.data), data::forecast_config_to_json(f.data));
  ASSERT_EQ(ck.norm.size(), 7u);  // inputs and outputs, each once
  EXPECT_GT(ck.norm.at("t2m").first, 200.0);  // kelvin
  EXPECT_GT(ck.norm.at("t2m").second, 0.0);
  model::ClimaX m(f.model);
  std::vector<float> p(m.params().total());
  m.init(p.data(), 7);
  EXPECT_EQ(ck.params, p);
  EXPECT_EQ(ck.step, 0);
}

TEST(ForecastCheckpointTest, ClimatologyTravelsWithTheWeights) {
  const auto& f = testing::ForecastFixture::get();
  const auto ck = eval::load_forecast_checkpoint(f.checkpoint);
  const data::ForecastDataset ds(f.data, data::Split::train);
  const auto& c = ck.climatology;
  ASSERT_FALSE(c.empty());
  EXPECT_EQ(c.outputs, f.data.outputs);
  EXPECT_EQ(c.H, 16);
  EXPECT_EQ(c.W, 32);
  EXPECT_EQ(c.lat, std::vector<double>(ds.lat().begin(), ds.lat().end()));
  EXPECT_EQ(c.lon, ds.lon());
  EXPECT_NEAR(c.lon.front(), 2.8125, 1e-9);  // mean of 0 and 5.625 (32x64 coarsened by 2)
  EXPECT_EQ(c.period.begin, "1979-01-01");
  EXPECT_EQ(c.period.end, "1979-01-05");
  EXPECT_EQ(c.steps, 16);  // 4 days, 6-hourly
  EXPECT_EQ(c.first_time, "1979-01-01T00:00:00Z");
  EXPECT_EQ(c.last_time, "1979-01-04T18:00:00Z");
  for (const auto& o : f.data.outputs) EXPECT_EQ(c.fields.at(o), ds.climatology(o)) << o;
  // The tensors are named climatology.<output>; the weights load without them (load_parameters
  // skips that prefix), so a plain model reader sees the same parameters.
  const io::SafetensorsReader r(ck.path);
  EXPECT_EQ(r.info("climatology.t2m").shape, (std::vector<int64_t>{16, 32}));
  model::ClimaX m(f.model);
  std::vector<float> p(m.params().total());
  eval::load_parameters(r, m.params(), p.data());
  EXPECT_EQ(p, ck.params);
}

TEST(ForecastCheckpointTest, MalformedClimatologyIsRefusedNamingTheTensor) {
  const auto& f = testing::ForecastFixture::get();
  const auto ck = eval::load_forecast_checkpoint(f.checkpoint);
  const fs::path dir = fs::path(f.dir) / "bad_climatology";
  fs::create_directories(dir);
  model::ClimaX m(f.model);
  // Rewrites the checkpoint with `edit` applied to its tensors and metadata.
  auto write = [&](const std::string& name, const auto& edit) {
    const io::SafetensorsReader r(ck.path);
    std::map<std::string, std::vector<float>> t;
    std::map<std::string, std::vector<int64_t>> shape;
    for (const auto& n : r.names()) t[n] = r.read_f32(n), shape[n] = r.info(n).shape;
    auto md = r.metadata();
    edit(t, shape, md);
    io::SafetensorsWriter w;
    for (const auto& [k, v] : md) w.set_metadata(k, v);
    for (const auto& [n, v] : t) w.add_f32(n, shape[n], v.data());
    const std::string path = (dir / name).string();
    w.write(path);
    return path;
  };
  auto message = [](const std::string& path) {
    try {
      eval::load_forecast_checkpoint(path);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  using T = std::map<std::string, std::vector<float>>;
  using S = std::map<std::string, std::vector<int64_t>>;
  using M = std::map<std::string, std::string>;
  const auto no_meta = write("no_meta.safetensors", [](T&, S&, M& md) {
    md.erase("seqvit.climatology");
  });
  EXPECT_NE(message(no_meta).find("tensor 'climatology.t2m' without the seqvit.climatology"),
            std::string::npos)
      << message(no_meta);
  const auto no_tensor = write("no_tensor.safetensors", [](T& t, S&, M&) {
    t.erase("climatology.z_500");
  });
  EXPECT_NE(message(no_tensor).find("tensor 'climatology.z_500' missing"), std::string::npos)
      << message(no_tensor);
  const auto shape = write("shape.safetensors", [](T& t, S& s, M&) {
    t["climatology.t_850"].resize(8 * 16);
    s["climatology.t_850"] = {8, 16};
  });
  EXPECT_NE(message(shape).find("climatology.t_850"), std::string::npos) << message(shape);
  const auto json = write("json.safetensors", [](T&, S&, M& md) {
    md["seqvit.climatology"] = "{\"outputs\": [\"t2m\"]}";
  });
  EXPECT_NE(message(json).find("bad seqvit.climatology metadata"), std::string::npos)
      << message(json);
  const auto order = write("order.safetensors", [](T&, S&, M& md) {
    auto j = nlohmann::json::parse(md.at("seqvit.climatology"));
    j["outputs"] = {"z_500", "t2m", "t_850"};
    md["seqvit.climatology"] = j.dump();
  });
  EXPECT_NE(message(order).find("the climatology is of z_500,t2m,t_850, but the model's outputs "
                                "are t2m,z_500,t_850"),
            std::string::npos)
      << message(order);
  const auto extra = write("extra.safetensors", [](T& t, S& s, M&) {
    t["climatology.q_700"] = t.at("climatology.t2m");
    s["climatology.q_700"] = s.at("climatology.t2m");
  });
  EXPECT_NE(message(extra).find("tensor 'climatology.q_700' is not among the outputs"),
            std::string::npos)
      << message(extra);
  // Without both (as written before climatologies were stored): loads, climatology empty.
  const auto old = write("old.safetensors", [](T& t, S&, M& md) {
    md.erase("seqvit.climatology");
    for (auto it = t.begin(); it != t.end();)
      it = it->first.rfind("climatology.", 0) == 0 ? t.erase(it) : std::next(it);
  });
  EXPECT_TRUE(eval::load_forecast_checkpoint(old).climatology.empty());
  EXPECT_EQ(eval::load_forecast_checkpoint(old).params, ck.params);
}

TEST(ForecastCheckpointTest, ResolvesStepAndRunDirectories) {
  const auto& f = testing::ForecastFixture::get();
  const fs::path run = fs::path(f.dir) / "run_resolve";
  fs::create_directories(run / "checkpoints" / eval::step_dir_name(10));
  fs::create_directories(run / "checkpoints" / eval::step_dir_name(20));
  fs::create_directories(run / "checkpoints" / (eval::step_dir_name(30) + ".tmp"));
  for (int s : {10, 20})
    fs::copy_file(f.checkpoint, run / "checkpoints" / eval::step_dir_name(s) / "model.safetensors");
  const auto latest = (run / "checkpoints" / "step_00000020" / "model.safetensors").string();
  EXPECT_EQ(eval::resolve_checkpoint(run.string()), latest);
  EXPECT_EQ(eval::resolve_checkpoint((run / "checkpoints" / "step_00000020").string()), latest);
  EXPECT_EQ(eval::list_checkpoints(run.string()).size(), 2u);
  try {
    eval::resolve_checkpoint((run / "nope").string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos);
  }
}

TEST(ForecastCheckpointTest, DataConfigRejectsUnknownKeys) {
  try {
    data::forecast_config_from_json(R"({"inputs":["t2m"],"outputs":["t2m"],"lead_hours":[6],"leed":1})",
                                    "x.safetensors");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'leed'"), std::string::npos);
  }
}

}  // namespace
}  // namespace seqvit
