// PNG output through libpng's simplified API (png_image), encoded in memory and written with
// io::write_file_atomic, so there is no setjmp/longjmp error handling to get wrong.
#include "io/png.h"

#include <png.h>

#include <algorithm>

#include "core/check.h"
#include "io/safetensors.h"

namespace seqvit::io {

RgbImage::RgbImage(int64_t w, int64_t h, Rgb fill) : width(w), height(h) {
  SEQVIT_CHECK(w > 0 && h > 0, "image size {}x{} must be positive", w, h);
  pixels.resize(static_cast<size_t>(w * h * 3));
  for (int64_t i = 0; i < w * h; ++i) {
    pixels[3 * i] = fill.r, pixels[3 * i + 1] = fill.g, pixels[3 * i + 2] = fill.b;
  }
}

Rgb RgbImage::at(int64_t x, int64_t y) const {
  SEQVIT_CHECK(x >= 0 && x < width && y >= 0 && y < height, "pixel ({}, {}) outside {}x{}", x, y,
               width, height);
  const uint8_t* p = &pixels[static_cast<size_t>((y * width + x) * 3)];
  return {p[0], p[1], p[2]};
}

void RgbImage::set(int64_t x, int64_t y, Rgb c) {
  if (x < 0 || x >= width || y < 0 || y >= height) return;
  uint8_t* p = &pixels[static_cast<size_t>((y * width + x) * 3)];
  p[0] = c.r, p[1] = c.g, p[2] = c.b;
}

void RgbImage::fill_rect(int64_t x, int64_t y, int64_t w, int64_t h, Rgb c) {
  const int64_t x0 = std::max<int64_t>(x, 0), x1 = std::min(x + w, width);
  const int64_t y0 = std::max<int64_t>(y, 0), y1 = std::min(y + h, height);
  for (int64_t yy = y0; yy < y1; ++yy)
    for (int64_t xx = x0; xx < x1; ++xx) set(xx, yy, c);
}

void write_png(const std::string& path, const RgbImage& img) {
  SEQVIT_CHECK(img.width > 0 && img.height > 0 &&
                   img.pixels.size() == static_cast<size_t>(img.width * img.height * 3),
               "image {}x{} holds {} bytes", img.width, img.height, img.pixels.size());
  png_image im{};
  im.version = PNG_IMAGE_VERSION;
  im.width = static_cast<png_uint_32>(img.width);
  im.height = static_cast<png_uint_32>(img.height);
  im.format = PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  const png_int_32 stride = static_cast<png_int_32>(img.width * 3);
  // First call sizes the buffer, second encodes.
  if (!png_image_write_to_memory(&im, nullptr, &size, 0, img.pixels.data(), stride, nullptr))
    fail("{}: PNG encoding failed: {}", path, im.message);
  std::string bytes(size, '\0');
  if (!png_image_write_to_memory(&im, bytes.data(), &size, 0, img.pixels.data(), stride, nullptr))
    fail("{}: PNG encoding failed: {}", path, im.message);
  bytes.resize(size);
  png_image_free(&im);
  write_file_atomic(path, bytes);
}

}  // namespace seqvit::io
