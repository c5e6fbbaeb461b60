// PNG writer: files read back with libpng itself have the size, colour type and every pixel
// that was written; failures are seqvit::Errors that leave no file behind.
#include <gtest/gtest.h>
#include <png.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/check.h"
#include "io/png.h"

namespace fs = std::filesystem;
using seqvit::io::Rgb;
using seqvit::io::RgbImage;

namespace {

fs::path temp_dir() {
  const auto d = fs::temp_directory_path() / ("seqvit_png_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

std::vector<unsigned char> file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(PngTest, WritesRgbThatLibpngReadsBack) {
  const auto dir = temp_dir();
  const std::string path = (dir / "img.png").string();
  RgbImage img(7, 5, {255, 255, 255});  // odd sizes: no row padding assumptions
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 7; ++x)
      img.set(x, y,
              {static_cast<uint8_t>(30 * x), static_cast<uint8_t>(50 * y),
               static_cast<uint8_t>(x + 7 * y)});
  img.set(6, 4, {12, 34, 56});
  seqvit::io::write_png(path, img);

  // IHDR: width, height (big-endian), bit depth 8, colour type 2 (RGB).
  const auto b = file_bytes(path);
  ASSERT_GT(b.size(), 33u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(&b[12]), 4), "IHDR");
  EXPECT_EQ((b[16] << 24) | (b[17] << 16) | (b[18] << 8) | b[19], 7);
  EXPECT_EQ((b[20] << 24) | (b[21] << 16) | (b[22] << 8) | b[23], 5);
  EXPECT_EQ(b[24], 8);
  EXPECT_EQ(b[25], PNG_COLOR_TYPE_RGB);

  png_image im{};
  im.version = PNG_IMAGE_VERSION;
  ASSERT_TRUE(png_image_begin_read_from_file(&im, path.c_str())) << im.message;
  EXPECT_EQ(im.width, 7u);
  EXPECT_EQ(im.height, 5u);
  im.format = PNG_FORMAT_RGB;
  std::vector<uint8_t> px(PNG_IMAGE_SIZE(im));
  ASSERT_TRUE(png_image_finish_read(&im, nullptr, px.data(), 0, nullptr)) << im.message;
  EXPECT_EQ(px, img.pixels);
  EXPECT_EQ(px[(4 * 7 + 6) * 3 + 0], 12);
  EXPECT_EQ(px[(4 * 7 + 6) * 3 + 1], 34);
  EXPECT_EQ(px[(4 * 7 + 6) * 3 + 2], 56);
  fs::remove_all(dir);
}

TEST(PngTest, ImageAccessorsClip) {
  RgbImage img(4, 3, {1, 2, 3});
  EXPECT_EQ(img.at(3, 2), (Rgb{1, 2, 3}));
  img.fill_rect(-2, -2, 4, 4, {9, 9, 9});  // clipped to (0..1, 0..1)
  EXPECT_EQ(img.at(1, 1), (Rgb{9, 9, 9}));
  EXPECT_EQ(img.at(2, 1), (Rgb{1, 2, 3}));
  img.set(10, 10, {0, 0, 0});  // outside: ignored
  EXPECT_THROW(img.at(4, 0), seqvit::Error);
}

TEST(PngTest, UnwritableDirectoryIsAnErrorAndLeavesNoFile) {
  const auto dir = temp_dir();
  const auto path = dir / "missing_subdir" / "img.png";
  try {
    seqvit::io::write_png(path.string(), RgbImage(2, 2, {0, 0, 0}));
    FAIL() << "expected an error";
  } catch (const seqvit::Error& e) {
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(path));
  fs::remove_all(dir);
}

}  // namespace
