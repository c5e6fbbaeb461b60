// safetensors: round trips, files laid out as the reference Python implementation writes them
// (hand-built bytes, mixed dtypes, arbitrary key order), every malformed-file case (each must be a
// seqvit::Error naming the file and the problem, never a crash), and atomic replacement.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/check.h"
#include "io/safetensors.h"

namespace fs = std::filesystem;
using seqvit::Error;
using seqvit::io::SafetensorsReader;
using seqvit::io::SafetensorsWriter;
using seqvit::io::write_file_atomic;

namespace {

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    dir_ = fs::temp_directory_path() / fmt::format("seqvit_safetensors_{}_{}", ::getpid(), rd());
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(dir_, ec);
  }
  std::string file(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string u64le(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A safetensors file from a header text and a data section, as the format defines it.
std::string st_bytes(const std::string& header, const std::string& data) {
  return u64le(header.size()) + header + data;
}

template <typename T>
std::string raw(std::initializer_list<T> values) {
  std::string s;
  for (T v : values) s.append(reinterpret_cast<const char*>(&v), sizeof(T));
  return s;
}

// Asserts that opening `path` throws seqvit::Error whose message contains the file name and
// every one of `parts`.
void expect_read_error(const std::string& path, const std::vector<std::string>& parts) {
  try {
    SafetensorsReader r(path);
    ADD_FAILURE() << "no error for " << path;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(fs::path(path).filename().string()), std::string::npos) << msg;
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "missing '" << p << "' in: " << msg;
  }
}

// One F32 tensor "x" of shape [2] at [0, 8) with the given header entry replaced by `entry`.
std::string one_tensor(const std::string& entry, const std::string& data = raw<float>({1.f, 2.f})) {
  return st_bytes("{\"x\":" + entry + "}", data);
}

std::vector<std::string> tmp_leftovers(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().find(".tmp.") != std::string::npos)
      out.push_back(e.path().string());
  }
  return out;
}

}  // namespace

TEST_F(SafetensorsTest, RoundTripWithMetadataAndScalar) {
  std::mt19937 rng(7);
  std::normal_distribution<float> dist;
  std::vector<float> w(192 * 65), b(192), s = {3.25f};
  for (auto& v : w) v = dist(rng);
  for (auto& v : b) v = dist(rng);
  w[5] = std::numeric_limits<float>::infinity();
  w[6] = -0.0f;
  SafetensorsWriter wr;
  wr.set_metadata("seqvit.config", R"({"embed_dim": 64, "variables": ["t2m", "u10"]})");
  wr.set_metadata("format", "pt");
  wr.add_f32("blocks.0.attn.qkv.weight", {192, 65}, w.data());
  wr.add_f32("blocks.0.attn.qkv.bias", {192}, b.data());
  wr.add_f32("scalar", {}, s.data());
  wr.add_f32("empty", {0, 4}, nullptr);
  const std::string path = file("model.safetensors");
  wr.write(path);

  // Layout as the reference writes it: header length a multiple of 8, padded with spaces.
  const std::string bytes = read_bytes(path);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + n + 4 * (w.size() + b.size() + 1));
  EXPECT_EQ(bytes[8], '{');

  SafetensorsReader r(path);
  EXPECT_EQ(r.names(), (std::vector<std::string>{"blocks.0.attn.qkv.bias",
                                                 "blocks.0.attn.qkv.weight", "empty", "scalar"}));
  EXPECT_EQ(r.metadata().at("seqvit.config"), R"({"embed_dim": 64, "variables": ["t2m", "u10"]})");
  EXPECT_EQ(r.metadata().at("format"), "pt");
  // Sorted-name order, contiguous.
  EXPECT_EQ(r.info("blocks.0.attn.qkv.bias").begin, 0u);
  EXPECT_EQ(r.info("blocks.0.attn.qkv.weight").begin, 192u * 4);
  EXPECT_EQ(r.info("empty").begin, r.info("empty").end);
  EXPECT_EQ(r.info("scalar").shape, std::vector<int64_t>{});
  EXPECT_EQ(r.info("scalar").numel(), 1);
  EXPECT_EQ(r.info("empty").numel(), 0);

  std::vector<float> w2(w.size());
  r.read_f32("blocks.0.attn.qkv.weight", {192, 65}, w2.data());
  EXPECT_EQ(std::memcmp(w.data(), w2.data(), w.size() * 4), 0);  // bit-exact, -0 and inf included
  EXPECT_EQ(r.read_f32("blocks.0.attn.qkv.bias"), b);
  EXPECT_EQ(r.read_f32("scalar"), std::vector<float>{3.25f});
  EXPECT_TRUE(r.read_f32("empty").empty());
  EXPECT_TRUE(r.has("scalar"));
  EXPECT_FALSE(r.has("nope"));
}

