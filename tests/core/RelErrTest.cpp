// The tests' one error measure (tests/rel_err.h): norm-wise relative error in double, and a
// comparison that cannot be made (sizes differ, one side empty, a NaN or Inf) is +infinity with
// the reason, never a comparison of the common part.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>
#include <vector>

#include "rel_err.h"

using seqvit_test::rel_err;
using seqvit_test::RelErr;

namespace {
std::string printed(const RelErr& e) {
  std::ostringstream os;
  os << e;
  return os.str();
}
struct Entry {
  int64_t offset, numel;
};
}  // namespace

TEST(RelErr, NormWiseInDouble) {
  const std::vector<float> ref{3, 4}, got{3, 4.5f};
  EXPECT_DOUBLE_EQ(rel_err(got, ref), 0.5 / 5);
  EXPECT_EQ(rel_err(ref, ref), 0.0);
  const std::vector<double> dref{1e-20, 0}, dgot{2e-20, 0};
  EXPECT_DOUBLE_EQ(rel_err(dgot, dref), 1.0);
  // a zero reference is compared in absolute terms below the floor
  EXPECT_DOUBLE_EQ(rel_err(std::vector<double>{0, 1e-4}, std::vector<double>{0, 0}, 1e-3), 0.1);
}

TEST(RelErr, SizeMismatchFails) {
  const std::vector<float> ref{1, 2, 3, 4}, prefix{1, 2};
  const RelErr e = rel_err(prefix, ref);
  EXPECT_TRUE(std::isinf(e.value));
  EXPECT_FALSE(e <= 1e-5);
  EXPECT_EQ(printed(e), "inf (size 2 vs reference 4)");
  EXPECT_TRUE(std::isinf(rel_err(ref, prefix)));
}

TEST(RelErr, EmptyAgainstNonEmptyFails) {
  const std::vector<float> empty, ref{1};
  EXPECT_TRUE(std::isinf(rel_err(empty, ref)));
  EXPECT_TRUE(std::isinf(rel_err(ref, empty)));
  EXPECT_EQ(rel_err(empty, empty), 0.0);  // two empty tensors are the same
}

TEST(RelErr, NonFiniteFails) {
  const std::vector<float> ref{1, 2}, nan{1, NAN}, inf{INFINITY, 2};
  EXPECT_EQ(printed(rel_err(nan, ref)), "inf (non-finite value at element 1)");
  EXPECT_TRUE(std::isinf(rel_err(inf, ref)));
  EXPECT_EQ(printed(rel_err(ref, nan)), "inf (non-finite reference at element 1)");
}

TEST(RelErr, TableEntriesOfDifferentSizesFail) {
  const std::vector<float> a{1, 2, 3, 4}, b{1, 2, 3, 4};
  EXPECT_EQ(rel_err(seqvit_test::tensor(a.data(), Entry{1, 2}),
                    seqvit_test::tensor(b.data(), Entry{1, 2})),
            0.0);
  EXPECT_TRUE(std::isinf(rel_err(seqvit_test::tensor(a.data(), Entry{0, 2}),
                                 seqvit_test::tensor(b.data(), Entry{0, 3}))));
  EXPECT_EQ(rel_err(a.data(), b.data(), 4), 0.0);
}
