// safetensors files: 8-byte little-endian header length, a JSON header mapping tensor names to
// {dtype, shape, data_offsets}, optional "__metadata__" (string -> string), then raw
// little-endian data. This is seqvit's checkpoint and interchange format (docs/checkpoints.md).
// Every problem with a file (missing, truncated, bad JSON, offsets out of range or overlapping,
// unknown dtype, shape/size mismatch) throws seqvit::Error naming the file and the tensor.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace seqvit::io {

struct TensorInfo {
  std::string dtype;             // "F32", "BF16", "F16", "F64", "I64", "I32", ...
  std::vector<int64_t> shape;    // [] for a scalar
  uint64_t begin = 0, end = 0;   // byte offsets into the data section
  int64_t numel() const;
};

class SafetensorsReader {
 public:
  // Reads and validates the whole file (header and data).
  explicit SafetensorsReader(const std::string& path);

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  std::vector<std::string> names() const;  // sorted
  bool has(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;  // throws if absent

  // Copies tensor `name` into dst as float32, converting from F32/F64/BF16/F16. Throws if the
  // tensor is absent or its shape differs from `expected_shape` (message shows both).
  void read_f32(const std::string& name, const std::vector<int64_t>& expected_shape,
                float* dst) const;
  // Same without a shape check; returns the values.
  std::vector<float> read_f32(const std::string& name) const;
  // Tensor `name` as stored, for F64 and I64 tensors only (no conversion: exact doubles, e.g.
  // regridding weights, and indices). Throws naming the file if absent or of another dtype.
  std::vector<double> read_f64(const std::string& name) const;
  std::vector<int64_t> read_i64(const std::string& name) const;

 private:
  std::string path_;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, TensorInfo> tensors_;
  std::vector<char> data_;  // the data section
};

class SafetensorsWriter {
 public:
  void set_metadata(const std::string& key, const std::string& value);
  // Adds a float32 tensor; the data is copied. Names must be unique.
  void add_f32(const std::string& name, const std::vector<int64_t>& shape, const float* data);
  // The same for float64 and int64 tensors (stored as F64 / I64).
  void add_f64(const std::string& name, const std::vector<int64_t>& shape, const double* data);
  void add_i64(const std::string& name, const std::vector<int64_t>& shape, const int64_t* data);
  // Writes atomically: to "<path>.tmp.<pid>" in the same directory, fsync, then rename.
  void write(const std::string& path) const;

 private:
  std::map<std::string, std::string> metadata_;
  struct Entry {
    std::string dtype;  // "F32", "F64" or "I64"
    std::vector<int64_t> shape;
    std::vector<char> bytes;  // little-endian data
  };
  void add(const std::string& name, const char* dtype, const std::vector<int64_t>& shape,
           const void* data, size_t elem_size);
  std::map<std::string, Entry> tensors_;
};

// Writes `bytes` to `path` atomically (temp file in the same directory + fsync + rename).
// Throws seqvit::Error naming the path and errno text on failure; the old file stays intact.
void write_file_atomic(const std::string& path, const std::string& bytes);

}  // namespace seqvit::io
