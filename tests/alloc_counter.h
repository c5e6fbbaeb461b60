// "Nothing allocates in the step loop", measured: this header replaces, for the test program
// that includes it, every way of getting memory from the system: malloc, calloc, realloc,
// reallocarray, aligned_alloc, posix_memalign, memalign, valloc, pvalloc, mmap/mmap64 and every
// replaceable operator new / new[] (plain, nothrow, std::align_val_t). Definitions in the
// executable interpose on glibc's for the whole process (libstdc++, oneDNN, libgomp and MPI
// included); they allocate through glibc's __libc_* entry points and the mmap system call.
//
// Between start() and stop() every call is counted, on every thread, by kind and by origin:
//  - inside oneDNN: while one of its GEMMs runs (kernels::gemm_library_calls_in_flight() > 0;
//    dnnl_sgemm builds small descriptor objects on every call);
//  - the OpenMP runtime: called from libgomp (with one thread, libgomp allocates and frees the
//    team of every `#pragma omp parallel` region; with more it reuses the last team);
//  - inside MPI: called from the MPI library (Open MPI's collectives allocate temporary
//    buffers inside the call);
//  - seqvit: everything else. Only these fail the tests; the others are the libraries',
//    bounded, and reported.
// The origin is the shared object of the first frame of the call's stack outside the
// allocator functions (these interposers, libc, libstdc++). The first call of each origin keeps
// its stack for the report (print_first_stack; all of them when SEQVIT_ALLOC_STACKS is set).
//
// Include it in exactly ONE source file of a test program (it defines global functions).
#pragma once

#include <dlfcn.h>
#include <execinfo.h>
#include <malloc.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>

#include "kernels/ops.h"

extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
void* __libc_valloc(size_t);
void* __libc_pvalloc(size_t);
void __libc_free(void*);
}