// The exact bytes the reference (Python safetensors 0.8, `safetensors.numpy.save` of the same
// arrays with metadata {"format": "pt"}) produces: seqvit's files are byte-identical to it.
TEST_F(SafetensorsTest, WriterOutputMatchesReferenceBytes) {
  const std::string header =
      R"({"__metadata__":{"format":"pt"},)"
      R"("a.w":{"dtype":"F32","shape":[2,1,2],"data_offsets":[0,16]},)"
      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[16,24]},)"
      R"("s":{"dtype":"F32","shape":[],"data_offsets":[24,28]}})"
      "       ";
  const std::string expected =
      u64le(0xd0) + header + raw<float>({1.f, 1.f, 1.f, 1.f, 1.5f, -2.f, 0.25f});
  ASSERT_EQ(header.size(), 0xd0u);
  const std::vector<float> ones(4, 1.f), b = {1.5f, -2.f};
  const float s = 0.25f;
  SafetensorsWriter wr;
  wr.add_f32("s", {}, &s);
  wr.add_f32("b", {2}, b.data());
  wr.add_f32("a.w", {2, 1, 2}, ones.data());
  wr.set_metadata("format", "pt");
  wr.write(file("ref.safetensors"));
  EXPECT_EQ(read_bytes(file("ref.safetensors")), expected);
}

TEST_F(SafetensorsTest, EmptyFileWithoutTensors) {
  SafetensorsWriter wr;
  const std::string path = file("empty.safetensors");
  wr.write(path);
  SafetensorsReader r(path);
  EXPECT_TRUE(r.names().empty());
  EXPECT_TRUE(r.metadata().empty());
}

// F64 and I64 tensors round-trip exactly (the regridding weights cache relies on it); reading
// them with the other dtype's reader is an error naming the file, the tensor and both dtypes.
TEST_F(SafetensorsTest, F64AndI64RoundTripExactly) {
  const std::vector<double> d = {0.1, -1e300, 5e-324, std::nextafter(1.0, 2.0)};
  const std::vector<int64_t> i = {0, -1, (int64_t{1} << 62) + 3};
  const std::vector<float> f = {1.5f};
  SafetensorsWriter wr;
  wr.add_f64("d", {2, 2}, d.data());
  wr.add_i64("i", {3}, i.data());
  wr.add_f32("f", {1}, f.data());
  const std::string path = file("mixed.safetensors");
  wr.write(path);
  SafetensorsReader r(path);
  EXPECT_EQ(r.info("d").dtype, "F64");
  EXPECT_EQ(r.info("d").shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(r.read_f64("d"), d);
  EXPECT_EQ(r.read_i64("i"), i);
  EXPECT_EQ(r.read_f32("f"), f);
  try {
    (void)r.read_f64("i");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'i' has dtype I64, expected F64"),
              std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)r.read_i64("f"), Error);
}

