// Training-step benchmark of a plain token sequence through ClimaX transformer blocks:
// D=256, 4 heads, 4 blocks, batch 1, N tokens (defaults; all flags below). The model is the
// real ClimaX with V=1, patch 1 and a one-layer head, so the sequence is N = H*W tokens and the
// embedding/head add well under 1% of the FLOPs. Reported GFLOP/s use the block-only count
// FLOPs = 3 * L * (24 N D^2 + 4 N^2 D) per step (the same count the PyTorch peer uses).
// One configuration per process, so peak RSS (getrusage) is per configuration.
//   bench_block_step --n 8192 [--bf16] [--steps 3] [--warmup 1] [--dim 256 --heads 4 --depth 4]
//                    [--attention flash|dense] [--recompute] [--device cpu|guarded|cuda]
//                    [--peak-tflops P]
// --peak-tflops: the device's dense peak at this precision (989 for an H100 SXM in bf16); the
// run then reports its model FLOPs utilisation, MFU = achieved / peak. On a device that counts
// its memory (cuda) the peak is the device's allocation high-water mark, else the peak RSS.
// --device picks the backend (default cpu); an unknown name exits with status 1, listing the
// devices of this build.
// --attention dense runs the blocks with standard attention that keeps the probabilities
// (B*H*N*N floats per block), the "without flash attention" side of the comparison.
// --warmup 0 times the first step itself (cold: first-touch page faults included), for runs
// where one step is all there is time for (the 188,416-token demonstration).
#include <fmt/core.h>
#include <omp.h>
#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backend/device.h"
#include "core/rng.h"
#include "train/trainer.h"

using namespace seqvit;

