// `seqvit data synth` end to end: it writes the ERA5-layout files that `seqvit data stats`
// reads back (every variable, sensible ranges), and rejects bad flags with a clear message.
#include <gtest/gtest.h>

#include "cli/run_seqvit.h"
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>

namespace fs = std::filesystem;

namespace {

std::pair<int, std::string> run(const std::string& args, bool with_stderr = true) {
  const auto r = seqvit_test::run_seqvit(args, with_stderr);
  return {r.status, r.output};
}

}  // namespace

TEST(DataSynth, WritesWhatDataStatsReads) {
  const fs::path dir = fs::temp_directory_path() / ("seqvit_synth_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  auto [st, out] = run("data synth --out " + dir.string() + " --days 4 --seed 3");
  ASSERT_EQ(st, 0) << out;
  EXPECT_NE(out.find("wrote 7 files"), std::string::npos) << out;
  EXPECT_TRUE(fs::exists(dir / "2m_temperature" / "2m_temperature_1979_5.625deg.nc"));
  auto [st2, json] = run("data stats --json " + dir.string(), false);
  ASSERT_EQ(st2, 0) << json;
  std::set<std::string> names;
  std::stringstream lines(json);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] != '{') continue;
    const auto j = nlohmann::json::parse(line);
    names.insert(j.at("name").get<std::string>());
    EXPECT_EQ(j.at("missing").get<int64_t>(), 0) << line;
    EXPECT_EQ(j.at("lat_first").get<double>(), 87.1875) << line;  // north to south
    if (j.at("name") == "t2m") {
      EXPECT_GT(j.at("mean").get<double>(), 250.0);
      EXPECT_LT(j.at("mean").get<double>(), 310.0);
      EXPECT_EQ(j.at("time_first").get<std::string>(), "1979-01-01T00:00:00Z");
      EXPECT_EQ(j.at("shape")[0].get<int64_t>(), 16);  // 4 days, 6-hourly
    }
  }
  for (const char* v : {"t2m", "u10", "v10", "z_500", "t_850", "lsm", "orography"})
    EXPECT_TRUE(names.count(v)) << v << " missing from:\n" << json;
  fs::remove_all(dir);
}

TEST(DataSynth, RejectsBadFlags) {
  auto [st, out] = run("data synth --out /tmp/seqvit_never --grid 30x64 --days 1");
  EXPECT_EQ(st, 1) << out;
  EXPECT_NE(out.find("30x64"), std::string::npos) << out;
  auto [st2, out2] = run("data synth --out /tmp/seqvit_never --grid 32by64");
  EXPECT_EQ(st2, 1) << out2;
  EXPECT_NE(out2.find("--grid must look like HxW"), std::string::npos) << out2;
  EXPECT_FALSE(fs::exists("/tmp/seqvit_never/2m_temperature"));
}
