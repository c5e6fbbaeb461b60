// Forecast maps: colour-map ends and shape (sequential lightness rises, the diverging map is
// white at 0 and symmetric), the bitmap font (each glyph's ink lands where its bits say), tick
// choice, and the rendered map (cell colours, colour bar ends, title present, missing grey).
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "io/bitmap_font.h"
#include "io/map_render.h"

using namespace seqvit::io;

namespace {

double luminance(Rgb c) { return 0.2126 * c.r + 0.7152 * c.g + 0.0722 * c.b; }

// Ink (non-background) pixels in [x0, x1) x [y0, y1).
int64_t ink(const RgbImage& img, int64_t x0, int64_t y0, int64_t x1, int64_t y1) {
  int64_t n = 0;
  for (int64_t y = y0; y < y1; ++y)
    for (int64_t x = x0; x < x1; ++x) n += !(img.at(x, y) == kBackground);
  return n;
}

TEST(MapRenderTest, SequentialColourMapEndsAndRisingLightness) {
  EXPECT_EQ(sequential_colour(0), (Rgb{68, 1, 84}));
  EXPECT_EQ(sequential_colour(1), (Rgb{253, 231, 37}));
  EXPECT_EQ(sequential_colour(-3), sequential_colour(0));  // clamped
  EXPECT_EQ(sequential_colour(7), sequential_colour(1));
  double prev = -1;
  for (int k = 0; k <= 100; ++k) {
    const double l = luminance(sequential_colour(k / 100.0));
    EXPECT_GT(l, prev) << "lightness must rise monotonically, at t = " << k / 100.0;
    prev = l;
  }
}

TEST(MapRenderTest, DivergingColourMapIsWhiteAtTheMiddleAndSymmetric) {
  EXPECT_EQ(diverging_colour(0.5), (Rgb{255, 255, 255}));
  const Rgb lo = diverging_colour(0), hi = diverging_colour(1);
  EXPECT_GT(lo.b, lo.r);           // blue end
  EXPECT_GT(hi.r, hi.b);           // red end
  for (int k = 1; k <= 50; ++k) {  // lightness falls away from white equally on both sides
    const double d = k / 100.0;
    EXPECT_NEAR(luminance(diverging_colour(0.5 - d)), luminance(diverging_colour(0.5 + d)), 20)
        << d;
    EXPECT_LT(luminance(diverging_colour(0.5 + d)), luminance(diverging_colour(0.5 + d - 0.01)));
  }
}

TEST(MapRenderTest, TextInkFollowsTheGlyphBits) {
  const std::string text = "Az09.:-";
  const int scale = 2;
  RgbImage img(100, 30, kBackground);
  draw_text(img, 3, 4, text, {255, 0, 0}, scale);
  EXPECT_EQ(text_width(text, scale), (7 * 6 - 1) * 2);
  for (size_t k = 0; k < text.size(); ++k) {
    const uint8_t* g = glyph(text[k]);
    for (int r = 0; r < kGlyphH; ++r)
      for (int c = 0; c < kGlyphAdvance; ++c)
        for (int s = 0; s < scale * scale; ++s) {
          const int64_t x = 3 + (k * kGlyphAdvance + c) * scale + s % scale;
          const int64_t y = 4 + r * scale + s / scale;
          const bool on = c < kGlyphW && (g[r] & (0x10 >> c));
          EXPECT_EQ(img.at(x, y) == (Rgb{255, 0, 0}), on)
              << text[k] << " row " << r << " col " << c;
        }
  }
  // Nothing outside the text's box.
  const int64_t x1 = 3 + text_width(text, scale), y1 = 4 + text_height(scale);
  EXPECT_EQ(ink(img, 0, 0, 100, 4) + ink(img, 0, y1, 100, 30) + ink(img, 0, 0, 3, 30) +
                ink(img, x1, 0, 100, 30),
            0);
}

TEST(MapRenderTest, FontCoversLabelsAndGlyphsAreDistinct) {
  std::set<std::vector<uint8_t>> seen;
  const std::string chars =
      "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.,:-+*/_()=%";
  for (char c : chars) {
    ASSERT_TRUE(has_glyph(c)) << c;
    const uint8_t* g = glyph(c);
    EXPECT_TRUE(seen.insert(std::vector<uint8_t>(g, g + kGlyphH)).second) << "duplicate " << c;
    for (int r = 0; r < kGlyphH; ++r) EXPECT_EQ(g[r] & ~0x1f, 0) << c;  // 5 columns only
  }
  EXPECT_TRUE(has_glyph(' '));
  EXPECT_FALSE(has_glyph('~'));
  EXPECT_EQ(glyph('~'), glyph('?'));
}

TEST(MapRenderTest, TicksAreRoundAndInside) {
  for (auto [lo, hi] : std::vector<std::pair<double, double>>{
           {0, 1}, {271.3, 303.9}, {-4.2, 4.2}, {49876, 57312}, {1e-4, 3.3e-4}, {-0.013, 0.002}}) {
    const auto t = nice_ticks(lo, hi);
    ASSERT_GE(t.size(), 3u) << lo << ".." << hi;
    ASSERT_LE(t.size(), 5u) << lo << ".." << hi;
    for (size_t k = 0; k < t.size(); ++k) {
      EXPECT_GE(t[k], lo - 1e-9 * std::abs(hi - lo));
      EXPECT_LE(t[k], hi + 1e-9 * std::abs(hi - lo));
      if (k > 1) EXPECT_NEAR(t[k] - t[k - 1], t[1] - t[0], 1e-9 * (hi - lo));
    }
  }
  EXPECT_EQ(nice_ticks(0, 1), (std::vector<double>{0, 0.25, 0.5, 0.75, 1}));
  EXPECT_EQ(nice_ticks(271.3, 303.9), (std::vector<double>{280, 290, 300}));
  EXPECT_EQ(tick_label(280), "280");
  EXPECT_EQ(tick_label(-0.0), "0");
  EXPECT_EQ(tick_label(0.25), "0.25");
}

TEST(MapRenderTest, RendersCellsColourBarAndTitle) {
  const int64_t H = 16, W = 32;
  std::vector<float> f(H * W);
  for (int64_t i = 0; i < H; ++i)
    for (int64_t j = 0; j < W; ++j) f[i * W + j] = 250.0f + i + 0.5f * j;
  f[3 * W + 5] = NAN;
  MapStyle s;
  s.title = "t2m forecast";
  s.subtitle = "valid 1979-01-07T06:00:00Z  lead 6 h";
  s.units = "K";
  s.lo = 250, s.hi = 250 + 15 + 15.5;
  const RgbImage img = render_map(f.data(), H, W, s);
  const MapLayout l = map_layout(H, W, s);
  EXPECT_EQ(l.cell, 16);
  EXPECT_EQ(l.map_w, 512);
  EXPECT_EQ(img.width, l.width);
  EXPECT_EQ(img.height, l.height);
  // Every pixel of a cell has the cell's colour (north row 0 at the top, lon 0 at the left).
  for (int64_t i : {0L, 7L, 15L})
    for (int64_t j : {0L, 13L, 31L})
      for (int64_t dy : {0L, 15L})
        for (int64_t dx : {0L, 15L})
          EXPECT_EQ(img.at(l.map_x + j * 16 + dx, l.map_y + i * 16 + dy),
                    sequential_colour((f[i * W + j] - s.lo) / (s.hi - s.lo)))
              << i << "," << j;
  EXPECT_EQ(img.at(l.map_x + 5 * 16 + 8, l.map_y + 3 * 16 + 8), kMissingColour);
  // The colour bar: hi at the top, lo at the bottom.
  EXPECT_EQ(img.at(l.bar_x + 5, l.bar_y), sequential_colour(1 - 0.5 / l.bar_h));
  EXPECT_EQ(img.at(l.bar_x + 5, l.bar_y + l.bar_h - 1), sequential_colour(0.5 / l.bar_h));
  // Title, subtitle and units have ink where they are drawn; an untitled map has none there.
  EXPECT_GT(ink(img, 10, l.title_y, 10 + text_width(s.title, 2), l.title_y + 14), 50);
  EXPECT_GT(ink(img, 10, l.subtitle_y, 10 + text_width(s.subtitle, 2), l.subtitle_y + 14), 100);
  EXPECT_GT(ink(img, l.bar_x, l.units_y, l.bar_x + 10, l.units_y + 14), 20);
  EXPECT_GE(img.width, 10 + text_width(s.subtitle, 2));
  MapStyle bare = s;
  bare.title = bare.subtitle = "";
  const RgbImage img2 = render_map(f.data(), H, W, bare);
  EXPECT_EQ(ink(img2, 0, 0, l.map_x + l.map_w, l.map_y - 2), 0);  // tick labels are further right
}

TEST(MapRenderTest, DivergingMapIsWhiteAtZero) {
  const int64_t H = 2, W = 64;
  std::vector<float> e(H * W, 0.0f);
  e[0] = -2, e[1] = 2;
  MapStyle s;
  s.lo = -2, s.hi = 2, s.diverging = true;
  const RgbImage img = render_map(e.data(), H, W, s);
  const MapLayout l = map_layout(H, W, s);
  EXPECT_EQ(l.cell, 8);
  EXPECT_EQ(img.at(l.map_x + 3 * 8, l.map_y + 8), (Rgb{255, 255, 255}));
  EXPECT_EQ(img.at(l.map_x, l.map_y), diverging_colour(0));
  EXPECT_EQ(img.at(l.map_x + 8, l.map_y), diverging_colour(1));
}

TEST(MapRenderTest, UniformAndEmptyFieldsStillRender) {
  std::vector<float> u(4 * 8, 3.0f), nan(4 * 8, NAN);
  MapStyle s;
  s.lo = s.hi = 3;
  EXPECT_NO_THROW(render_map(u.data(), 4, 8, s));
  s.lo = INFINITY, s.hi = -INFINITY;
  const RgbImage img = render_map(nan.data(), 4, 8, s);
  const MapLayout l = map_layout(4, 8, MapStyle{});
  EXPECT_EQ(img.at(l.map_x, l.map_y), kMissingColour);
}

}  // namespace
