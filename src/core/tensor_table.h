// A table of named tensors carved out of one flat float allocation (llm.c style): parameters,
// gradients and optimizer moments all share one table, so each is a single buffer, sharding is
// arithmetic on offsets, and a checkpoint is one pass over the entries.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace seqvit {

struct TensorEntry {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;  // in floats, 16-float (64-byte) aligned
  int64_t numel = 0;
};

class TensorTable {
 public:
  // Appends a tensor; returns its index. Names must be unique.
  int add(const std::string& name, std::vector<int64_t> shape);
  int64_t total() const { return total_; }  // floats, including alignment padding
  int64_t count() const;                    // floats, without padding
  const std::vector<TensorEntry>& entries() const { return entries_; }
  const TensorEntry& operator[](int i) const { return entries_[i]; }
  int find(const std::string& name) const;  // -1 when absent
  const TensorEntry& get(const std::string& name) const;  // throws seqvit::Error

 private:
  std::vector<TensorEntry> entries_;
  std::unordered_map<std::string, int> index_;
  int64_t total_ = 0;
};

std::string shape_str(const std::vector<int64_t>& shape);  // "[2, 3]"
int64_t shape_numel(const std::vector<int64_t>& shape);

// 64-byte aligned, zero-initialised array; the unit of planned memory.
template <typename T>
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(int64_t n) { resize(n); }
  void resize(int64_t n) {
    n_ = n;
    size_t bytes = ((static_cast<size_t>(n) * sizeof(T) + 63) / 64) * 64;
    ptr_.reset(bytes ? static_cast<T*>(std::aligned_alloc(64, bytes)) : nullptr);
    if (bytes && !ptr_) throw std::bad_alloc();
    for (int64_t i = 0; i < n; ++i) ptr_.get()[i] = T{};
  }
  T* data() { return ptr_.get(); }
  const T* data() const { return ptr_.get(); }
  int64_t size() const { return n_; }
  size_t bytes() const { return static_cast<size_t>(n_) * sizeof(T); }
  T& operator[](int64_t i) { return ptr_.get()[i]; }
  const T& operator[](int64_t i) const { return ptr_.get()[i]; }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> ptr_;
  int64_t n_ = 0;
};

}  // namespace seqvit
