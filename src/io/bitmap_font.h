// A small 5x7 bitmap font (seqvit's own glyphs) for the labels of forecast maps: digits, upper-
// and lower-case letters and the punctuation that titles, times and units use.
#pragma once

#include <cstdint>
#include <string>

#include "io/png.h"

namespace seqvit::io {

constexpr int kGlyphW = 5, kGlyphH = 7;
constexpr int kGlyphAdvance = 6;  // glyph width + 1 column of spacing

// The 7 rows of a glyph, top first; bit 4 is the leftmost column. Characters without a glyph
// are drawn as '?'.
const uint8_t* glyph(char c);
bool has_glyph(char c);

// Width and height in pixels of `text` drawn at `scale` (each font pixel a scale x scale block).
int64_t text_width(const std::string& text, int scale);
constexpr int64_t text_height(int scale) { return kGlyphH * scale; }

// Draws `text` with its top-left corner at (x, y); pixels outside the image are clipped.
void draw_text(RgbImage& img, int64_t x, int64_t y, const std::string& text, Rgb colour, int scale);

}  // namespace seqvit::io
