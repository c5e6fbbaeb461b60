#include "backend/guarded/guarded_device.h"

#include <sys/mman.h>

#include <new>
#include <utility>

#include "core/check.h"
#include "core/page_buffer.h"

namespace seqvit::backend {

// Parameters and gradients of the guarded device: a region whose shadow pages are handed back
// with madvise, as the CPU's parameter store does with its own mapping.
class GuardedParameterStore : public ParameterStore {
 public:
  GuardedParameterStore(GuardedDevice& dev, int64_t n)
      : dev_(dev), n_(n), base_(reinterpret_cast<float*>(dev.map_region(
                              static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(float)))) {
    uintptr_t b = 0;
    shadow_ = reinterpret_cast<float*>(dev_.find(reinterpret_cast<uintptr_t>(base_), &b)->shadow);
  }
  ~GuardedParameterStore() override { dev_.deallocate(base_); }
  float* data() override { return base_; }
  int64_t size() const override { return n_; }
  void release(int64_t first, int64_t count) override {
    dev_.synchronize();  // ordered after the ops that use the range
    release_pages(shadow_, n_, first, count);
  }
  size_t resident_bytes() const override {
    dev_.synchronize();
    return seqvit::resident_bytes(shadow_, n_, scratch_);
  }

 private:
  GuardedDevice& dev_;
  int64_t n_;
  float* base_;
  float* shadow_ = nullptr;
  mutable std::vector<unsigned char> scratch_;
};

GuardedDevice::GuardedDevice() {
  async_ = true;
  worker_ = std::thread([this] { work(); });
}

void GuardedDevice::work() {
  std::unique_lock<std::mutex> lock(qmu_);
  for (;;) {
    qcv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stop_
    auto op = std::move(queue_.front());
    queue_.pop_front();
    busy_ = true;
    lock.unlock();
    std::exception_ptr e;
    try {
      op();
    } catch (...) {
      e = std::current_exception();
    }
    lock.lock();
    busy_ = false;
    if (e && !error_) {
      error_ = e;
      queue_.clear();  // what follows a failed op is not run
    }
    if (queue_.empty()) idle_cv_.notify_all();
  }
}

void GuardedDevice::enqueue(std::function<void()> op) {
  std::lock_guard<std::mutex> lock(qmu_);
  if (error_) return;  // raised by the next synchronize()
  queue_.push_back(std::move(op));
  qcv_.notify_one();
}

void GuardedDevice::drain() {
  std::unique_lock<std::mutex> lock(qmu_);
  idle_cv_.wait(lock, [&] { return queue_.empty() && !busy_; });
}

void GuardedDevice::synchronize() {
  drain();
  std::lock_guard<std::mutex> lock(qmu_);
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

GuardedDevice::~GuardedDevice() {
  {
    std::lock_guard<std::mutex> lock(qmu_);
    stop_ = true;
    qcv_.notify_one();
  }
  worker_.join();  // runs what is queued first
  for (auto& [base, r] : regions_) {
    munmap(reinterpret_cast<void*>(base), r.bytes);
    munmap(r.shadow, r.bytes);
  }
}

char* GuardedDevice::map_region(size_t bytes) {
  const size_t pg = page_bytes();
  const size_t n = (std::max<size_t>(bytes, 1) + pg - 1) / pg * pg;
  void* dev = mmap(nullptr, n, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (dev == MAP_FAILED) throw std::bad_alloc();
  void* shadow = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (shadow == MAP_FAILED) {
    munmap(dev, n);
    throw std::bad_alloc();
  }
  std::lock_guard<std::mutex> lock(mu_);
  regions_[reinterpret_cast<uintptr_t>(dev)] = Region{n, static_cast<char*>(shadow)};
  return static_cast<char*>(dev);
}

void GuardedDevice::unmap_region(void* p) {
  Region r;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = regions_.find(reinterpret_cast<uintptr_t>(p));
    SEQVIT_CHECK(it != regions_.end(),
                 "guarded device: deallocate({}) is not the start of a device allocation", p);
    r = it->second;
    regions_.erase(it);
  }
  munmap(p, r.bytes);
  munmap(r.shadow, r.bytes);
}

void* GuardedDevice::allocate(size_t bytes) { return map_region(bytes); }  // zero-filled
void GuardedDevice::deallocate(void* p) {
  if (!p) return;
  drain();  // no queued op may still use it (an op's error stays for the next synchronize())
  unmap_region(p);
}

std::unique_ptr<ParameterStore> GuardedDevice::parameter_store(int64_t floats) {
  return std::make_unique<GuardedParameterStore>(*this, floats);
}

const GuardedDevice::Region* GuardedDevice::find(uintptr_t a, uintptr_t* base) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = regions_.upper_bound(a);
  if (it == regions_.begin()) return nullptr;
  --it;
  if (a >= it->first + it->second.bytes) return nullptr;
  *base = it->first;
  return &it->second;
}

bool GuardedDevice::owns(const void* p, size_t bytes) const {
  uintptr_t base = 0;
  const auto a = reinterpret_cast<uintptr_t>(p);
  const Region* r = find(a, &base);
  return r && a + bytes <= base + r->bytes;
}

size_t GuardedDevice::live_allocations() const {
  std::lock_guard<std::mutex> lock(mu_);
  return regions_.size();
}

void* GuardedDevice::translate(const void* p, size_t bytes, const char* op) const {
  // An empty range is never dereferenced; it may sit one past an allocation's end.
  if (!p || bytes == 0) return const_cast<void*>(p);
  uintptr_t base = 0;
  const auto a = reinterpret_cast<uintptr_t>(p);
  const Region* r = find(a, &base);
  SEQVIT_CHECK(r, "guarded device: {} was given {}, which is not device memory (a host buffer "
               "passed to a device op)", op, p);
  SEQVIT_CHECK(a + bytes <= base + r->bytes,
               "guarded device: {} reads or writes {} bytes at {}, past the end of its device "
               "allocation of {} bytes at {:#x}", op, bytes, p, r->bytes, base);
  return r->shadow + (a - base);
}

}  // namespace seqvit::backend
