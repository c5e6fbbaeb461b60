// safetensors reader/writer (format: docs/checkpoints.md). The reader trusts nothing in the file:
// every header field is type-checked, every tensor's byte range must match its dtype and shape,
// and the ranges must tile the data section exactly (no overlaps, no holes, no trailing bytes),
// as the reference implementation requires. The writer produces what the reference writes for
// float32 tensors: tensors in sorted-name order, contiguous, header padded with spaces to a
// multiple of 8 bytes, and replaces the target file atomically.
#include "io/safetensors.h"

#include <fcntl.h>
#include <fmt/ranges.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>

#include "core/bf16.h"
#include "core/check.h"

namespace seqvit::io {

// The data section is little-endian and copied with memcpy; a big-endian host would need swaps.
static_assert(std::endian::native == std::endian::little,
              "safetensors I/O assumes a little-endian host");

namespace {

using json = nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the reference rejects larger headers too

// Bytes per element of every dtype the reference format defines (sub-byte types excluded).
int dtype_size(const std::string& dtype) {
  static const std::map<std::string, int> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4}, {"I64", 8}, {"U64", 8},     {"F64", 8}};
  auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

std::string errno_str(int err) { return std::strerror(err); }

// IEEE binary16 -> binary32, exact (every half is representable as a float).
float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (mant == 0) {
      u = sign;
    } else {  // subnormal: mant * 2^-24
      const float f = std::ldexp(static_cast<float>(mant), -24);
      return sign ? -f : f;
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (mant << 13);  // inf / NaN (payload kept)
  } else {
    u = sign | ((exp + 112u) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Reads exactly n bytes at the current position; false on EOF before n bytes (errno = 0).
bool read_exact(int fd, char* dst, uint64_t n) {
  while (n > 0) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, 1u << 30));
    const ssize_t r = ::read(fd, dst, chunk);
    if (r < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (r == 0) {
      errno = 0;
      return false;
    }
    dst += r;
    n -= static_cast<uint64_t>(r);
  }
  return true;
}

bool write_all(int fd, const char* src, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, src, std::min<size_t>(n, 1u << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    src += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// Parses a JSON integer that must be >= 0; `what` names the field for the error message.
uint64_t get_uint(const std::string& path, const std::string& name, const json& v,
                  const char* what) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer()) {
    fail("{}: tensor '{}': {} must be non-negative, got {}", path, name, what, v.get<int64_t>());
  }
  fail("{}: tensor '{}': {} must be an integer, got {}", path, name, what, v.dump());
}

TensorInfo parse_entry(const std::string& path, const std::string& name, const json& e) {
  if (!e.is_object()) {
    fail("{}: tensor '{}': expected an object with dtype, shape and data_offsets, got {}", path,
         name, e.type_name());
  }
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!e.contains(key)) fail("{}: tensor '{}': missing \"{}\"", path, name, key);
  }
  TensorInfo t;
  const json& dtype = e["dtype"];
  if (!dtype.is_string()) {
    fail("{}: tensor '{}': dtype must be a string, got {}", path, name, dtype.dump());
  }
  t.dtype = dtype.get<std::string>();
  if (dtype_size(t.dtype) == 0) {
    fail("{}: tensor '{}': unknown dtype '{}' (known: BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, "
         "U16, F16, BF16, I32, U32, F32, I64, U64, F64)",
         path, name, t.dtype);
  }
  const json& shape = e["shape"];
  if (!shape.is_array()) {
    fail("{}: tensor '{}': shape must be an array, got {}", path, name, shape.dump());
  }
  for (const json& d : shape) {
    const uint64_t dim = get_uint(path, name, d, "every shape dimension");
    if (dim > static_cast<uint64_t>(INT64_MAX)) {
      fail("{}: tensor '{}': dimension {} is too large", path, name, dim);
    }
    t.shape.push_back(static_cast<int64_t>(dim));
  }
  const json& off = e["data_offsets"];
  if (!off.is_array() || off.size() != 2) {
    fail("{}: tensor '{}': data_offsets must be an array [begin, end], got {}", path, name,
         off.dump());
  }
  t.begin = get_uint(path, name, off[0], "data_offsets begin");
  t.end = get_uint(path, name, off[1], "data_offsets end");
  if (t.begin > t.end) {
    fail("{}: tensor '{}': data_offsets begin {} > end {}", path, name, t.begin, t.end);
  }
  // Expected byte count with overflow checks: a hostile shape must not wrap around to a match.
  uint64_t bytes = static_cast<uint64_t>(dtype_size(t.dtype));
  for (int64_t d : t.shape) {
    if (__builtin_mul_overflow(bytes, static_cast<uint64_t>(d), &bytes)) {
      fail("{}: tensor '{}': shape {} is too large", path, name, shape_str(t.shape));
    }
  }
  if (t.end - t.begin != bytes) {
    fail("{}: tensor '{}': data_offsets [{}, {}] span {} bytes, but dtype {} with shape {} "
         "needs {} bytes",
         path, name, t.begin, t.end, t.end - t.begin, t.dtype, shape_str(t.shape), bytes);
  }
  return t;
}

