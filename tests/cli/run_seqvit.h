// Runs the built seqvit binary with arguments and captures its exit status and output, for
// the CLI tests (which check real processes: exit codes, messages, files written).
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "rel_err.h"

namespace seqvit_test {

struct Result {
  int status = -1;     // exit code, or 128 + signal
  std::string output;  // stdout (and stderr unless with_stderr is false)
};

// Runs a shell command line, capturing its output and exit status.
inline Result run_command(const std::string& cmd) {
  Result r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

inline Result run_seqvit(const std::string& args, bool with_stderr = true) {
  return run_command(std::string(SEQVIT_BINARY_DIR) + "/seqvit " + args +
                     (with_stderr ? " 2>&1" : " 2>/dev/null"));
}

// One JSON object per line of a command's output (`data stats --json`).
inline std::vector<nlohmann::json> json_lines(const std::string& s) {
  std::vector<nlohmann::json> r;
  std::istringstream in(s);
  for (std::string line; std::getline(in, line);) r.push_back(nlohmann::json::parse(line));
  return r;
}

// Every tensor of the safetensors file `got` against `ref`: the same names, the same shape and
// relative error <= tol (a single-vs-distributed check: a rank's slice or a truncated tensor in
// place of the whole one fails on its shape and its size).
inline void expect_same_tensors(const std::string& ref, const std::string& got, double tol,
                                const std::string& what) {
  seqvit::io::SafetensorsReader r(ref), g(got);
  ASSERT_EQ(r.names(), g.names()) << what;
  for (const auto& n : r.names()) {
    EXPECT_EQ(g.info(n).shape, r.info(n).shape) << what << ": " << n;
    EXPECT_LE(rel_err(g.read_f32(n), r.read_f32(n)), tol) << what << ": " << n;
  }
}

#ifdef SEQVIT_MPIEXEC
// `timeout 60 mpirun -np <np> seqvit <args>` with the environment of the MPI tests.
inline Result run_seqvit_mpi(int np, const std::string& args) {
  return run_command(
      "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
      "OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1 "
      "OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none OMP_NUM_THREADS=1 "
      "timeout 60 " SEQVIT_MPIEXEC " -np " +
      std::to_string(np) + " --oversubscribe " SEQVIT_BINARY_DIR "/seqvit " + args + " 2>&1");
}
#endif

}  // namespace seqvit_test
