// 8-bit RGB images and their PNG files (libpng's simplified API), written atomically.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace seqvit::io {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Rgb&) const = default;
};

struct RgbImage {
  int64_t width = 0, height = 0;
  std::vector<uint8_t> pixels;  // [height, width, 3] row-major, top row first

  RgbImage() = default;
  RgbImage(int64_t w, int64_t h, Rgb fill);
  Rgb at(int64_t x, int64_t y) const;
  void set(int64_t x, int64_t y, Rgb c);  // ignores pixels outside the image
  void fill_rect(int64_t x, int64_t y, int64_t w, int64_t h, Rgb c);  // clipped
};

// Writes an 8-bit RGB PNG (colour type 2) to "<path>.tmp.<pid>", fsyncs and renames it over
// `path`. Throws seqvit::Error naming the path; no partial file is left behind.
void write_png(const std::string& path, const RgbImage& img);

}  // namespace seqvit::io
