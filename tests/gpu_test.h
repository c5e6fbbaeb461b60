// Tests that need a GPU (the ctest label `gpu`, docs/cuda.md "Tests"): where the device cannot
// be used (no CUDA plugin in this build, no driver, no GPU) they are skipped with the reason, or
// fail with it when SEQVIT_REQUIRE_GPU=1 (a GPU machine, where a skip would hide a failure).
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "backend/device.h"

namespace seqvit_test {

inline bool gpu_required() {
  const char* r = std::getenv("SEQVIT_REQUIRE_GPU");
  return r && std::strcmp(r, "1") == 0;
}

}  // namespace seqvit_test

// In a test body or SetUp(): skip (or fail) unless `device` can be made here.
#define SEQVIT_NEED_DEVICE(device)                                                          \
  do {                                                                                      \
    std::string seqvit_why_;                                                                \
    if (!::seqvit::backend::device_available(device, &seqvit_why_)) {                       \
      if (::seqvit_test::gpu_required())                                                    \
        FAIL() << "SEQVIT_REQUIRE_GPU=1 but device '" << device << "' is unavailable: "    \
               << seqvit_why_;                                                              \
      GTEST_SKIP() << "device '" << device << "' is unavailable: " << seqvit_why_;         \
    }                                                                                       \
  } while (0)