// Creates "<path>.tmp.<pid>", lets `fill` write to it, fsyncs and renames it over `path`. On any
// failure the temp file is removed and the old file is left untouched.
void write_atomic_with(const std::string& path, const std::function<bool(int fd)>& fill) {
  const std::string tmp = fmt::format("{}.tmp.{}", path, ::getpid());
  Fd f;
  f.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (f.fd < 0) fail("{}: cannot create temporary file '{}': {}", path, tmp, errno_str(errno));
  auto abandon = [&](const char* step) {
    const int err = errno;
    if (f.fd >= 0) ::close(f.fd);
    f.fd = -1;
    ::unlink(tmp.c_str());
    fail("{}: {} failed (temporary file '{}'): {}", path, step, tmp, errno_str(err));
  };
  if (!fill(f.fd)) abandon("write");
  if (::fsync(f.fd) != 0) abandon("fsync");
  const int fd = f.fd;
  f.fd = -1;
  if (::close(fd) != 0) abandon("close");
  if (::rename(tmp.c_str(), path.c_str()) != 0) abandon("rename");
  // Make the rename itself durable; failure here does not undo a completed replacement.
  const auto slash = path.find_last_of('/');
  const std::string dir =
      slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  Fd d;
  d.fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d.fd >= 0) ::fsync(d.fd);
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SafetensorsReader::SafetensorsReader(const std::string& path) : path_(path) {
  Fd f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) fail("{}: cannot open safetensors file: {}", path, errno_str(errno));
  struct stat st {};
  if (::fstat(f.fd, &st) != 0) fail("{}: cannot stat: {}", path, errno_str(errno));
  if (!S_ISREG(st.st_mode)) fail("{}: not a regular file", path);
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    fail("{}: file is {} bytes, shorter than the 8-byte safetensors header length", path,
         file_size);
  }
  auto read_or_fail = [&](char* dst, uint64_t n, const char* what) {
    if (!read_exact(f.fd, dst, n)) {
      fail("{}: cannot read {}: {}", path, what,
           errno ? errno_str(errno) : "unexpected end of file");
    }
  };
  unsigned char len_bytes[8];
  read_or_fail(reinterpret_cast<char*>(len_bytes), 8, "header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > kMaxHeaderBytes) {
    fail("{}: header length {} exceeds the {} byte limit (not a safetensors file?)", path,
         header_len, kMaxHeaderBytes);
  }
  if (header_len > file_size - 8) {
    fail("{}: header length {} exceeds the {} bytes left in the file (truncated or not a "
         "safetensors file)",
         path, header_len, file_size - 8);
  }
  std::string header(header_len, '\0');
  read_or_fail(header.data(), header_len, "header");

  // Parse, rejecting duplicate top-level keys (which entry would win is ambiguous).
  std::set<std::string> seen;
  std::string duplicate;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::key && depth == 1 && parsed.is_string()) {
      if (!seen.insert(parsed.get<std::string>()).second && duplicate.empty())
        duplicate = parsed.get<std::string>();
    }
    return true;
  };
  json j;
  try {
    j = json::parse(header, cb);
  } catch (const json::exception& e) {
    fail("{}: header is not valid JSON: {}", path, e.what());
  }
  if (!j.is_object()) fail("{}: header must be a JSON object, got {}", path, j.type_name());
  if (!duplicate.empty()) fail("{}: header lists '{}' more than once", path, duplicate);

  for (const auto& [name, e] : j.items()) {
    if (name == "__metadata__") {
      if (!e.is_object()) {
        fail("{}: __metadata__ must be an object of strings, got {}", path, e.type_name());
      }
      for (const auto& [key, value] : e.items()) {
        if (!value.is_string()) {
          fail("{}: __metadata__ value for key '{}' must be a string, got {}", path, key,
               value.dump());
        }
        metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    tensors_[name] = parse_entry(path, name, e);
  }

  // The byte ranges must tile [0, data_size) exactly: sort by (begin, end) and walk.
  const uint64_t data_size = file_size - 8 - header_len;
  std::vector<std::pair<const std::string*, const TensorInfo*>> order;
  for (const auto& [name, t] : tensors_) order.emplace_back(&name, &t);
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return std::tie(a.second->begin, a.second->end) < std::tie(b.second->begin, b.second->end);
  });
  uint64_t covered = 0;
  const std::string* prev = nullptr;
  for (const auto& [name, t] : order) {
    if (t->begin < covered) {
      fail("{}: tensor '{}' (bytes [{}, {})) overlaps tensor '{}' (which ends at byte {})", path,
           *name, t->begin, t->end, *prev, covered);
    }
    if (t->begin > covered) {
      fail("{}: gap in the data section: bytes [{}, {}) before tensor '{}' belong to no tensor",
           path, covered, t->begin, *name);
    }
    covered = t->end;
    prev = name;
  }
  if (covered > data_size) {
    fail("{}: data section is truncated: tensor '{}' ends at byte {}, but the data section has "
         "only {} bytes",
         path, *prev, covered, data_size);
  }
  if (covered < data_size) {
    fail("{}: data section has {} bytes but the tensors cover only {} (trailing bytes belong "
         "to no tensor)",
         path, data_size, covered);
  }
  data_.resize(data_size);
  read_or_fail(data_.data(), data_size, "data section");
}

