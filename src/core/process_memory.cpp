// Resident-memory figures from /proc/self/status (see process_memory.h).
#include "core/process_memory.h"

#include <cstdio>
#include <fstream>
#include <string>

namespace seqvit {

namespace {
size_t status_kib(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::string k(key);
  while (std::getline(f, line))
    if (line.compare(0, k.size(), k) == 0) return std::stoull(line.substr(k.size())) * 1024;
  return 0;
}
}  // namespace

size_t current_rss() { return status_kib("VmRSS:"); }
size_t peak_rss() { return status_kib("VmHWM:"); }
void reset_peak_rss() {
  if (FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
    std::fputs("5", f);
    std::fclose(f);
  }
}


}  // namespace seqvit
