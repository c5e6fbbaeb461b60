// `seqvit predict` run as a user would, on the forecast fixture: the NetCDF file equals the
// in-process forecast, the maps exist with the expected size, and bad input (a time not in the
// data, a missing checkpoint, an unwritable output) exits 1 with a message and no partial file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "cli/run_seqvit.h"
#include "data/cf_time.h"
#include "data/netcdf_reader.h"
#include "eval/forecast_fixture.h"
#include "eval/forecast_checkpoint.h"
#include "eval/predict.h"
#include "io/map_render.h"

namespace fs = std::filesystem;
using seqvit::testing::ForecastFixture;

namespace {

using seqvit_test::Result;
Result run(const std::string& args) { return seqvit_test::run_seqvit(args); }

double hours(const std::string& iso) { return seqvit::data::parse_iso_datetime(iso) / 3600.0; }

fs::path temp_dir(const std::string& name) {
  const auto d =
      fs::temp_directory_path() / ("seqvit_predict_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::pair<int, int> png_size(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::vector<unsigned char> b{std::istreambuf_iterator<char>(in), {}};
  if (b.size() < 24) return {-1, -1};
  return {(b[16] << 24) | (b[17] << 16) | (b[18] << 8) | b[19],
          (b[20] << 24) | (b[21] << 16) | (b[22] << 8) | b[23]};
}

TEST(PredictTest, WritesTheForecastAndMaps) {
  const auto& f = ForecastFixture::get();
  const auto dir = temp_dir("ok");
  const auto out = dir / "forecast.nc", png = dir / "maps";
  const Result r = run("predict --checkpoint " + f.checkpoint +
                       " --time 1979-01-07T06:00:00Z --lead-hours 12 --threads 2 --out " +
                       out.string() + " --png " + png.string());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("valid 1979-01-07T18:00:00Z"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("RMSE"), std::string::npos) << r.output;

  const auto ck = seqvit::eval::load_forecast_checkpoint(f.checkpoint);
  const auto ds = seqvit::eval::prediction_dataset(ck, {}, 12);
  const auto p =
      seqvit::eval::predict(ck, *ds, seqvit::eval::find_sample(*ds, hours("1979-01-07T06:00:00Z")));
  seqvit::data::NetcdfDataset back({out.string()});
  const int64_t n = p.H * p.W;
  for (size_t v = 0; v < p.outputs.size(); ++v) {
    const auto ref = back.resolve(p.outputs[v]);
    EXPECT_EQ(back.variable(ref.variable).times,
              std::vector<double>{hours("1979-01-07T18:00:00Z")});
    std::vector<float> got(n);
    back.read(ref, 0, got.data());
    for (int64_t q = 0; q < n; ++q)
      ASSERT_NEAR(got[q], p.forecast[v * n + q], 1e-5 * std::max(1.0f, std::abs(got[q])))
          << p.outputs[v] << " " << q;
  }

  // Three maps per output variable; the map part is 512 px wide (16x32 grid, 16 px cells).
  seqvit::io::MapStyle style;
  const auto layout = seqvit::io::map_layout(p.H, p.W, style);
  EXPECT_EQ(layout.map_w, 512);
  int count = 0;
  for (const auto& e : fs::directory_iterator(png)) ++count, (void)e;
  EXPECT_EQ(count, 9);
  for (const auto& v : p.outputs)
    for (const char* kind : {"forecast", "truth", "error"}) {
      const auto file = png / (v + "_" + kind + ".png");
      ASSERT_TRUE(fs::exists(file)) << file;
      const auto [w, h] = png_size(file);
      EXPECT_EQ(h, layout.height) << file;
      EXPECT_GE(w, layout.bar_x + layout.bar_w + 20) << file;
      EXPECT_LE(w, 800) << file;
    }
  fs::remove_all(dir);
}

TEST(PredictTest, TimeNotInTheDataNamesItAndTheRange) {
  const auto& f = ForecastFixture::get();
  const auto dir = temp_dir("badtime");
  const auto out = (dir / "f.nc").string();
  Result r = run("predict --checkpoint " + f.checkpoint + " --time 1980-06-01 --out " + out);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("seqvit: error: no forecast from 1980-06-01T00:00:00Z"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("from 1979-01-01T00:00:00Z to "), std::string::npos) << r.output;
  // Between two data times: the nearest ones are named.
  r = run("predict --checkpoint " + f.checkpoint + " --time 1979-01-03T03:00:00Z --out " + out);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("nearest: 1979-01-03T00:00:00Z, 1979-01-03T06:00:00Z"), std::string::npos)
      << r.output;
  // The last time step has no target 6 h later.
  r = run("predict --checkpoint " + f.checkpoint + " --time 1979-01-08T18:00:00Z --out " + out);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("lead 6 h"), std::string::npos) << r.output;
  r = run("predict --checkpoint " + f.checkpoint + " --time yesterday --out " + out);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("yesterday"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out));
  fs::remove_all(dir);
}

