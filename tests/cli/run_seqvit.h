// Runs the built seqvit binary with arguments and captures its exit status and output, for
// the CLI tests (which check real processes: exit codes, messages, files written).
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace seqvit_test {

struct Result {
  int status = -1;     // exit code, or 128 + signal
  std::string output;  // stdout (and stderr unless with_stderr is false)
};

inline Result run_seqvit(const std::string& args, bool with_stderr = true) {
  Result r;
  const std::string cmd = std::string(SEQVIT_BINARY_DIR) + "/seqvit " + args +
                          (with_stderr ? " 2>&1" : " 2>/dev/null");
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

}  // namespace seqvit_test