namespace seqvit_test::alloc {

enum Kind : int {
  kNew,            // operator new / new[] (plain or nothrow)
  kNewAligned,     // operator new / new[] with std::align_val_t
  kMalloc,
  kCalloc,
  kRealloc,        // realloc, reallocarray
  kAlignedAlloc,   // aligned_alloc, memalign, valloc, pvalloc
  kPosixMemalign,
  kMmap,           // mmap, mmap64
  kKinds
};

inline const char* kind_name(int k) {
  static const char* names[kKinds] = {"operator new",   "aligned operator new", "malloc",
                                      "calloc",         "realloc",              "aligned_alloc",
                                      "posix_memalign", "mmap"};
  return names[k];
}

// Where a call came from: the first frame of its stack outside the allocator functions (these
// interposers, libc, libstdc++), by the shared object it is in.
enum Origin : int {
  kSeqvit,   // anything else: seqvit's code (the test program) or another library; fails
  kOneDnn,   // while a oneDNN GEMM runs (gemm_library_calls_in_flight)
  kOpenMp,   // libgomp (e.g. its team of one thread, allocated per parallel region)
  kMpi,      // the MPI library and its components, inside an MPI call
  kOrigins
};

inline const char* origin_name(int o) {
  static const char* names[kOrigins] = {"seqvit", "inside oneDNN gemm calls",
                                        "by the OpenMP runtime (libgomp)", "inside MPI"};
  return names[o];
}

struct Counts {
  long by_kind[kKinds] = {};   // seqvit's (kSeqvit), by kind: these fail the tests
  long by_origin[kOrigins] = {};  // every call, by origin
  long library = 0;            // = by_origin[kOneDnn] (kept for the reports)
  long total() const {  // seqvit's calls
    long t = 0;
    for (long n : by_kind) t += n;
    return t;
  }
  // "3 (malloc 2, mmap 1)", or "0".
  std::string str() const {
    std::string s = std::to_string(total());
    std::string parts;
    for (int k = 0; k < kKinds; ++k)
      if (by_kind[k])
        parts += (parts.empty() ? "" : ", ") + std::string(kind_name(k)) + " " +
                 std::to_string(by_kind[k]);
    return parts.empty() ? s : s + " (" + parts + ")";
  }
  // "144 inside oneDNN gemm calls, 30 by the OpenMP runtime (libgomp)", or "none".
  std::string excluded() const {
    std::string s;
    for (int o = kOneDnn; o < kOrigins; ++o)
      if (by_origin[o])
        s += (s.empty() ? "" : ", ") + std::to_string(by_origin[o]) + " " + origin_name(o);
    return s.empty() ? "none" : s;
  }
};

namespace detail {
inline std::atomic<bool> counting{false};
inline std::atomic<long> by_kind[kKinds];
inline std::atomic<long> by_origin[kOrigins];
constexpr int kDepth = 48;
struct Stack {
  std::atomic<bool> taken{false};
  void* frames[kDepth];
  int depth = 0;
  int kind = -1;
};
inline Stack first[kOrigins];  // the first call of each origin since start()
inline thread_local bool in_hook = false;  // initial-exec TLS of the executable: no allocation

inline bool contains(const char* s, const char* part) {
  return s && __builtin_strstr(s, part) != nullptr;
}

// The origin of a call whose stack (frame 0: the interposer) is `frames`.
inline Origin classify(void* const* frames, int depth) {
  for (int i = 1; i < depth; ++i) {
    Dl_info info;
    if (!dladdr(frames[i], &info) || !info.dli_fname) return kSeqvit;
    const char* f = info.dli_fname;
    if (contains(f, "/libc.so") || contains(f, "/libstdc++.so")) continue;
    if (contains(f, "/libgomp.so")) return kOpenMp;
    if (contains(f, "/libmpi") || contains(f, "/libopen-pal") || contains(f, "/libopen-rte") ||
        contains(f, "/openmpi/") || contains(f, "/libpmix") || contains(f, "/libevent") ||
        contains(f, "/libhwloc"))
      return kMpi;
    return kSeqvit;
  }
  return kSeqvit;
}

__attribute__((always_inline)) inline void count(Kind k) {
  if (!counting.load(std::memory_order_relaxed) || in_hook) return;
  in_hook = true;  // backtrace and dladdr below must not count themselves
  void* frames[kDepth];
  Origin o = kOneDnn;
  int depth = 0;
  if (seqvit::kernels::gemm_library_calls_in_flight() == 0) {
    depth = backtrace(frames, kDepth);  // warmed up by start()
    o = classify(frames, depth);
  }
  by_origin[o].fetch_add(1, std::memory_order_relaxed);
  if (o == kSeqvit) by_kind[k].fetch_add(1, std::memory_order_relaxed);
  bool expected = false;
  if (depth && first[o].taken.compare_exchange_strong(expected, true)) {
    for (int i = 0; i < depth; ++i) first[o].frames[i] = frames[i];
    first[o].depth = depth;
    first[o].kind = k;
  }
  in_hook = false;
}
}  // namespace detail

// Starts counting (from zero) on every thread.
inline void start() {
  void* warm[4];
  backtrace(warm, 4);  // loads the unwinder now, not inside the first counted call
  Dl_info info;
  dladdr(reinterpret_cast<void*>(&start), &info);
  for (auto& n : detail::by_kind) n = 0;
  for (auto& n : detail::by_origin) n = 0;
  for (auto& f : detail::first) f.taken = false;
  detail::counting = true;
}

inline Counts stop() {
  detail::counting = false;
  Counts c;
  for (int k = 0; k < kKinds; ++k) c.by_kind[k] = detail::by_kind[k].load();
  for (int o = 0; o < kOrigins; ++o) c.by_origin[o] = detail::by_origin[o].load();
  c.library = c.by_origin[kOneDnn];
  return c;
}

// The stack of the first call of `origin` since start() to stderr (addresses with their
// objects: `addr2line -f -C -e <program> <offset>` gives the function, file and line), if any.
inline void print_first_stack(const char* what, Origin origin = kSeqvit) {
  const auto& f = detail::first[origin];
  if (!f.taken.load() || f.depth == 0) return;
  std::fprintf(stderr, "first allocation %s (%s) %s:\n", origin_name(origin), kind_name(f.kind),
               what);
  std::fflush(stderr);
  backtrace_symbols_fd(f.frames, f.depth, 2);
}

// After stop(): the stack of seqvit's first call if there was one, and with SEQVIT_ALLOC_STACKS
// set in the environment those of the libraries' first calls too.
inline void report(const Counts& c, const char* what) {
  if (c.total()) print_first_stack(what, kSeqvit);
  if (std::getenv("SEQVIT_ALLOC_STACKS"))
    for (int o = kOneDnn; o < kOrigins; ++o) print_first_stack(what, static_cast<Origin>(o));
}

}  // namespace seqvit_test::alloc

// ---- the interposed functions ------------------------------------------------------------------