// Bytes laid out the way the Python reference writes mixed dtypes (larger alignment first, then
// by name), with the header keys in an arbitrary order, space padding and metadata.
TEST_F(SafetensorsTest, ReadsReferenceStyleFileWithMixedDtypes) {
  // BF16: 1.5, -2.0, 0.15625, 3.140625. F16: 1, -0.5, 65504, 2^-24 (subnormal), inf,
  // 0.333251953125.
  const std::string f64 = raw<double>({0.1, -1e-3, 12345.678});
  const std::string f32 = raw<float>({7.5f});
  const std::string i64 = raw<int64_t>({42});
  const std::string bf16 = raw<uint16_t>({0x3FC0, 0xC000, 0x3E20, 0x4049});
  const std::string f16 = raw<uint16_t>({0x3C00, 0xB800, 0x7BFF, 0x0001, 0x7C00, 0x3555});
  const std::string data = f64 + i64 + f32 + bf16 + f16;  // offsets 0, 24, 32, 36, 44, 56
  std::string header = R"({"h.f16":{"dtype":"F16","shape":[2,3],"data_offsets":[44,56]},)"
                       R"("__metadata__":{"format":"pt"},)"
                       R"("a.bf16":{"shape":[4],"data_offsets":[36,44],"dtype":"BF16"},)"
                       R"("z.f64":{"data_offsets":[0,24],"dtype":"F64","shape":[3,1]},)"
                       R"("count":{"dtype":"I64","shape":[],"data_offsets":[24,32]},)"
                       R"("m.f32":{"dtype":"F32","shape":[1,1,1],"data_offsets":[32,36]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  const std::string path = file("reference.safetensors");
  write_bytes(path, st_bytes(header, data));

  SafetensorsReader r(path);
  EXPECT_EQ(r.names(), (std::vector<std::string>{"a.bf16", "count", "h.f16", "m.f32", "z.f64"}));
  EXPECT_EQ(r.metadata().at("format"), "pt");
  EXPECT_EQ(r.read_f32("a.bf16"), (std::vector<float>{1.5f, -2.0f, 0.15625f, 3.140625f}));
  const auto h = r.read_f32("h.f16");
  ASSERT_EQ(h.size(), 6u);
  EXPECT_EQ(h[0], 1.0f);
  EXPECT_EQ(h[1], -0.5f);
  EXPECT_EQ(h[2], 65504.0f);
  EXPECT_EQ(h[3], std::ldexp(1.0f, -24));
  EXPECT_TRUE(std::isinf(h[4]) && h[4] > 0);
  EXPECT_EQ(h[5], 0.333251953125f);
  std::vector<float> d(3);
  r.read_f32("z.f64", {3, 1}, d.data());
  EXPECT_EQ(d, (std::vector<float>{0.1f, -1e-3f, 12345.678f}));
  EXPECT_EQ(r.read_f32("m.f32"), std::vector<float>{7.5f});
  EXPECT_EQ(r.info("count").dtype, "I64");
  try {
    r.read_f32("count");
    ADD_FAILURE() << "I64 read as float";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("I64"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'count'"), std::string::npos) << e.what();
  }
}

TEST_F(SafetensorsTest, ShapeMismatchAndMissingTensorNameBoth) {
  std::vector<float> w(192 * 64, 0.5f);
  SafetensorsWriter wr;
  wr.add_f32("blocks.0.attn.qkv.weight", {192, 64}, w.data());
  const std::string path = file("model.safetensors");
  wr.write(path);
  SafetensorsReader r(path);
  std::vector<float> dst(192 * 65);
  try {
    r.read_f32("blocks.0.attn.qkv.weight", {192, 65}, dst.data());
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.safetensors: tensor 'blocks.0.attn.qkv.weight' has "
                                         "shape [192, 64], expected [192, 65]"),
              std::string::npos)
        << e.what();
  }
  try {
    r.info("blocks.1.attn.qkv.weight");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'blocks.1.attn.qkv.weight'"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("model.safetensors"), std::string::npos) << e.what();
  }
}

TEST_F(SafetensorsTest, WriterRejectsDuplicatesAndNegativeDims) {
  float v[2] = {1, 2};
  SafetensorsWriter wr;
  wr.add_f32("a", {2}, v);
  EXPECT_THROW(wr.add_f32("a", {2}, v), Error);
  EXPECT_THROW(wr.add_f32("b", {-2}, v), Error);
  EXPECT_THROW(wr.add_f32("__metadata__", {2}, v), Error);
}

TEST_F(SafetensorsTest, FileLevelErrors) {
  expect_read_error(file("missing.safetensors"), {"cannot open", "No such file"});
  fs::create_directories(dir_ / "adir.safetensors");
  expect_read_error(file("adir.safetensors"), {"not a regular file"});

  write_bytes(file("short.safetensors"), "abc");
  expect_read_error(file("short.safetensors"), {"3 bytes", "shorter than"});
  write_bytes(file("zero.safetensors"), "");
  expect_read_error(file("zero.safetensors"), {"0 bytes"});

  write_bytes(file("biglen.safetensors"), u64le(1000) + "{}");
  expect_read_error(file("biglen.safetensors"), {"header length 1000", "exceeds the 2 bytes"});
  write_bytes(file("absurd.safetensors"), u64le(200'000'000) + "{}");
  expect_read_error(file("absurd.safetensors"), {"header length 200000000", "limit"});
  write_bytes(file("huge.safetensors"), u64le(~0ull) + "{}");
  expect_read_error(file("huge.safetensors"), {"header length 18446744073709551615"});
}

