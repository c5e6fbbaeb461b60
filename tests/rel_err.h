// The error measure of every comparison with a reference in the tests: the norm-wise relative
// error ||a - ref|| / max(||ref||, floor), accumulated in double.
//
// It is strict: two tensors of different sizes (a truncated slice, an empty result against a
// non-empty reference) are not compared on their common part but give +infinity, as does a NaN
// or Inf in either; the result says why when gtest prints it:
//   EXPECT_LE(rel_err(got, ref), 1e-5) << "pred";
//   -> Expected: (rel_err(got, ref)) <= (1e-5), actual: inf (size 96 vs reference 192) vs 1e-05
// Anything that comes with its own size (a vector, a span, a file's tensor) is compared as a
// whole; the pointer + count form is for buffers whose size the caller knows to be the same on
// both sides (two parameter buffers of one table).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <ostream>
#include <span>
#include <string>
#include <vector>

namespace seqvit_test {

// A relative error that converts to double (+inf when the comparison is invalid) and prints
// the reason it is invalid.
struct RelErr {
  double value = 0;
  std::string problem;  // empty when the two sides were compared
  operator double() const { return value; }
};

inline std::ostream& operator<<(std::ostream& os, const RelErr& e) {
  os << e.value;
  if (!e.problem.empty()) os << " (" << e.problem << ")";
  return os;
}

// The smallest reference norm divided by (an all-zero reference is compared in absolute terms
// below it). Tests whose reference may be exactly zero up to rounding pass a larger floor.
inline constexpr double kRelErrFloor = 1e-30;

namespace detail {
template <class T>
RelErr rel_err(std::span<const T> a, std::span<const T> ref, double floor) {
  if (a.size() != ref.size())
    return {INFINITY, "size " + std::to_string(a.size()) + " vs reference " +
                          std::to_string(ref.size())};
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(static_cast<double>(ref[i])))
      return {INFINITY, "non-finite reference at element " + std::to_string(i)};
    if (!std::isfinite(static_cast<double>(a[i])))
      return {INFINITY, "non-finite value at element " + std::to_string(i)};
    const double d = static_cast<double>(a[i]) - static_cast<double>(ref[i]);
    num += d * d;
    den += static_cast<double>(ref[i]) * static_cast<double>(ref[i]);
  }
  return {std::sqrt(num) / std::max(std::sqrt(den), floor), {}};
}
}  // namespace detail

inline RelErr rel_err(std::span<const float> a, std::span<const float> ref,
                      double floor = kRelErrFloor) {
  return detail::rel_err(a, ref, floor);
}
inline RelErr rel_err(std::span<const double> a, std::span<const double> ref,
                      double floor = kRelErrFloor) {
  return detail::rel_err(a, ref, floor);
}
// Vectors (also a vector against a span of the same element type).
inline RelErr rel_err(const std::vector<float>& a, const std::vector<float>& ref,
                      double floor = kRelErrFloor) {
  return detail::rel_err<float>(a, ref, floor);
}
inline RelErr rel_err(const std::vector<double>& a, const std::vector<double>& ref,
                      double floor = kRelErrFloor) {
  return detail::rel_err<double>(a, ref, floor);
}
// The tensor of a table entry (anything with `offset` and `numel`, e.g. seqvit::TensorEntry) in a
// flat buffer: rel_err(tensor(got, e), tensor(ref, ref_table.get(e.name))) checks that the two
// tables agree on the tensor's size too.
template <class Entry>
std::span<const float> tensor(const float* base, const Entry& e) {
  return {base + e.offset, static_cast<size_t>(e.numel)};
}

// n elements at a and at ref (both sides the same size by construction).
inline RelErr rel_err(const float* a, const float* ref, int64_t n) {
  return detail::rel_err<float>({a, static_cast<size_t>(n)}, {ref, static_cast<size_t>(n)},
                                kRelErrFloor);
}

}  // namespace seqvit_test