extern "C" {
void* malloc(size_t n) noexcept {
  seqvit_test::alloc::detail::count(seqvit_test::alloc::kMalloc);
  return __libc_malloc(n);
}
void* calloc(size_t n, size_t size) noexcept {
  seqvit_test::alloc::detail::count(seqvit_test::alloc::kCalloc);
  return __libc_calloc(n, size);
}
void* realloc(void* p, size_t n) noexcept {
  seqvit_test::alloc::detail::count(seqvit_test::alloc::kRealloc);
  return __libc_realloc(p, n);
}
void* reallocarray(void* p, size_t n, size_t size) noexcept {
  seqvit_test::alloc::detail::count(seqvit_test::alloc::kRealloc);
  size_t bytes;
  if (__builtin_mul_overflow(n, size, &bytes)) {
    errno = ENOMEM;
    return nullptr;
  }
  return __libc_realloc(p, bytes);
}
void* aligned_alloc(size_t align, size_t n) noexcept {
  seqvit_test::alloc::detail::count(seqvit_test::alloc::kAlignedAlloc);
  return __libc_memalign(align, n);
}
void* memalign(size_t align, size_t n) noexcept {
  seqvit_test::alloc::detail::count(seqvit_test::alloc::kAlignedAlloc);
  return __libc_memalign(align, n);
}
void* valloc(size_t n) noexcept {
  seqvit_test::alloc::detail::count(seqvit_test::alloc::kAlignedAlloc);
  return __libc_valloc(n);
}
void* pvalloc(size_t n) noexcept {
  seqvit_test::alloc::detail::count(seqvit_test::alloc::kAlignedAlloc);
  return __libc_pvalloc(n);
}
int posix_memalign(void** out, size_t align, size_t n) noexcept {
  seqvit_test::alloc::detail::count(seqvit_test::alloc::kPosixMemalign);
  if (align < sizeof(void*) || (align & (align - 1)) != 0) return EINVAL;
  void* p = __libc_memalign(align, n);
  if (!p && n) return ENOMEM;
  *out = p;
  return 0;
}
void* mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) noexcept {
  seqvit_test::alloc::detail::count(seqvit_test::alloc::kMmap);
  return reinterpret_cast<void*>(syscall(SYS_mmap, addr, len, prot, flags, fd, off));
}
void* mmap64(void* addr, size_t len, int prot, int flags, int fd, off64_t off) noexcept {
  seqvit_test::alloc::detail::count(seqvit_test::alloc::kMmap);
  return reinterpret_cast<void*>(syscall(SYS_mmap, addr, len, prot, flags, fd, off));
}
}

namespace seqvit_test::alloc::detail {
__attribute__((always_inline)) inline void* new_plain(size_t n) {
  count(kNew);
  return __libc_malloc(n ? n : 1);
}
__attribute__((always_inline)) inline void* new_aligned(size_t n, std::align_val_t a) {
  count(kNewAligned);
  const size_t al = static_cast<size_t>(a);
  return __libc_memalign(al < sizeof(void*) ? sizeof(void*) : al, n ? n : 1);
}
}  // namespace seqvit_test::alloc::detail

void* operator new(size_t n) {
  if (void* p = seqvit_test::alloc::detail::new_plain(n)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) {
  if (void* p = seqvit_test::alloc::detail::new_plain(n)) return p;
  throw std::bad_alloc();
}
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  return seqvit_test::alloc::detail::new_plain(n);
}
void* operator new[](size_t n, const std::nothrow_t&) noexcept {
  return seqvit_test::alloc::detail::new_plain(n);
}
void* operator new(size_t n, std::align_val_t a) {
  if (void* p = seqvit_test::alloc::detail::new_aligned(n, a)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n, std::align_val_t a) {
  if (void* p = seqvit_test::alloc::detail::new_aligned(n, a)) return p;
  throw std::bad_alloc();
}
void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return seqvit_test::alloc::detail::new_aligned(n, a);
}
void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return seqvit_test::alloc::detail::new_aligned(n, a);
}
void operator delete(void* p) noexcept { __libc_free(p); }
void operator delete[](void* p) noexcept { __libc_free(p); }
void operator delete(void* p, size_t) noexcept { __libc_free(p); }
void operator delete[](void* p, size_t) noexcept { __libc_free(p); }
void operator delete(void* p, std::align_val_t) noexcept { __libc_free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { __libc_free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { __libc_free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { __libc_free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { __libc_free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { __libc_free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  __libc_free(p);
}
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  __libc_free(p);
}
