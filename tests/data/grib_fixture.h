// The GRIB test files, written once per test program by tests/data/grib_fixtures.py (the Python
// eccodes module) into a temporary directory: a test suite derives from GribFixtureTest<Tag>
// (one directory per suite, named after `prefix`) and reads path("multi.grib2") etc.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace seqvit_test {

template <const char* prefix>
class GribFixtureTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = std::filesystem::temp_directory_path() /
           (std::string(prefix) + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    const std::string cmd = std::string("/usr/bin/python3 ") + SEQVIT_SOURCE_DIR +
                            "/tests/data/grib_fixtures.py " + dir_.string();
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  static void TearDownTestSuite() { std::filesystem::remove_all(dir_); }
  static std::string path(const std::string& n) { return (dir_ / n).string(); }
  static inline std::filesystem::path dir_;
};

}  // namespace seqvit_test