int run(int argc, char** argv) {
  int64_t n = 8192, dim = 256, heads = 4, depth = 4, steps = 3, warmup = 1;
  bool bf16 = false, json = false, recompute = false;
  double peak_tflops = 0;
  std::string attention = "flash";
  std::string device_name = "cpu";
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> int64_t {
      if (i + 1 >= argc) {
        fmt::print(stderr, "missing value after {}\n", a);
        std::exit(2);
      }
      return std::atoll(argv[++i]);
    };
    if (a == "--n") n = next();
    else if (a == "--dim") dim = next();
    else if (a == "--heads") heads = next();
    else if (a == "--depth") depth = next();
    else if (a == "--steps") steps = next();
    else if (a == "--warmup") warmup = next();
    else if (a == "--bf16") bf16 = true;
    else if (a == "--recompute") recompute = true;
    else if (a == "--peak-tflops") {
      if (i + 1 >= argc) {
        fmt::print(stderr, "missing value after --peak-tflops\n");
        return 2;
      }
      peak_tflops = std::atof(argv[++i]);
    }
    else if (a == "--json") json = true;
    else if (a == "--device") {
      if (i + 1 >= argc) {
        fmt::print(stderr, "missing value after --device\n");
        return 2;
      }
      device_name = argv[++i];
    }
    else if (a == "--attention") {
      if (i + 1 >= argc) {
        fmt::print(stderr, "missing value after --attention (valid: flash, dense)\n");
        return 2;
      }
      attention = argv[++i];
      if (attention != "flash" && attention != "dense") {
        fmt::print(stderr, "unknown --attention '{}': valid values are 'flash' and 'dense'\n",
                   attention);
        return 2;
      }
    } else {
      fmt::print(stderr, "unknown flag {} (flags: --n --dim --heads --depth --steps --warmup --bf16 --attention --recompute --device --peak-tflops --json)\n", a);
      return 2;
    }
  }
  if (n % 128 != 0 && n > 128) {
    fmt::print(stderr, "--n must be a multiple of 128 (tokens laid out as (n/128) x 128)\n");
    return 2;
  }
  std::unique_ptr<backend::Device> device;
  try {
    device = backend::make_device(device_name);
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}\n", e.what());
    return 1;
  }
  model::ModelConfig mc;
  mc.img_w = std::min<int64_t>(n, 128);
  mc.img_h = n / mc.img_w;
  mc.patch_size = 1;
  mc.embed_dim = dim;
  mc.num_heads = heads;
  mc.depth = depth;
  mc.decoder_depth = 0;
  mc.variables = {"x"};
  mc.out_variables = {"x"};
  mc.tokenization = model::Tokenization::PerVariable;
  mc.attention = model::parse_attention_kernel(attention);
  train::OptimConfig oc;
  oc.lr = 1e-4;
  oc.total_steps = steps + 1;
  train::TrainerParallel par;
  par.recompute = recompute;
  train::Trainer tr(mc, oc, 1, bf16 ? model::Precision::BF16 : model::Precision::F32, 0, par,
                    *device);
  const int64_t HW = mc.img_h * mc.img_w;
  std::vector<float> x(HW), y(HW), lat(mc.img_h);
  Rng rng(1);
  for (auto& v : x) v = static_cast<float>(rng.normal());
  for (auto& v : y) v = static_cast<float>(rng.normal());
  for (int64_t i = 0; i < mc.img_h; ++i) lat[i] = 80.f - 160.f * i / std::max<int64_t>(1, mc.img_h - 1);
  float lt = 6.f;
  model::BatchView b{1, x.data(), y.data(), &lt, lat.data()};
  // warm-up steps (also validate: the loss must be finite)
  for (int64_t s = 0; s < warmup; ++s)
    if (!std::isfinite(tr.step(b).loss)) {
      fmt::print(stderr, "non-finite loss in warm-up\n");
      return 1;
    }
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t s = 0; s < steps; ++s)
    if (!std::isfinite(tr.step(b).loss)) {
      fmt::print(stderr, "non-finite loss at step {}\n", s + 1);
      return 1;
    }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / steps;
  const double N = static_cast<double>(n), D = static_cast<double>(dim);
  const double flops = 3.0 * depth * (24 * N * D * D + 4 * N * N * D);
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  const double rss_gib = ru.ru_maxrss * 1024.0 / (1024.0 * 1024 * 1024);
  const double dev_gib = device->peak_allocated_bytes() / (1024.0 * 1024 * 1024);
  const double mfu = peak_tflops > 0 ? flops / secs / (peak_tflops * 1e12) : 0;
  if (json)
    fmt::print("{{\"impl\": \"seqvit\", \"device\": \"{}\", \"n\": {}, \"dim\": {}, "
               "\"heads\": {}, \"depth\": {}, \"dtype\": \"{}\", \"recompute\": {}, "
               "\"step_s\": {:.4f}, \"tokens_per_s\": {:.1f}, \"gflops\": {:.2f}, "
               "\"mfu\": {:.4f}, \"peak_rss_gib\": {:.3f}, \"peak_device_gib\": {:.3f}, "
               "\"planned_gib\": {:.3f}, \"threads\": {}, \"attention\": \"{}\"}}\n",
               device->name(), n, dim, heads, depth, bf16 ? "bf16" : "fp32", recompute, secs,
               N / secs, flops / secs / 1e9, mfu, rss_gib, dev_gib,
               tr.total_bytes() / (1024.0 * 1024 * 1024), omp_get_max_threads(), attention);
  else
    fmt::print("seqvit step on {} N={} D={} heads={} depth={} {} {} attention{}: {:.3f} s/step, "
               "{:.0f} tokens/s, {:.1f} GFLOP/s{}, peak {} {:.2f} GiB (planned {:.2f} GiB), {} "
               "threads\n",
               device->name(), n, dim, heads, depth, bf16 ? "bf16" : "fp32", attention,
               recompute ? ", recompute" : "", secs, N / secs, flops / secs / 1e9,
               peak_tflops > 0 ? fmt::format(", MFU {:.1f}%", 100 * mfu) : "",
               dev_gib > 0 ? "device memory" : "RSS", dev_gib > 0 ? dev_gib : rss_gib,
               tr.total_bytes() / (1024.0 * 1024 * 1024), omp_get_max_threads());
  return 0;
}

// Exit status: 0 measured, 1 failed (an error, e.g. the model does not fit: the message says
// so), 2 bad flags.
int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "bench_block_step: {}\n", e.what());
    return 1;
  }
}