TEST_F(SafetensorsTest, HeaderJsonErrors) {
  write_bytes(file("badjson.safetensors"), st_bytes("{\"x\": [1, 2", ""));
  expect_read_error(file("badjson.safetensors"), {"not valid JSON"});
  write_bytes(file("array.safetensors"), st_bytes("[1, 2, 3]", ""));
  expect_read_error(file("array.safetensors"), {"must be a JSON object", "array"});
  write_bytes(file("entry.safetensors"), st_bytes(R"({"x": 3})", ""));
  expect_read_error(file("entry.safetensors"), {"'x'", "expected an object"});
  write_bytes(file("dup.safetensors"),
              st_bytes(R"({"x":{"dtype":"F32","shape":[],"data_offsets":[0,4]},)"
                       R"("x":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})",
                       raw<float>({1.f})));
  expect_read_error(file("dup.safetensors"), {"'x'", "more than once"});
  // Metadata errors.
  write_bytes(file("meta1.safetensors"), st_bytes(R"({"__metadata__":{"step":3}})", ""));
  expect_read_error(file("meta1.safetensors"), {"__metadata__", "'step'", "must be a string"});
  write_bytes(file("meta2.safetensors"), st_bytes(R"({"__metadata__":["a"]})", ""));
  expect_read_error(file("meta2.safetensors"), {"__metadata__", "object of strings"});
}

TEST_F(SafetensorsTest, EntryFieldErrors) {
  struct Case {
    const char* file;
    std::string entry;
    std::vector<std::string> parts;  // substrings the message must contain
  };
  const std::vector<Case> cases = {
      {"nodtype.safetensors",
       R"({"shape":[2],"data_offsets":[0,8]})",
       {"'x'", "missing \"dtype\""}},
      {"noshape.safetensors",
       R"({"dtype":"F32","data_offsets":[0,8]})",
       {"'x'", "missing \"shape\""}},
      {"nooff.safetensors", R"({"dtype":"F32","shape":[2]})", {"'x'", "missing \"data_offsets\""}},
      {"dtypeint.safetensors",
       R"({"dtype":5,"shape":[2],"data_offsets":[0,8]})",
       {"'x'", "dtype must be a string"}},
      {"unkdtype.safetensors",
       R"({"dtype":"F31","shape":[2],"data_offsets":[0,8]})",
       {"'x'", "unknown dtype 'F31'"}},
      {"shapestr.safetensors",
       R"({"dtype":"F32","shape":"2","data_offsets":[0,8]})",
       {"'x'", "shape must be an array"}},
      {"shapefloat.safetensors",
       R"({"dtype":"F32","shape":[2.0],"data_offsets":[0,8]})",
       {"'x'", "must be an integer"}},
      {"negdim.safetensors",
       R"({"dtype":"F32","shape":[-2],"data_offsets":[0,8]})",
       {"'x'", "non-negative", "-2"}},
      {"off3.safetensors",
       R"({"dtype":"F32","shape":[2],"data_offsets":[0,8,9]})",
       {"'x'", "[begin, end]"}},
      {"offobj.safetensors",
       R"({"dtype":"F32","shape":[2],"data_offsets":{"a":1}})",
       {"'x'", "[begin, end]"}},
      {"offneg.safetensors",
       R"({"dtype":"F32","shape":[2],"data_offsets":[-8,0]})",
       {"'x'", "non-negative"}},
      {"offstr.safetensors",
       R"({"dtype":"F32","shape":[2],"data_offsets":["0",8]})",
       {"'x'", "must be an integer"}},
      {"backwards.safetensors",
       R"({"dtype":"F32","shape":[0],"data_offsets":[8,0]})",
       {"'x'", "begin 8 > end 0"}},
      {"size.safetensors",
       R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})",
       {"'x'", "span 8 bytes", "F32 with shape [3] needs 12 bytes"}},
      {"size16.safetensors",
       R"({"dtype":"BF16","shape":[2],"data_offsets":[0,8]})",
       {"'x'", "needs 4 bytes"}},
      {"overflow.safetensors",
       R"({"dtype":"F32","shape":[4611686018427387904, 4],"data_offsets":[0,8]})",
       {"'x'", "too large"}},
      {"range.safetensors",
       R"({"dtype":"F32","shape":[4],"data_offsets":[0,16]})",
       {"'x'", "truncated", "ends at byte 16", "only 8 bytes"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.file);
    write_bytes(file(c.file), one_tensor(c.entry));
    expect_read_error(file(c.file), c.parts);
  }
}

