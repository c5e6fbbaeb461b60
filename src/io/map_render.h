// Renders one gridded field [H, W] (row 0 = north) as an RGB map image (docs/forecasts.md):
//
//   +--------------------------------------------------------+
//   | title line 1  (variable, kind)                         |
//   | title line 2  (valid time, lead)                       |
//   | +------------------------------+  +--+ 5.8e4           |
//   | |  one cell = cell x cell px   |  |  | 5.6e4   tick    |
//   | |  (about 512 px wide)         |  |  | 5.4e4   labels  |
//   | +------------------------------+  +--+                 |
//   |                                   units                |
//   +--------------------------------------------------------+
//
// Colour maps: `sequential_colour` (viridis-like, dark purple -> yellow) for fields,
// `diverging_colour` (blue - white - red, white at the middle) for errors; both interpolate a
// handful of RGB control points linearly. Missing (NaN) cells are light grey.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/png.h"

namespace seqvit::io {

Rgb sequential_colour(double t);  // t in [0, 1], clamped
Rgb diverging_colour(double t);   // t in [0, 1], clamped; 0.5 is white
constexpr Rgb kMissingColour{200, 200, 200};
constexpr Rgb kTextColour{0, 0, 0};
constexpr Rgb kBackground{255, 255, 255};

struct MapStyle {
  std::string title;      // first line, e.g. "t2m forecast"
  std::string subtitle;   // second line, e.g. "valid 1979-01-07T06:00:00Z  lead 6 h"
  std::string units;      // written under the colour bar
  double lo = 0, hi = 1;  // colour range; values outside are clamped to its ends
  bool diverging = false;
};

// Where everything goes (pixels). cell = max(1, 512 / W): a 32x64 grid is 512 px wide.
struct MapLayout {
  int64_t cell = 1;
  int64_t map_x = 0, map_y = 0, map_w = 0, map_h = 0;  // the field's W*cell x H*cell block
  int64_t bar_x = 0, bar_y = 0, bar_w = 0, bar_h = 0;  // the colour bar, hi at the top
  int64_t title_y = 0, subtitle_y = 0, units_y = 0;    // top of each text line
  int64_t width = 0, height = 0;                       // the image
};
constexpr int kTextScale = 2;  // font pixels are 2x2: 10x14 px glyphs

// 3 to 5 tick values within [lo, hi] at a round step (1, 2, 2.5 or 5 times a power of 10).
std::vector<double> nice_ticks(double lo, double hi);
std::string tick_label(double v);  // "%.6g", -0 shown as 0

MapLayout map_layout(int64_t H, int64_t W, const MapStyle& style);
RgbImage render_map(const float* field, int64_t H, int64_t W, const MapStyle& style);

}  // namespace seqvit::io
