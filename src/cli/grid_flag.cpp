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

void check_checkpoint_grid(const data::ForecastConfig& data, const std::string& checkpoint,
                           const std::string& grid, const std::string& regrid_method) {
  if (!grid.empty()) {
    const data::LatLonGrid g = data::parse_grid(grid);  // a bad text: the error naming it
    if (data.grid.empty())
      fail("--grid {}: the model in {} was trained on the data's own grid (without --grid); "
           "leave --grid out",
           grid, checkpoint);
    const data::LatLonGrid t = data::parse_grid(data.grid);
    if (g.H() != t.H() || g.W() != t.W())
      fail("--grid {} differs from the grid {} that the model in {} was trained on; leave "
           "--grid out (the checkpoint's is used) or give --grid {}",
           grid, data.grid, checkpoint, data.grid);
  }
  if (!regrid_method.empty()) {
    const data::RegridMethod m = data::parse_regrid_method(regrid_method);
    if (data.grid.empty())
      fail("--regrid-method {}: the model in {} was trained on the data's own grid (without "
           "--grid); leave --regrid-method out",
           regrid_method, checkpoint);
    if (m != data.regrid_method)
      fail("--regrid-method {} differs from the method '{}' of the model in {} (--grid {}); "
           "leave --regrid-method out (the checkpoint's is used)",
           regrid_method, data::regrid_method_name(data.regrid_method), checkpoint, data.grid);
  }
}

void add_checkpoint_grid_flags(CLI::App* command, std::string* grid, std::string* regrid_method) {
  command->add_option("--grid", *grid,
                      "HxW: the equiangular grid the model was trained on (default: the "
                      "checkpoint's --grid; given, it must equal it)");
  command->add_option("--regrid-method", *regrid_method,
                      "conservative or bilinear (default: the checkpoint's; given, it must "
                      "equal it)");
}

}  // namespace seqvit::cli
