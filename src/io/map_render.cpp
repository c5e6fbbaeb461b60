// Forecast map images (see map_render.h).
#include "io/map_render.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "io/bitmap_font.h"

namespace seqvit::io {

namespace {

struct Stop {
  double t;
  Rgb c;
};

Rgb interpolate(const Stop* stops, int n, double t) {
  if (!(t > 0)) return stops[0].c;  // also NaN
  if (t >= 1) return stops[n - 1].c;
  int k = 0;
  while (k + 2 < n && t > stops[k + 1].t) ++k;
  const double u = (t - stops[k].t) / (stops[k + 1].t - stops[k].t);
  auto mix = [&](uint8_t a, uint8_t b) {
    return static_cast<uint8_t>(std::lround(a + (static_cast<double>(b) - a) * u));
  };
  return {mix(stops[k].c.r, stops[k + 1].c.r), mix(stops[k].c.g, stops[k + 1].c.g),
          mix(stops[k].c.b, stops[k + 1].c.b)};
}

// Perceptually ordered (monotonic lightness) dark purple -> blue -> green -> yellow.
constexpr Stop kSequential[] = {{0.00, {68, 1, 84}},
                                {0.25, {59, 82, 139}},
                                {0.50, {33, 145, 140}},
                                {0.75, {94, 201, 98}},
                                {1.00, {253, 231, 37}}};
// Blue -> white -> red, symmetric in lightness about the white middle.
constexpr Stop kDiverging[] = {{0.00, {30, 80, 165}},
                               {0.25, {146, 197, 222}},
                               {0.50, {255, 255, 255}},
                               {0.75, {244, 165, 130}},
                               {1.00, {185, 35, 45}}};

constexpr int64_t kMargin = 10, kLine = text_height(kTextScale) + 6, kGap = 20, kBarW = 20,
                  kTickLen = 5;

}  // namespace

Rgb sequential_colour(double t) { return interpolate(kSequential, 5, t); }
Rgb diverging_colour(double t) { return interpolate(kDiverging, 5, t); }

std::vector<double> nice_ticks(double lo, double hi) {
  SEQVIT_CHECK(std::isfinite(lo) && std::isfinite(hi) && hi > lo, "tick range [{}, {}]", lo, hi);
  const double span = hi - lo;
  const int e0 = static_cast<int>(std::floor(std::log10(span))) - 2;
  for (int e = e0; e <= e0 + 3; ++e)
    for (double m : {1.0, 2.0, 2.5, 5.0}) {
      const double step = m * std::pow(10.0, e);
      const double k0 = std::ceil(lo / step - 1e-9), k1 = std::floor(hi / step + 1e-9);
      const double count = k1 - k0 + 1;
      if (count > 5) continue;
      if (count < 3) return {lo, 0.5 * (lo + hi), hi};
      std::vector<double> t;
      for (double k = k0; k <= k1; ++k) t.push_back(k * step);
      return t;
    }
  return {lo, 0.5 * (lo + hi), hi};
}

std::string tick_label(double v) {
  std::string s = fmt::format("{:.6g}", v);
  return s == "-0" ? "0" : s;
}

MapLayout map_layout(int64_t H, int64_t W, const MapStyle& style) {
  SEQVIT_CHECK(H > 0 && W > 0, "map grid {}x{}", H, W);
  MapLayout l;
  l.cell = std::max<int64_t>(1, 512 / W);
  l.title_y = kMargin;
  l.subtitle_y = l.title_y + kLine;
  l.map_x = kMargin;
  l.map_y = l.subtitle_y + kLine + 6;
  l.map_w = W * l.cell;
  l.map_h = H * l.cell;
  l.bar_x = l.map_x + l.map_w + kGap;
  l.bar_y = l.map_y;
  l.bar_w = kBarW;
  l.bar_h = l.map_h;
  l.units_y = l.map_y + l.map_h + 8;
  int64_t label_w = 0;
  if (style.hi > style.lo)
    for (double t : nice_ticks(style.lo, style.hi))
      label_w = std::max(label_w, text_width(tick_label(t), kTextScale));
  l.width = std::max({l.bar_x + l.bar_w + kTickLen + 4 + label_w + kMargin,
                      l.bar_x + text_width(style.units, kTextScale) + kMargin,
                      2 * kMargin + text_width(style.title, kTextScale),
                      2 * kMargin + text_width(style.subtitle, kTextScale)});
  l.height = l.units_y + text_height(kTextScale) + kMargin;
  return l;
}

RgbImage render_map(const float* field, int64_t H, int64_t W, const MapStyle& style_in) {
  MapStyle style = style_in;
  if (!(std::isfinite(style.lo) && std::isfinite(style.hi)))
    style.lo = 0, style.hi = 1;  // an all-missing field: any range
  if (!(style.hi > style.lo)) {  // a uniform field: widen the range around its value
    const double d = style.lo != 0 ? std::abs(style.lo) * 0.01 : 1.0;
    style.lo -= d, style.hi += d;
  }
  const MapLayout l = map_layout(H, W, style);
  RgbImage img(l.width, l.height, kBackground);
  auto colour = [&](double v) {
    if (std::isnan(v)) return kMissingColour;
    const double t = (v - style.lo) / (style.hi - style.lo);
    return style.diverging ? diverging_colour(t) : sequential_colour(t);
  };
  // Frames one pixel outside the map and the bar, so every cell keeps its full colour.
  img.fill_rect(l.map_x - 1, l.map_y - 1, l.map_w + 2, l.map_h + 2, kTextColour);
  img.fill_rect(l.bar_x - 1, l.bar_y - 1, l.bar_w + 2, l.bar_h + 2, kTextColour);
  for (int64_t i = 0; i < H; ++i)
    for (int64_t j = 0; j < W; ++j)
      img.fill_rect(l.map_x + j * l.cell, l.map_y + i * l.cell, l.cell, l.cell,
                    colour(field[i * W + j]));
  for (int64_t k = 0; k < l.bar_h; ++k) {  // top row = hi
    const double t = 1.0 - (static_cast<double>(k) + 0.5) / static_cast<double>(l.bar_h);
    img.fill_rect(l.bar_x, l.bar_y + k, l.bar_w, 1, colour(style.lo + t * (style.hi - style.lo)));
  }
  for (double v : nice_ticks(style.lo, style.hi)) {
    const double f = (style.hi - v) / (style.hi - style.lo);
    const int64_t y = l.bar_y + std::lround(f * static_cast<double>(l.bar_h - 1));
    img.fill_rect(l.bar_x + l.bar_w, y, kTickLen, 1, kTextColour);
    draw_text(img, l.bar_x + l.bar_w + kTickLen + 4, y - text_height(kTextScale) / 2, tick_label(v),
              kTextColour, kTextScale);
  }
  draw_text(img, kMargin, l.title_y, style.title, kTextColour, kTextScale);
  draw_text(img, kMargin, l.subtitle_y, style.subtitle, kTextColour, kTextScale);
  draw_text(img, l.bar_x, l.units_y, style.units, kTextColour, kTextScale);
  return img;
}

}  // namespace seqvit::io
