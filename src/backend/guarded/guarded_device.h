// The guarded CPU backend, for tests (docs/architecture.md "The guarded backend"): the CPU
// kernels over device memory the host cannot touch. Every allocation is two mappings of the same
// size: the DEVICE addresses handed out, reserved with PROT_NONE (any host access faults), and a
// read-write shadow where the kernels work. Each op translates every pointer it is given from
// the device range into the shadow, and a pointer that is not inside a device allocation (a host
// buffer, or past an allocation's end) is an error naming the op. So a layer above the backend
// that reads or writes device memory itself crashes here, as it would on a GPU, and one that
// hands a host buffer to an op fails with a message.
#pragma once

#include <map>
#include <mutex>

#include "backend/cpu/cpu_device.h"

namespace seqvit::backend {

class GuardedDevice : public CpuDevice {
 public:
  GuardedDevice() = default;
  ~GuardedDevice() override;
  std::string name() const override { return "guarded"; }
  bool host_accessible() const override { return false; }

  void* allocate(size_t bytes) override;
  void deallocate(void* p) override;
  std::unique_ptr<ParameterStore> parameter_store(int64_t floats) override;
  bool owns(const void* p, size_t bytes) const override;
  // Allocations live now (tests check that owners free what they allocate).
  size_t live_allocations() const;

 protected:
  void* translate(const void* p, size_t bytes, const char* op) const override;

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
};

}  // namespace seqvit::backend
