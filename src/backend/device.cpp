#include "backend/device.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "backend/cpu/cpu_device.h"
#include "backend/guarded/guarded_device.h"
#include "core/check.h"
#include "kernels/attention.h"

namespace seqvit::backend {

std::vector<std::string> device_names() { return {"cpu", "guarded"}; }

std::unique_ptr<Device> make_device(const std::string& name) {
  if (name == "cpu") return std::make_unique<CpuDevice>();
  if (name == "guarded") return std::make_unique<GuardedDevice>();
  throw Error(fmt::format("unknown device '{}': this build has {}", name,
                          fmt::join(device_names(), ", ")));
}

Device& cpu() {
  static CpuDevice device;
  return device;
}

size_t attention_workspace_bytes(const std::string& device, AttentionKind kind,
                                 const AttentionArgs& a, int threads) {
  SEQVIT_CHECK(device == "cpu" || device == "guarded",
               "unknown device '{}': this build has {}", device, fmt::join(device_names(), ", "));
  switch (kind) {
    case AttentionKind::Flash: return kernels::flash_attention_workspace_bytes(a, threads);
    case AttentionKind::Dense: return kernels::dense_attention_workspace_bytes(a, threads);
    case AttentionKind::Naive: return 0;
  }
  return 0;
}

size_t Arena::pending_bytes() const {
  size_t total = 0;
  for (const auto& p : pending_) total += (p.bytes + 63) / 64 * 64;
  return total;
}

void Arena::commit(Device& dev) {
  mem_ = Allocation(dev, pending_bytes());
  char* at = mem_.as<char>();
  for (const auto& p : pending_) {
    *p.slot = p.bytes ? at : nullptr;
    at += (p.bytes + 63) / 64 * 64;
  }
  pending_.clear();
}

}  // namespace seqvit::backend
