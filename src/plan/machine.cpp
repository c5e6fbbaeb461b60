// Machine presets and JSON machine files (see machine.h).
#include "plan/machine.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/check.h"

namespace seqvit::plan {

namespace {

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

}  // namespace

void Machine::validate() const {
  auto positive = [&](const char* key, double v) {
    if (!(v > 0)) fail("machine '{}': {} must be > 0, got {}", name, key, v);
  };
  if (devices_per_package < 1) fail("machine '{}': devices_per_package must be >= 1, got {}", name, devices_per_package);
  if (devices_per_node < devices_per_package || devices_per_node % devices_per_package != 0)
    fail("machine '{}': devices_per_node ({}) must be a multiple of devices_per_package ({})",
         name, devices_per_node, devices_per_package);
  positive("memory_gib", memory_gib);
  if (reserved_gib < 0 || reserved_gib >= memory_gib)
    fail("machine '{}': reserved_gib must be in [0, memory_gib = {}), got {}", name, memory_gib,
         reserved_gib);
  positive("peak_tflops_fp32", peak_tflops_fp32);
  positive("peak_tflops_bf16", peak_tflops_bf16);
  positive("memory_gbytes_per_s", memory_gbytes_per_s);
  for (auto [key, v] : {std::pair{"matmul_efficiency", matmul_efficiency},
                        std::pair{"attention_efficiency", attention_efficiency}})
    if (!(v > 0 && v <= 1)) fail("machine '{}': {} must be in (0, 1], got {}", name, key, v);
  for (auto [key, l] : {std::pair{"package", package}, std::pair{"node", node},
                        std::pair{"network", network}}) {
    if (!(l.gbytes_per_s > 0))
      fail("machine '{}': links.{}.gbytes_per_s must be > 0, got {}", name, key, l.gbytes_per_s);
    if (l.latency_us < 0)
      fail("machine '{}': links.{}.latency_us must be >= 0, got {}", name, key, l.latency_us);
  }
}

std::vector<std::string> machine_presets() { return {"frontier", "h100", "dgx-h100", "local"}; }

Machine machine_preset(const std::string& name) {
  Machine m;
  m.name = name;
  if (name == "frontier") {
    // One device = one Graphics Compute Die of an AMD MI250X (vendor peak figures per GCD:
    // 64 GiB HBM2e at 1.6 TB/s, 47.9 TFLOP/s fp32 matrix, 191.5 TFLOP/s bf16). A node: 4 MI250X
    // = 8 GCDs; the 2 GCDs of a package share 4 Infinity Fabric links (200 GB/s), GCDs of
    // different packages 1-2 links (50 GB/s used here), 4 Slingshot NICs of 25 GB/s per node
    // (12.5 GB/s per GCD when all send). Efficiencies are assumptions, not measurements: the
    // engine has no GPU backend yet (docs/planner.md).
    m.description =
        "OLCF Frontier: 8 MI250X GCDs per node (2 per package), 64 GiB each, Slingshot "
        "4 x 25 GB/s per node; efficiencies assumed";
    m.devices_per_package = 2;
    m.devices_per_node = 8;
    m.memory_gib = 64;
    m.reserved_gib = 4;
    m.peak_tflops_fp32 = 47.9;
    m.peak_tflops_bf16 = 191.5;
    m.matmul_efficiency = 0.45;
    m.attention_efficiency = 0.30;
    m.memory_gbytes_per_s = 1300;
    m.package = {200, 5};
    m.node = {50, 8};
    m.network = {12.5, 15};
  } else if (name == "h100" || name == "dgx-h100") {
    // One device = one NVIDIA H100 SXM5 (vendor figures: 80 GB HBM3 at 3.35 TB/s, 989 TFLOP/s
    // bf16 dense, 67 TFLOP/s fp32 without tensor cores, the table's exact fp32). A DGX H100
    // node: 8 GPUs on NVSwitch, NVLink 900 GB/s per GPU (450 GB/s each way), 8 x 400 Gb/s
    // InfiniBand per node (50 GB/s per GPU). The efficiencies are ASSUMPTIONS until the CUDA
    // backend has been measured on a card (docs/cuda.md, docs/benchmarks.md "GPU"): they are
    // to be replaced by the measured fractions of peak, as the local preset's are.
    const bool node = name == "dgx-h100";
    m.description = node ? "DGX H100: 8 H100 SXM 80 GB per node, NVLink 900 GB/s per GPU, "
                           "8 x 400 Gb/s InfiniBand; efficiencies assumed, not yet measured"
                         : "one H100 SXM 80 GB; efficiencies assumed, not yet measured";
    m.devices_per_package = node ? 8 : 1;  // NVSwitch: every pair of GPUs at full NVLink rate
    m.devices_per_node = node ? 8 : 1;
    m.memory_gib = 80 * 1e9 / 1073741824.0;
    m.reserved_gib = 2;  // CUDA context, cuBLASLt workspace, MPI
    m.peak_tflops_fp32 = 67;
    m.peak_tflops_bf16 = 989;
    m.matmul_efficiency = 0.7;
    m.attention_efficiency = 0.4;
    m.memory_gbytes_per_s = 3000;
    m.package = {450, 3};
    m.node = {450, 3};
    m.network = {50, 5};
  } else if (name == "local") {
    // The development machine seqvit's CPU figures were measured on: 2 Zen 4 cores, 24 GiB; one device = one MPI rank pinned to one
    // core (more ranks than cores share them: the planner divides the rates). Rates measured by
    // the engine's benchmarks on 2 threads (docs/benchmarks.md): oneDNN sgemm 205-219 GFLOP/s,
    // bf16 GEMM 443, flash attention forward+backward 181-192 fp32; copy rate 35 GB/s. Peak
    // 230 GFLOP/s fp32 and 460 bf16 for the 2 cores; the halves per device.
    m.description =
        "fixed preset (not detected): 2 x86-64 cores (Zen 4, AVX-512 BF16) sharing 24 GiB, "
        "1 rank per core with 11 GiB each; describe another machine with --machine FILE";
    m.devices_per_package = 1;
    m.devices_per_node = 2;
    m.memory_gib = 11;
    m.reserved_gib = 0.5;
    m.peak_tflops_fp32 = 0.115;
    m.peak_tflops_bf16 = 0.230;
    m.matmul_efficiency = 0.89;
    m.attention_efficiency = 0.80;
    m.memory_gbytes_per_s = 17.5;
    m.package = {5, 2};
    m.node = {5, 2};
    m.network = {1, 20};
    m.shared_cores = 2;
  } else {
    fail("unknown machine '{}': the presets are {}, or give a JSON file (docs/planner.md)", name,
         join(machine_presets()));
  }
  m.validate();
  return m;
}

Machine machine_from_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("cannot read machine file '{}'", path);
  std::stringstream ss;
  ss << in.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(ss.str());
  } catch (const std::exception& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
  if (!j.is_object()) fail("{}: a machine file is a JSON object (docs/planner.md)", path);
  Machine m;
  m.name = std::filesystem::path(path).stem().string();
  const std::set<std::string> keys{"name", "description", "devices_per_package",
                                   "devices_per_node", "memory_gib", "reserved_gib",
                                   "peak_tflops_fp32", "peak_tflops_bf16", "matmul_efficiency",
                                   "attention_efficiency", "memory_gbytes_per_s", "links",
                                   "shared_cores"};
  std::string valid;
  for (const auto& k : keys) valid += (valid.empty() ? "" : ", ") + k;
  for (const auto& [k, v] : j.items())
    if (!keys.count(k)) fail("{}: unknown key '{}'; valid keys: {}", path, k, valid);
  auto num = [&](const nlohmann::json& o, const std::string& k, double& out, bool required) {
    if (!o.contains(k)) {
      if (required) fail("{}: missing key '{}'", path, k);
      return;
    }
    if (!o[k].is_number()) fail("{}: '{}' must be a number, got {}", path, k, o[k].dump());
    out = o[k].get<double>();
  };
  auto integer = [&](const std::string& k, int64_t& out) {
    if (!j.contains(k)) fail("{}: missing key '{}'", path, k);
    if (!j[k].is_number_integer()) fail("{}: '{}' must be an integer, got {}", path, k, j[k].dump());
    out = j[k].get<int64_t>();
  };
  if (j.contains("name")) m.name = j["name"].get<std::string>();
  if (j.contains("description")) m.description = j["description"].get<std::string>();
  integer("devices_per_package", m.devices_per_package);
  integer("devices_per_node", m.devices_per_node);
  num(j, "memory_gib", m.memory_gib, true);
  num(j, "reserved_gib", m.reserved_gib, false);
  num(j, "peak_tflops_fp32", m.peak_tflops_fp32, true);
  num(j, "peak_tflops_bf16", m.peak_tflops_bf16, true);
  num(j, "matmul_efficiency", m.matmul_efficiency, false);
  num(j, "attention_efficiency", m.attention_efficiency, false);
  num(j, "memory_gbytes_per_s", m.memory_gbytes_per_s, true);
  if (j.contains("shared_cores")) {
    if (!j["shared_cores"].is_number_integer() || j["shared_cores"].get<int64_t>() < 0)
      fail("{}: 'shared_cores' must be an integer >= 0, got {}", path, j["shared_cores"].dump());
    m.shared_cores = j["shared_cores"].get<int64_t>();
  }
  if (!j.contains("links") || !j["links"].is_object())
    fail("{}: missing object 'links' with 'package', 'node' and 'network'", path);
  const auto& links = j["links"];
  for (const auto& [k, v] : links.items())
    if (k != "package" && k != "node" && k != "network")
      fail("{}: unknown link level '{}'; the levels are package, node and network", path, k);
  for (auto [k, l] : {std::pair{"package", &m.package}, std::pair{"node", &m.node},
                      std::pair{"network", &m.network}}) {
    if (!links.contains(k)) fail("{}: missing links.{}", path, k);
    num(links[k], "gbytes_per_s", l->gbytes_per_s, true);
    num(links[k], "latency_us", l->latency_us, false);
  }
  m.validate();
  return m;
}

Machine machine_from_arg(const std::string& s) {
  for (const auto& p : machine_presets())
    if (s == p) return machine_preset(s);
  if (std::filesystem::exists(s)) return machine_from_file(s);
  fail("machine '{}' is neither a preset ({}) nor an existing JSON file", s,
       join(machine_presets()));
}

}  // namespace seqvit::plan
