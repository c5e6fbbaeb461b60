// Parsing of "HxW" grid flags (--img, --grid), shared by the subcommands that take one.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

namespace seqvit::cli {

// "32x64" -> {32, 64}. Throws seqvit::Error naming the flag and showing `examples` otherwise.
std::pair<int64_t, int64_t> parse_grid_flag(const std::string& value, const std::string& flag,
                                            const std::string& examples);

}  // namespace seqvit::cli
