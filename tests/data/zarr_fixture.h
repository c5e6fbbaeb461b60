// The Zarr test stores (tests/data/zarr_fixtures.py) for the tests that read them: written once
// into <build>/zarr_fixtures by ctest's zarr_fixtures setup test, or here when a test program
// runs on its own and finds none (expected.json, written last, marks a complete set).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

namespace zarr_test {

// The fixture directory; "" if the script failed (its output is in <dir>.log).
inline std::string fixture_dir() {
  const std::string dir = std::string(SEQVIT_BINARY_DIR) + "/zarr_fixtures";
  if (std::filesystem::exists(dir + "/expected.json")) return dir;
  const std::string cmd = std::string("/usr/bin/python3 ") + SEQVIT_SOURCE_DIR +
                          "/tests/data/zarr_fixtures.py " + dir + " > " + dir + ".log 2>&1";
  return std::system(cmd.c_str()) == 0 ? dir : "";
}

}  // namespace zarr_test
