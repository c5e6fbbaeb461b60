// Resident-memory figures of this process from /proc/self/status (bytes; 0 if unavailable):
// VmRSS and VmHWM (peak). reset_peak_rss() restarts VmHWM (writes 5 to /proc/self/clear_refs).
// What the benchmarks and `seqvit train --report-json` print beside the planned bytes.
#pragma once

#include <cstddef>

namespace seqvit {

size_t current_rss();
size_t peak_rss();
void reset_peak_rss();

}  // namespace seqvit