std::vector<std::string> SafetensorsReader::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& kv : tensors_) out.push_back(kv.first);
  return out;
}

bool SafetensorsReader::has(const std::string& name) const { return tensors_.count(name) != 0; }

const TensorInfo& SafetensorsReader::info(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    fail("{}: no tensor named '{}' ({} tensors in the file)", path_, name, tensors_.size());
  }
  return it->second;
}

void SafetensorsReader::read_f32(const std::string& name,
                                 const std::vector<int64_t>& expected_shape, float* dst) const {
  const TensorInfo& t = info(name);
  if (t.shape != expected_shape) {
    fail("{}: tensor '{}' has shape {}, expected {}", path_, name, shape_str(t.shape),
         shape_str(expected_shape));
  }
  const char* src = data_.data() + t.begin;
  const int64_t n = t.numel();
  if (t.dtype == "F32") {
    if (n > 0) std::memcpy(dst, src, static_cast<size_t>(n) * 4);
  } else if (t.dtype == "F64") {
    for (int64_t i = 0; i < n; ++i) {
      double v;
      std::memcpy(&v, src + 8 * i, 8);
      dst[i] = static_cast<float>(v);
    }
  } else if (t.dtype == "BF16") {
    for (int64_t i = 0; i < n; ++i) {
      bf16 h;
      std::memcpy(&h.bits, src + 2 * i, 2);
      dst[i] = to_float(h);
    }
  } else if (t.dtype == "F16") {
    for (int64_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      dst[i] = half_to_float(h);
    }
  } else {
    fail("{}: tensor '{}' has dtype {}, which cannot be read as float32 (F32, F64, BF16 or "
         "F16 expected)",
         path_, name, t.dtype);
  }
}

