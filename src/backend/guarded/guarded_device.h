// The guarded CPU backend, for tests (docs/architecture.md "The guarded backend"): the CPU
// kernels over device memory the host cannot touch. Every allocation is two mappings of the same
// size: the DEVICE addresses handed out, reserved with PROT_NONE (any host access faults), and a
// read-write shadow where the kernels work. Each op translates every pointer it is given from
// the device range into the shadow, and a pointer that is not inside a device allocation (a host
// buffer, or past an allocation's end) is an error naming the op. So a layer above the backend
// that reads or writes device memory itself crashes here, as it would on a GPU, and one that
// hands a host buffer to an op fails with a message.
//
// Ops run on a worker thread of their own, in order, after the call that enqueued them has
// returned: the host sees a result only after synchronize() (which copy_to_host and every
// collective call), so a read of a value before the op that writes it has run, or memory
// released while queued ops still use it, shows up here as a wrong result rather than on a GPU.
// An op's error (such as a host pointer) is raised by the next synchronize(), and the ops queued
// after it are dropped.
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "backend/cpu/cpu_device.h"

namespace seqvit::backend {

class GuardedDevice : public CpuDevice {
 public:
  GuardedDevice();
  ~GuardedDevice() override;
  std::string name() const override { return "guarded"; }
  bool host_accessible() const override { return false; }

  void* allocate(size_t bytes) override;
  void deallocate(void* p) override;
  std::unique_ptr<ParameterStore> parameter_store(int64_t floats) override;
  bool owns(const void* p, size_t bytes) const override;
  void synchronize() override;
  // Allocations live now (tests check that owners free what they allocate).
  size_t live_allocations() const;

 protected:
  void* translate(const void* p, size_t bytes, const char* op) const override;
  void enqueue(std::function<void()> op) override;

 private:
  struct Region {
    size_t bytes = 0;      // mapped (page multiple)
    char* shadow = nullptr;
  };
  friend class GuardedParameterStore;
  char* map_region(size_t bytes);  // returns the device address
  void unmap_region(void* device);
  const Region* find(uintptr_t a, uintptr_t* base) const;

  mutable std::mutex mu_;
  std::map<uintptr_t, Region> regions_;  // by device base address

  // the stream: ops queued, the worker running them, the first error
  void work();
  void drain();  // waits until the queue has run
  std::mutex qmu_;
  std::condition_variable qcv_, idle_cv_;
  std::deque<std::function<void()>> queue_;
  bool busy_ = false, stop_ = false;
  std::exception_ptr error_;
  std::thread worker_;
};

}  // namespace seqvit::backend
