#include "backend/device.h"

#include <dlfcn.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <filesystem>

#include "backend/cpu/cpu_device.h"
#include "backend/guarded/guarded_device.h"
#include "core/check.h"
#include "kernels/attention.h"

namespace seqvit::backend {

#ifdef SEQVIT_CUDA_PLUGIN
namespace {

// The CUDA backend is a plugin (docs/cuda.md "Loading"): libseqvit_cuda.so, looked for at
// $SEQVIT_CUDA_PLUGIN, beside the running binary and one folder up (build/ for the programs in
// build/tests and build/bench), and in ../lib. Loaded once, on first use, and never unloaded.
struct CudaPlugin {
  void* handle = nullptr;
  std::string error;  // why it could not be loaded
  int (*device_count)(std::string*) = nullptr;
  Device* (*create)(const std::string*, int, std::string*) = nullptr;
  size_t (*workspace)(int, const AttentionArgs*) = nullptr;
};

std::vector<std::string> plugin_candidates() {
  std::vector<std::string> c;
  if (const char* env = std::getenv("SEQVIT_CUDA_PLUGIN"); env && *env) c.push_back(env);
  char exe[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (n > 0) {
    const std::filesystem::path dir = std::filesystem::path(std::string(exe, n)).parent_path();
    for (const auto& d : {dir, dir.parent_path(), dir.parent_path() / "lib"})
      c.push_back((d / SEQVIT_CUDA_PLUGIN).string());
  }
  return c;
}

const CudaPlugin& cuda_plugin() {
  static const CudaPlugin plugin = [] {
    CudaPlugin p;
    std::string tried;
    for (const auto& path : plugin_candidates()) {
      if (!std::filesystem::exists(path)) {
        tried += fmt::format("{}{} (absent)", tried.empty() ? "" : "; ", path);
        continue;
      }
      p.handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!p.handle) {
        const char* why = dlerror();
        p.error = fmt::format("the CUDA backend {} cannot be loaded: {}", path,
                              why ? why : "unknown dlopen error");
        return p;
      }
      auto abi = reinterpret_cast<int (*)()>(dlsym(p.handle, "seqvit_cuda_plugin_abi"));
      p.device_count = reinterpret_cast<int (*)(std::string*)>(
          dlsym(p.handle, "seqvit_cuda_device_count"));
      p.create = reinterpret_cast<Device* (*)(const std::string*, int, std::string*)>(
          dlsym(p.handle, "seqvit_cuda_create"));
      p.workspace = reinterpret_cast<size_t (*)(int, const AttentionArgs*)>(
          dlsym(p.handle, "seqvit_cuda_attention_workspace_bytes"));
      if (!abi || abi() != 1 || !p.device_count || !p.create || !p.workspace) {
        p.create = nullptr;
        p.error = fmt::format("{} is not a seqvit CUDA plugin of this build (rebuild seqvit)",
                              path);
      }
      return p;
    }
    p.error = fmt::format("{} was not found (looked at: {}; set SEQVIT_CUDA_PLUGIN to its path)",
                          SEQVIT_CUDA_PLUGIN, tried);
    return p;
  }();
  return plugin;
}

// "cuda" -> 0, "cuda:3" -> 3; -1 if `name` is no CUDA device name.
int cuda_ordinal(const std::string& name) {
  if (name == "cuda") return 0;
  if (name.rfind("cuda:", 0) != 0) return -1;
  const std::string n = name.substr(5);
  if (n.empty() || n.size() > 4 || n.find_first_not_of("0123456789") != std::string::npos)
    throw Error(fmt::format("device '{}': expected 'cuda' or 'cuda:N' with N a GPU index (0, 1, "
                            "...)", name));
  return std::stoi(n);
}

}  // namespace
#endif

std::vector<std::string> device_names() {
#ifdef SEQVIT_CUDA_PLUGIN
  return {"cpu", "guarded", "cuda"};
#else
  return {"cpu", "guarded"};
#endif
}

std::unique_ptr<Device> make_device(const std::string& name) {
  if (name == "cpu") return std::make_unique<CpuDevice>();
  if (name == "guarded") return std::make_unique<GuardedDevice>();
#ifdef SEQVIT_CUDA_PLUGIN
  if (const int ordinal = cuda_ordinal(name); ordinal >= 0) {
    const CudaPlugin& p = cuda_plugin();
    if (!p.create) throw Error(fmt::format("device '{}': {}", name, p.error));
    std::string error;
    Device* d = p.create(&name, ordinal, &error);
    if (!d) throw Error(error);
    return std::unique_ptr<Device>(d);
  }
#endif
  throw Error(fmt::format("unknown device '{}': this build has {}", name,
                          fmt::join(device_names(), ", ")));
}

bool device_available(const std::string& name, std::string* why) {
  try {
#ifdef SEQVIT_CUDA_PLUGIN
    if (const int ordinal = cuda_ordinal(name); ordinal >= 0) {
      const CudaPlugin& p = cuda_plugin();
      if (!p.create) {
        if (why) *why = p.error;
        return false;
      }
      std::string reason;
      const int count = p.device_count(&reason);
      if (ordinal >= count) {
        if (why)
          *why = count == 0 ? "no CUDA GPU is usable: " + reason
                            : fmt::format("this machine has {} CUDA GPU(s)", count);
        return false;
      }
      return true;
    }
#endif
    make_device(name);
    return true;
  } catch (const Error& e) {
    if (why) *why = e.what();
    return false;
  }
}

Device& cpu() {
  static CpuDevice device;
  return device;
}

size_t attention_workspace_bytes(const std::string& device, AttentionKind kind,
                                 const AttentionArgs& a, int threads) {
#ifdef SEQVIT_CUDA_PLUGIN
  if (cuda_ordinal(device) >= 0) {
    const CudaPlugin& p = cuda_plugin();
    if (!p.workspace) throw Error(fmt::format("device '{}': {}", device, p.error));
    return p.workspace(static_cast<int>(kind), &a);
  }
#endif
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
