// A machine as the planner sees it (docs/planner.md): per device, its memory, its peak rates
// and the efficiency the engine reaches on them; per link level (within a GPU package, within a
// node, between nodes), the bandwidth one device gets when every device of the level sends at
// once, and a latency. Presets for Frontier's MI250X nodes and for this 2-core development
// machine; any other machine is a JSON file with the same keys (docs/planner.md lists them).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace seqvit::plan {

struct LinkLevel {
  double gbytes_per_s = 0;  // per device, one direction, all devices of the level sending
  double latency_us = 0;    // per message
};

struct Machine {
  std::string name, description;
  int64_t devices_per_package = 1;  // devices that share the fastest links (an MI250X: 2 GCDs)
  int64_t devices_per_node = 1;
  double memory_gib = 0;    // per device
  double reserved_gib = 0;  // per device, not available to seqvit (runtime, MPI, OS)
  double peak_tflops_fp32 = 0, peak_tflops_bf16 = 0;  // per device, matrix units
  // Fractions of peak the engine reaches: dense matrix products and flash attention.
  double matmul_efficiency = 0.5, attention_efficiency = 0.4;
  double memory_gbytes_per_s = 0;  // per device: the memory-bound kernels (LayerNorm, GELU, AdamW)
  LinkLevel package, node, network;
  // > 0: the machine has this many compute units in all, and more devices (MPI ranks) than
  // that share them: each gets cores / devices of the rates (this machine, oversubscribed).
  int64_t shared_cores = 0;

  double usable_bytes() const { return (memory_gib - reserved_gib) * 1073741824.0; }
  // Throws seqvit::Error naming the key and the bad value.
  void validate() const;
};

// "frontier" (one device = one MI250X GCD), "h100" (one H100 SXM), "dgx-h100" (8 H100 per
// node), "local" (one device = one MPI rank of the 2-core development machine). Throws listing
// the presets for an unknown name.
Machine machine_preset(const std::string& name);
std::vector<std::string> machine_presets();
// A JSON file (docs/planner.md); unknown keys are errors naming the file and the key.
Machine machine_from_file(const std::string& path);
// A preset name, or a path to a JSON file.
Machine machine_from_arg(const std::string& name_or_path);

}  // namespace seqvit::plan
