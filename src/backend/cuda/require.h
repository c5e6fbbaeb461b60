// Host-side precondition checks of the CUDA ops (ops.h): the checks the CPU kernels make
// (kernels/*.cpp), made before anything is enqueued. A failed check throws seqvit::Error naming
// the op, its shapes and what would be valid, e.g.
//   "layernorm_forward(T=8, D=0): D must be > 0"
// Usable from .cu files (no fmt here; require.cpp formats).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>

namespace seqvit::backend::cuda {

// "op(T=8, D=0)" from "T,D" and {8, 0}: how every error of the plugin names a call.
std::string describe_call(const char* op, const char* names, std::initializer_list<int64_t> values);

[[noreturn]] void bad_arguments(const char* op, const char* what, const char* names,
                                std::initializer_list<int64_t> values);

}  // namespace seqvit::backend::cuda

// SEQVIT_CUDA_REQUIRE(cond, "op", "what must hold", "T,D", T, D)
#define SEQVIT_CUDA_REQUIRE(cond, op, what, names, ...)                          \
  do {                                                                           \
    if (!(cond)) ::seqvit::backend::cuda::bad_arguments(op, what, names, {__VA_ARGS__}); \
  } while (0)
