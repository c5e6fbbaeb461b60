// Attention forward and backward through the backend table (backend/device.h), on any device:
// the figure the CUDA issue compares with PyTorch's scaled_dot_product_attention
// (bench/torch_gpu_bench.py) on the same GPU. Non-causal; bf16 by default (inputs rounded to
// bf16, fp32 accumulation), --fp32 for exact fp32. FLOPs: forward 4 N^2 d per (batch, head),
// backward 2.5 x that (the convention of FlashAttention's papers).
//   bench_attention [--device cuda] [--n 4096,8192,...] [--head-dim 64,128] [--hidden 2048]
//                   [--tokens 16384] [--iters 10] [--warmup 3] [--fp32] [--json FILE]
// Shapes: heads = hidden / head_dim, batch = max(1, tokens / N), as FlashAttention's benchmarks.
// Before timing, each configuration's first output rows are checked against the naive oracle
// of the same device (relative error printed; > 5e-2 in bf16 or 1e-4 in fp32 fails the run).
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "backend/device.h"
#include "core/rng.h"

using namespace seqvit;

namespace {

std::vector<int64_t> parse_list(const std::string& s, const char* flag) {
  std::vector<int64_t> out;
  size_t at = 0;
  while (at <= s.size()) {
    const size_t comma = s.find(',', at);
    const std::string item = s.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    int64_t mult = 1;
    if (end && (*end == 'K' || *end == 'k')) mult = 1024, ++end;
    if (item.empty() || !end || *end != '\0' || v <= 0) {
      fmt::print(stderr, "{}: '{}' is not a list of positive integers (e.g. 4096,8192 or 4K,8K)\n",
                 flag, s);
      std::exit(2);
    }
    out.push_back(v * mult);
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return out;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  std::string device_name = "cpu", json_path;
  std::vector<int64_t> ns = {4096, 8192, 16384, 32768, 65536}, dims = {64, 128};
  int64_t hidden = 2048, tokens = 16384, iters = 10, warmup = 3;
  bool bf16 = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        fmt::print(stderr, "missing value after {}\n", a);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--device") device_name = value();
    else if (a == "--n") ns = parse_list(value(), "--n");
    else if (a == "--head-dim") dims = parse_list(value(), "--head-dim");
    else if (a == "--hidden") hidden = parse_list(value(), "--hidden").front();
    else if (a == "--tokens") tokens = parse_list(value(), "--tokens").front();
    else if (a == "--iters") iters = parse_list(value(), "--iters").front();
    else if (a == "--warmup") warmup = std::atoll(value().c_str());
    else if (a == "--fp32") bf16 = false;
    else if (a == "--json") json_path = value();
    else {
      fmt::print(stderr, "unknown flag {} (flags: --device --n --head-dim --hidden --tokens "
                 "--iters --warmup --fp32 --json)\n", a);
      return 2;
    }
  }
  std::unique_ptr<backend::Device> dev;
  try {
    dev = backend::make_device(device_name);
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}\n", e.what());
    return 1;
  }
  std::FILE* json = json_path.empty() ? nullptr : std::fopen(json_path.c_str(), "w");
  if (!json_path.empty() && !json) {
    fmt::print(stderr, "cannot open --json file '{}' for writing\n", json_path);
    return 1;
  }
  fmt::print("attention on {} ({}), non-causal; TFLOP/s: forward 4 N^2 d, backward 2.5x\n",
             dev->name(), bf16 ? "bf16 inputs, fp32 accumulation" : "fp32");
  fmt::print("{:>6} {:>4} {:>6} {:>6} {:>10} {:>10} {:>10} {:>10} {:>9}\n", "N", "d", "batch",
             "heads", "fwd ms", "fwd TF/s", "bwd ms", "bwd TF/s", "check");
  bool ok = true;
  for (int64_t d : dims)
    for (int64_t N : ns) {
      const int64_t H = std::max<int64_t>(1, hidden / d), B = std::max<int64_t>(1, tokens / N);
      const int64_t w = H * d, elems = B * N * w;
      AttentionArgs a;
      a.batch = B, a.heads = H, a.nq = N, a.nk = N, a.head_dim = d;
      a.scale = 1.f / std::sqrt(static_cast<float>(d));
      a.bf16 = bf16;
      std::vector<backend::Allocation> mem;
      auto tensor = [&]() {
        mem.emplace_back(*dev, sizeof(float) * static_cast<size_t>(elems));
        return StridedTensor{mem.back().as<float>(), N * w, w, d};
      };
      a.q = tensor(), a.k = tensor(), a.v = tensor(), a.o = tensor(), a.dout = tensor();
      a.dq = tensor(), a.dk = tensor(), a.dv = tensor();
      mem.emplace_back(*dev, sizeof(float) * static_cast<size_t>(B * H * N));
      a.lse = mem.back().as<float>();
      {
        std::vector<float> h(static_cast<size_t>(elems));
        Rng rng(static_cast<uint64_t>(N * 131 + d));
        for (StridedTensor* t : {&a.q, &a.k, &a.v, &a.dout}) {
          for (auto& x : h) x = static_cast<float>(rng.normal());
          dev->copy_to_device(t->data, h.data(), sizeof(float) * h.size());
        }
      }
      a.workspace_bytes = dev->attention_workspace_bytes(backend::AttentionKind::Flash, a);
      mem.emplace_back(*dev, std::max<size_t>(a.workspace_bytes, 1));
      a.workspace = mem.back().get();

      // check: the first 4 query rows of batch 0 against the naive oracle on the same device
      dev->attention_forward(backend::AttentionKind::Flash, a);
      double err = 0;
      {
        const int64_t rows = std::min<int64_t>(4, N);
        AttentionArgs r = a;
        r.batch = 1, r.nq = rows;
        mem.emplace_back(*dev, sizeof(float) * static_cast<size_t>(rows * w));
        r.o = {mem.back().as<float>(), rows * w, w, d};
        mem.emplace_back(*dev, sizeof(float) * static_cast<size_t>(H * rows));
        r.lse = mem.back().as<float>();
        r.workspace_bytes = dev->attention_workspace_bytes(backend::AttentionKind::Naive, r);
        mem.emplace_back(*dev, std::max<size_t>(r.workspace_bytes, 1));
        r.workspace = mem.back().get();
        dev->attention_forward(backend::AttentionKind::Naive, r);
        std::vector<float> got(static_cast<size_t>(rows * w)), ref(got.size());
        dev->copy_to_host(got.data(), a.o.data, sizeof(float) * got.size());
        dev->copy_to_host(ref.data(), r.o.data, sizeof(float) * ref.size());
        double num = 0, den = 0;
        for (size_t i = 0; i < got.size(); ++i) {
          num += (got[i] - ref[i]) * double(got[i] - ref[i]);
          den += double(ref[i]) * ref[i];
        }
        err = std::sqrt(num / std::max(den, 1e-300));
      }
      const bool good = err <= (bf16 ? 5e-2 : 1e-4);
      ok = ok && good;

      for (int64_t k = 0; k < warmup; ++k) {
        dev->attention_forward(backend::AttentionKind::Flash, a);
        dev->attention_backward(backend::AttentionKind::Flash, a);
      }
      dev->synchronize();
      auto t0 = std::chrono::steady_clock::now();
      for (int64_t k = 0; k < iters; ++k) dev->attention_forward(backend::AttentionKind::Flash, a);
      dev->synchronize();
      const double fwd = seconds_since(t0) / iters;
      t0 = std::chrono::steady_clock::now();
      for (int64_t k = 0; k < iters; ++k) dev->attention_backward(backend::AttentionKind::Flash, a);
      dev->synchronize();
      const double bwd = seconds_since(t0) / iters;
      const double flops = 4.0 * double(N) * double(N) * double(d) * double(H) * double(B);
      fmt::print("{:>6} {:>4} {:>6} {:>6} {:>10.3f} {:>10.1f} {:>10.3f} {:>10.1f} {:>9.1e}{}\n", N,
                 d, B, H, fwd * 1e3, flops / fwd / 1e12, bwd * 1e3, 2.5 * flops / bwd / 1e12, err,
                 good ? "" : " FAILED");
      if (json)
        fmt::print(json,
                   "{{\"bench\": \"attention\", \"impl\": \"seqvit\", \"device\": \"{}\", "
                   "\"dtype\": \"{}\", \"n\": {}, \"head_dim\": {}, \"batch\": {}, \"heads\": {}, "
                   "\"fwd_s\": {:.6e}, \"bwd_s\": {:.6e}, \"fwd_tflops\": {:.2f}, "
                   "\"bwd_tflops\": {:.2f}, \"check_rel_err\": {:.3e}}}\n",
                   dev->name(), bf16 ? "bf16" : "fp32", N, d, B, H, fwd, bwd, flops / fwd / 1e12,
                   2.5 * flops / bwd / 1e12, err);
    }
  if (json) std::fclose(json);
  if (!ok) fmt::print(stderr, "bench_attention: a configuration failed its check\n");
  return ok ? 0 : 1;
}