// A checkpoint without a stored climatology (as written before checkpoints held one): the
// climatology is computed from the data's training period, with a note, to the same scores.
TEST(PredictTest, CheckpointWithoutClimatologyTakesTheOldPathWithANote) {
  const auto& f = ForecastFixture::get();
  const auto dir = temp_dir("old_ckpt");
  const auto ck = seqvit::eval::load_forecast_checkpoint(f.checkpoint);
  const std::string old = (dir / "old.safetensors").string();
  seqvit::model::ClimaX m(ck.model);
  seqvit::eval::save_forecast_model(old, ck.model, ck.data, ck.norm, seqvit::eval::Climatology{},
                                    m.params(), ck.params.data());
  auto scores = [&](const std::string& checkpoint, const std::string& name) {
    const Result r = run("predict --checkpoint " + checkpoint +
                         " --time 1979-01-07T06:00:00Z --threads 2 --out " +
                         (dir / (name + ".nc")).string());
    EXPECT_EQ(r.status, 0) << r.output;
    std::string lines;
    std::istringstream in(r.output);
    for (std::string l; std::getline(in, l);)
      if (l.find(" RMSE ") != std::string::npos) lines += l + "\n";
    return std::make_pair(lines, r.output);
  };
  const auto [now, now_out] = scores(f.checkpoint, "now");
  const auto [before, before_out] = scores(old, "old");
  EXPECT_EQ(now_out.find("holds no climatology"), std::string::npos) << now_out;
  EXPECT_NE(before_out.find("note: " + old + " holds no climatology"), std::string::npos)
      << before_out;
  EXPECT_EQ(std::count(now.begin(), now.end(), '\n'), 3) << now_out;
  EXPECT_EQ(before, now);
  fs::remove_all(dir);
}

TEST(PredictTest, MissingCheckpointIsAnError) {
  const auto dir = temp_dir("nockpt");
  const auto ck = (dir / "nope.safetensors").string();
  const Result r =
      run("predict --checkpoint " + ck + " --time 1979-01-07 --out " + (dir / "f.nc").string());
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("seqvit: error:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(ck), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "f.nc"));
  fs::remove_all(dir);
}

TEST(PredictTest, UnwritableOutputExitsOneAndLeavesNoFile) {
  const auto& f = ForecastFixture::get();
  const auto dir = temp_dir("unwritable");
  const std::string base = "predict --checkpoint " + f.checkpoint + " --time 1979-01-07 --out ";
  // A directory that does not exist.
  const auto missing = dir / "no_such_dir" / "f.nc";
  Result r = run(base + missing.string());
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("does not exist"), std::string::npos) << r.output;
  // A read-only directory (root ignores the mode, so only as another user).
  if (::geteuid() != 0) {
    fs::create_directories(dir / "ro");
    fs::permissions(dir / "ro", fs::perms::owner_read | fs::perms::owner_exec);
    r = run(base + (dir / "ro" / "f.nc").string());
    EXPECT_EQ(r.status, 1) << r.output;
    EXPECT_NE(r.output.find("not writable"), std::string::npos) << r.output;
    fs::permissions(dir / "ro", fs::perms::owner_all);
  }
  // The output path is a directory: the model runs, the final rename fails, and the temporary
  // file is removed.
  fs::create_directories(dir / "occupied.nc");
  r = run(base + (dir / "occupied.nc").string());
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("occupied.nc"), std::string::npos) << r.output;
  std::vector<std::string> left;
  for (const auto& e : fs::recursive_directory_iterator(dir)) left.push_back(e.path().string());
  EXPECT_EQ(left.size(), fs::exists(dir / "ro") ? 2u : 1u) << ::testing::PrintToString(left);
  fs::remove_all(dir);
}

}  // namespace