TEST_F(SafetensorsTest, LayoutErrors) {
  const std::string two = raw<float>({1.f, 2.f, 3.f, 4.f});
  write_bytes(file("overlap.safetensors"),
              st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                       two));
  expect_read_error(file("overlap.safetensors"), {"'b'", "overlaps tensor 'a'"});
  write_bytes(file("same.safetensors"),
              st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                       raw<float>({1.f, 2.f})));
  expect_read_error(file("same.safetensors"), {"overlaps"});
  write_bytes(file("gap.safetensors"),
              st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                       two));
  expect_read_error(file("gap.safetensors"), {"gap", "[4, 8)", "'b'"});
  write_bytes(file("lead.safetensors"),
              one_tensor(R"({"dtype":"F32","shape":[1],"data_offsets":[4,8]})"));
  expect_read_error(file("lead.safetensors"), {"gap", "[0, 4)"});
  write_bytes(file("trailing.safetensors"),
              one_tensor(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})"));
  expect_read_error(file("trailing.safetensors"), {"8 bytes", "cover only 4"});
  // A valid file cut short inside the data section.
  std::vector<float> v(100, 1.f);
  SafetensorsWriter wr;
  wr.add_f32("w", {10, 10}, v.data());
  wr.write(file("full.safetensors"));
  std::string bytes = read_bytes(file("full.safetensors"));
  write_bytes(file("cut.safetensors"), bytes.substr(0, bytes.size() - 3));
  expect_read_error(file("cut.safetensors"), {"truncated", "'w'", "ends at byte 400"});
  // ...and inside the header.
  write_bytes(file("cuthdr.safetensors"), bytes.substr(0, 20));
  expect_read_error(file("cuthdr.safetensors"), {"header length"});
}

// Every prefix and many random corruptions of a valid file either parse or throw Error.
TEST_F(SafetensorsTest, CorruptionNeverCrashes) {
  std::vector<float> v(24, 2.f);
  SafetensorsWriter wr;
  wr.set_metadata("k", "v");
  wr.add_f32("a", {2, 3}, v.data());
  wr.add_f32("b", {18}, v.data());
  wr.write(file("good.safetensors"));
  const std::string good = read_bytes(file("good.safetensors"));
  const std::string path = file("bad.safetensors");
  auto try_read = [&](const std::string& bytes) {
    write_bytes(path, bytes);
    try {
      SafetensorsReader r(path);
      for (const auto& n : r.names()) (void)r.read_f32(n);
    } catch (const Error&) {
    }
  };
  for (size_t n = 0; n < good.size(); ++n) try_read(good.substr(0, n));
  std::mt19937 rng(1);
  for (int trial = 0; trial < 2000; ++trial) {
    std::string bytes = good;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int f = 0; f < flips; ++f) {
      bytes[rng() % bytes.size()] = static_cast<char>(rng() % 256);
    }
    try_read(bytes);
  }
}

TEST_F(SafetensorsTest, AtomicWriteReplacesFile) {
  const std::string path = file("state.bin");
  write_file_atomic(path, "old contents");
  EXPECT_EQ(read_bytes(path), "old contents");
  write_file_atomic(path, std::string("new\0contents", 12));
  EXPECT_EQ(read_bytes(path), std::string("new\0contents", 12));
  EXPECT_TRUE(tmp_leftovers(dir_).empty());
}

TEST_F(SafetensorsTest, AtomicWriteFailureKeepsOldFile) {
  // Target is a directory: the rename fails; the temp file must be cleaned up.
  fs::create_directories(dir_ / "model.safetensors" / "sub");
  try {
    write_file_atomic(file("model.safetensors"), "data");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.safetensors"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("rename"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(fs::is_directory(dir_ / "model.safetensors" / "sub"));
  EXPECT_TRUE(tmp_leftovers(dir_).empty());

  // Target directory does not exist.
  try {
    write_file_atomic(file("nodir/x.safetensors"), "data");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nodir/x.safetensors"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("No such file"), std::string::npos) << e.what();
  }

  // The write itself fails part-way (file size limit; works as root too): old file intact.
  const std::string path = file("keep.safetensors");
  SafetensorsWriter small;
  float one = 1.f;
  small.add_f32("x", {}, &one);
  small.write(path);
  const std::string old = read_bytes(path);
  std::vector<float> big(1 << 16, 3.f);
  SafetensorsWriter wr;
  wr.add_f32("big", {1 << 16}, big.data());
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto prev = signal(SIGXFSZ, SIG_IGN);
  rlimit lim = saved;
  lim.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
  std::string msg;
  try {
    wr.write(path);
  } catch (const Error& e) {
    msg = e.what();
  }
  setrlimit(RLIMIT_FSIZE, &saved);
  signal(SIGXFSZ, prev);
  EXPECT_NE(msg.find("keep.safetensors"), std::string::npos) << msg;
  EXPECT_NE(msg.find("write failed"), std::string::npos) << msg;
  EXPECT_NE(msg.find(std::strerror(EFBIG)), std::string::npos) << msg;
  EXPECT_EQ(read_bytes(path), old);
  EXPECT_TRUE(tmp_leftovers(dir_).empty());
  EXPECT_EQ(SafetensorsReader(path).read_f32("x"), std::vector<float>{1.f});
}

// (An unwritable-directory case is not tested: CI runs as root, which ignores directory
// permissions; the failed-part-way and missing-directory cases above cover the same promise.)
