// Shared flags (see parallel_flags.h).
#include "cli/parallel_flags.h"

#include <fmt/core.h>
#include <fmt/ranges.h>

namespace seqvit::cli {

void add_parallel_flags(CLI::App* c, train::ParallelOptions& p) {
  c->add_option("--dp", p.dp,
                "data-parallel degree: split each batch's samples over D replicas (mpirun -np "
                "D*T*S*P with --tp T, --pp S and --sp P)")
      ->capture_default_str();
  c->add_option("--sp", p.sp, "sequence-parallel degree: split the tokens over P ranks")
      ->capture_default_str();
  c->add_option("--sp-mode", p.sp_mode,
                "sequence-parallel attention: ulysses, lss, ring or 2d (Ulysses inside groups "
                "of --sp-ulysses ranks, --sp-outer across them)")
      ->capture_default_str();
  c->add_option("--sp-ulysses", p.sp_ulysses,
                "--sp-mode 2d: Ulysses degree U, dividing --sp P and at most the heads");
  c->add_option("--sp-outer", p.sp_outer,
                "--sp-mode 2d: ring or lss across the P / U Ulysses groups")
      ->capture_default_str();
  c->add_option("--tp", p.tp,
                "tensor-parallel degree: split heads and MLP units over T ranks")
      ->capture_default_str();
  c->add_option("--pp", p.pp, "pipeline stages: split the blocks over S ranks")
      ->capture_default_str();
  c->add_option("--micro-batches", p.micro_batches,
                "micro-batches per step and dp replica (pipeline schedule; gradient "
                "accumulation without --pp)")
      ->capture_default_str();
  c->add_option("--pp-schedule", p.pp_schedule, "pipeline schedule: 1f1b or gpipe")
      ->capture_default_str();
  c->add_option("--zero", p.zero,
                "ZeRO stage over the dp x sp ranks: 0 off, 1 optimizer state, 2 and gradients, "
                "3 and parameters (FSDP)")
      ->capture_default_str();
  c->add_option("--order", p.order,
                "rank grid: the axes dp, pp, tp, sp, outermost first (the innermost axis's groups "
                "are runs of neighbouring ranks, on one node)")
      ->capture_default_str();
  c->add_flag("--recompute", p.recompute,
              "activation recomputation: keep only block inputs, recompute blocks in backward "
              "(identical results)");
}

bool parallel_degrees_given(const CLI::App* c) {
  for (const char* f : {"--dp", "--sp", "--tp", "--pp"})
    if (c->count(f) > 0) return true;
  return false;
}

void add_device_flag(CLI::App* c, std::string& device) {
  c->add_option("--device", device,
                fmt::format("backend to run on: {}", fmt::join(backend::device_names(), ", ")))
      ->capture_default_str();
}

std::unique_ptr<backend::Device> open_device(const std::string& name) {
  return backend::make_device(name);
}

}  // namespace seqvit::cli
