// A zero-initialised float array in its own anonymous mapping (mmap), whose pages can be handed
// back to the OS: what ZeRO-2/3 (train/zero.h) keeps the full-size parameter and gradient
// buffers in, so that only the unit in use is resident. Pages are mapped on first touch; a
// released page reads as zero afterwards (MADV_DONTNEED on a private anonymous mapping).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

namespace seqvit {

inline size_t page_bytes() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }

// Hands back the whole pages inside elements [first, first + count) of the page-aligned
// mapping base[total]: pages shared with elements outside the range are kept (the mapping's
// own tail page counts as inside), so neighbouring data is never lost.
inline void release_pages(float* base, int64_t total, int64_t first, int64_t count) {
  if (!base || count <= 0) return;
  const size_t pg = page_bytes();
  const uintptr_t b0 = reinterpret_cast<uintptr_t>(base);
  uintptr_t a = b0 + static_cast<size_t>(first) * sizeof(float);
  uintptr_t b = b0 + static_cast<size_t>(first + count) * sizeof(float);
  if (first + count == total) b = (b + pg - 1) / pg * pg;
  a = (a + pg - 1) / pg * pg;
  b = b / pg * pg;
  if (a < b) madvise(reinterpret_cast<void*>(a), b - a, MADV_DONTNEED);
}

// Bytes of the page-aligned base[total] now resident (mincore); `scratch` avoids allocating.
inline size_t resident_bytes(const float* base, int64_t total, std::vector<unsigned char>& scratch) {
  if (!base || total <= 0) return 0;
  const size_t pg = page_bytes(), bytes = static_cast<size_t>(total) * sizeof(float);
  scratch.resize((bytes + pg - 1) / pg);
  if (mincore(const_cast<float*>(base), bytes, scratch.data()) != 0) return 0;
  size_t r = 0;
  for (unsigned char c : scratch) r += (c & 1) ? pg : 0;
  return r;
}

class PageBuffer {
 public:
  PageBuffer() = default;
  explicit PageBuffer(int64_t n) : n_(n) {
    map_bytes_ = n > 0 ? static_cast<size_t>(n) * sizeof(float) : 0;
    if (map_bytes_ == 0) return;
    void* p = mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    ptr_ = static_cast<float*>(p);
  }
  ~PageBuffer() {
    if (ptr_) munmap(ptr_, map_bytes_);
  }
  PageBuffer(const PageBuffer&) = delete;
  PageBuffer& operator=(const PageBuffer&) = delete;

  float* data() { return ptr_; }
  const float* data() const { return ptr_; }
  int64_t size() const { return n_; }
  size_t bytes() const { return static_cast<size_t>(n_) * sizeof(float); }

  void release(int64_t first, int64_t count) { release_pages(ptr_, n_, first, count); }
  void release_all() { release(0, n_); }

 private:
  float* ptr_ = nullptr;
  int64_t n_ = 0;
  size_t map_bytes_ = 0;
};

}  // namespace seqvit
