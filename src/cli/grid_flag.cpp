// "HxW" grid flags (see grid_flag.h).
#include "cli/grid_flag.h"

#include <sstream>

#include "core/check.h"

namespace seqvit::cli {

std::pair<int64_t, int64_t> parse_grid_flag(const std::string& value, const std::string& flag,
                                            const std::string& examples) {
  int64_t h = 0, w = 0;
  char x = 0;
  std::stringstream ss(value);
  if (!(ss >> h >> x >> w) || x != 'x' || !ss.eof())
    fail("{} must look like HxW ({}), got '{}'", flag, examples, value);
  return {h, w};
}

}  // namespace seqvit::cli