std::vector<float> SafetensorsReader::read_f32(const std::string& name) const {
  const TensorInfo& t = info(name);
  std::vector<float> out(static_cast<size_t>(t.numel()));
  read_f32(name, t.shape, out.data());
  return out;
}

namespace {
template <typename T>
std::vector<T> read_exact(const SafetensorsReader& r, const std::vector<char>& data,
                          const std::string& name, const char* dtype) {
  const TensorInfo& t = r.info(name);
  if (t.dtype != dtype) {
    fail("{}: tensor '{}' has dtype {}, expected {}", r.path(), name, t.dtype, dtype);
  }
  std::vector<T> out(static_cast<size_t>(t.numel()));
  if (!out.empty()) std::memcpy(out.data(), data.data() + t.begin, out.size() * sizeof(T));
  return out;
}
}  // namespace

std::vector<double> SafetensorsReader::read_f64(const std::string& name) const {
  return read_exact<double>(*this, data_, name, "F64");
}

std::vector<int64_t> SafetensorsReader::read_i64(const std::string& name) const {
  return read_exact<int64_t>(*this, data_, name, "I64");
}

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
  metadata_[key] = value;
}

void SafetensorsWriter::add(const std::string& name, const char* dtype,
                            const std::vector<int64_t>& shape, const void* data,
                            size_t elem_size) {
  if (name == "__metadata__") {
    fail("safetensors: '__metadata__' is reserved and cannot name a tensor");
  }
  if (tensors_.count(name)) fail("safetensors: tensor '{}' added twice", name);
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) {
      fail("safetensors: tensor '{}' has a negative dimension in shape {}", name, shape_str(shape));
    }
    n *= d;
  }
  Entry e;
  e.dtype = dtype;
  e.shape = shape;
  if (n > 0) {
    const char* p = static_cast<const char*>(data);
    e.bytes.assign(p, p + static_cast<size_t>(n) * elem_size);
  }
  tensors_.emplace(name, std::move(e));
}

void SafetensorsWriter::add_f32(const std::string& name, const std::vector<int64_t>& shape,
                                const float* data) {
  add(name, "F32", shape, data, sizeof(float));
}

void SafetensorsWriter::add_f64(const std::string& name, const std::vector<int64_t>& shape,
                                const double* data) {
  add(name, "F64", shape, data, sizeof(double));
}

void SafetensorsWriter::add_i64(const std::string& name, const std::vector<int64_t>& shape,
                                const int64_t* data) {
  add(name, "I64", shape, data, sizeof(int64_t));
}

void SafetensorsWriter::write(const std::string& path) const {
  // Key order as the reference writes it: "__metadata__" first, then the tensors in layout order,
  // each as {dtype, shape, data_offsets}. Only the order of metadata keys can differ (the
  // reference's is a hash-map order), so for F32 files the bytes match up to that.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (const auto& [name, e] :
       tensors_) {  // std::map: sorted-name order, as the reference lays out
    const uint64_t bytes = e.bytes.size();
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();
    entry["dtype"] = e.dtype;
    entry["shape"] = e.shape;
    entry["data_offsets"] = {offset, offset + bytes};
    header[name] = std::move(entry);
    offset += bytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {  // e.g. a metadata value that is not valid UTF-8
    fail("{}: cannot encode the safetensors header: {}", path, e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // data section starts 8-byte aligned
  char len[8];
  for (int i = 0; i < 8; ++i)
    len[i] = static_cast<char>((static_cast<uint64_t>(text.size()) >> (8 * i)) & 0xff);
  write_atomic_with(path, [&](int fd) {
    if (!write_all(fd, len, 8) || !write_all(fd, text.data(), text.size())) return false;
    for (const auto& kv : tensors_) {
      const auto& d = kv.second.bytes;
      if (!write_all(fd, d.data(), d.size())) return false;
    }
    return true;
  });
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  write_atomic_with(path, [&](int fd) { return write_all(fd, bytes.data(), bytes.size()); });
}

}  // namespace seqvit::io
