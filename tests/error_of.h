// How the tests check an error: error_of(fn) is the seqvit::Error message fn throws ("(no
// error)" if it throws none), and EXPECT_HAS(message, needle) checks a part of it, printing the
// whole message when it is missing.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "core/check.h"

namespace seqvit_test {

inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const seqvit::Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace seqvit_test

#define EXPECT_HAS(haystack, needle) \
  EXPECT_NE(std::string(haystack).find(needle), std::string::npos) << (haystack)
