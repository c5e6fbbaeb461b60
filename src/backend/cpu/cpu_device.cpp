// The CPU backend: the table's memory and kernel entries over host memory (see cpu_device.h).
// Every op passes each pointer through translate() with the extent it touches, which is the
// identity here and the guarded backend's check and address translation.
#include "backend/cpu/cpu_device.h"

#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "core/check.h"
#include "core/page_buffer.h"
#include "kernels/attention.h"
#include "kernels/ops.h"

namespace seqvit::backend {
namespace {

kernels::Op op(Trans t) { return t == Trans::N ? kernels::Op::N : kernels::Op::T; }

// Elements of a row-major matrix op(X) [rows, cols] with leading dimension ld.
int64_t extent(Trans t, int64_t rows, int64_t cols, int64_t ld) {
  if (rows <= 0 || cols <= 0) return 0;
  return t == Trans::N ? (rows - 1) * ld + cols : (cols - 1) * ld + rows;
}

// The parameter store of the CPU: one anonymous mapping whose pages are handed back with
// madvise (core/page_buffer.h).
class CpuParameterStore : public ParameterStore {
 public:
  explicit CpuParameterStore(int64_t n) : buf_(n) {}
  float* data() override { return buf_.data(); }
  int64_t size() const override { return buf_.size(); }
  void release(int64_t first, int64_t count) override { buf_.release(first, count); }
  size_t resident_bytes() const override {
    return seqvit::resident_bytes(buf_.data(), buf_.size(), scratch_);
  }

 private:
  PageBuffer buf_;
  mutable std::vector<unsigned char> scratch_;
};

}  // namespace

int CpuDevice::threads() const { return omp_get_max_threads(); }

void* CpuDevice::allocate(size_t bytes) {
  const size_t n = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, n);
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, n);
  return p;
}
void CpuDevice::deallocate(void* p) { std::free(p); }

std::unique_ptr<ParameterStore> CpuDevice::parameter_store(int64_t floats) {
  return std::make_unique<CpuParameterStore>(floats);
}

void CpuDevice::copy_to_device(void* dst, const void* src, size_t bytes) {
  if (!bytes) return;
  if (!async_) {
    std::memcpy(translate(dst, bytes, "copy_to_device"), src, bytes);
    return;
  }
  // the host source may be reused when this returns: the op takes a copy
  auto staged = std::make_shared<std::vector<std::byte>>(static_cast<const std::byte*>(src),
                                                         static_cast<const std::byte*>(src) + bytes);
  exec([=, this] { std::memcpy(translate(dst, bytes, "copy_to_device"), staged->data(), bytes); });
}
void CpuDevice::copy_to_host(void* dst, const void* src, size_t bytes) {
  synchronize();
  if (bytes) std::memcpy(dst, translate(src, bytes, "copy_to_host"), bytes);
}
void CpuDevice::copy(void* dst, const void* src, size_t bytes) {
  exec([=, this] {
    if (bytes) std::memmove(translate(dst, bytes, "copy"), translate(src, bytes, "copy"), bytes);
  });
}
void CpuDevice::zero(void* dst, size_t bytes) {
  exec([=, this] {
    if (bytes) std::memset(translate(dst, bytes, "zero"), 0, bytes);
  });
}

void CpuDevice::gemm_f32(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
                         const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                         float* C, int64_t ldc) {
  exec([=, this] {
    kernels::gemm_f32(op(ta), op(tb), M, N, K, alpha, tr(A, extent(ta, M, K, lda), "gemm_f32"), lda,
                      tr(B, extent(tb, K, N, ldb), "gemm_f32"), ldb, beta,
                      tr(C, extent(Trans::N, M, N, ldc), "gemm_f32"), ldc);
  });
}
void CpuDevice::gemm_bf16(Trans ta, Trans tb, int64_t M, int64_t N, int64_t K, float alpha,
                          const bf16* A, int64_t lda, const bf16* B, int64_t ldb, float beta,
                          float* C, int64_t ldc) {
  exec([=, this] {
    kernels::gemm_bf16(op(ta), op(tb), M, N, K, alpha, tr(A, extent(ta, M, K, lda), "gemm_bf16"),
                       lda, tr(B, extent(tb, K, N, ldb), "gemm_bf16"), ldb, beta,
                       tr(C, extent(Trans::N, M, N, ldc), "gemm_bf16"), ldc);
  });
}

void CpuDevice::convert_to_bf16(const float* x, bf16* y, int64_t n) {
  exec([=, this] {
    seqvit::convert_to_bf16(tr(x, n, "convert_to_bf16"), tr(y, n, "convert_to_bf16"), n);
  });
}
void CpuDevice::broadcast_rows(float* y, const float* b, int64_t T, int64_t F) {
  exec([=, this] {
    kernels::broadcast_rows(tr(y, T * F, "broadcast_rows"), tr(b, F, "broadcast_rows"), T, F);
  });
}
void CpuDevice::bias_backward(const float* dy, float* db, int64_t T, int64_t F) {
  exec([=, this] {
    kernels::bias_backward(tr(dy, T * F, "bias_backward"), tr(db, F, "bias_backward"), T, F);
  });
}
void CpuDevice::add_inplace(float* y, const float* x, int64_t n) {
  exec([=, this] {
    kernels::add_inplace(tr(y, n, "add_inplace"), tr(x, n, "add_inplace"), n);
  });
}
void CpuDevice::add(const float* a, const float* b, float* y, int64_t n) {
  exec([=, this] {
    kernels::add(tr(a, n, "add"), tr(b, n, "add"), tr(y, n, "add"), n);
  });
}
void CpuDevice::scale_inplace(float* y, float s, int64_t n) {
  exec([=, this] {
    kernels::scale_inplace(tr(y, n, "scale_inplace"), s, n);
  });
}
void CpuDevice::sum_squares(const float* x, const int64_t* ranges, int64_t num_ranges,
                            double* out) {
  exec([=, this] {
    double s = 0;
    for (int64_t r = 0; r < num_ranges; ++r)
      s += kernels::sum_squares(tr(x + ranges[2 * r], ranges[2 * r + 1], "sum_squares"),
                                ranges[2 * r + 1]);
    *tr(out, 1, "sum_squares") = s;
  });
}
void CpuDevice::gelu_forward(const float* x, float* y, int64_t n) {
  exec([=, this] {
    kernels::gelu_forward(tr(x, n, "gelu_forward"), tr(y, n, "gelu_forward"), n);
  });
}
void CpuDevice::gelu_backward(const float* x, const float* dy, float* dx, int64_t n) {
  exec([=, this] {
    kernels::gelu_backward(tr(x, n, "gelu_backward"), tr(dy, n, "gelu_backward"),
                           tr(dx, n, "gelu_backward"), n);
  });
}
void CpuDevice::layernorm_forward(const float* x, const float* gamma, const float* beta,
                                  float* y, float* mean, float* rstd, int64_t T, int64_t D,
                                  float eps) {
  exec([=, this] {
    const char* o = "layernorm_forward";
    kernels::layernorm_forward(tr(x, T * D, o), tr(gamma, D, o), tr(beta, D, o), tr(y, T * D, o),
                               tr(mean, T, o), tr(rstd, T, o), T, D, eps);
  });
}
void CpuDevice::layernorm_backward(const float* dy, const float* x, const float* gamma,
                                   const float* mean, const float* rstd, float* dx, float* dgamma,
                                   float* dbeta, int64_t T, int64_t D, bool accumulate_dx) {
  exec([=, this] {
    const char* o = "layernorm_backward";
    kernels::layernorm_backward(tr(dy, T * D, o), tr(x, T * D, o), tr(gamma, D, o), tr(mean, T, o),
                                tr(rstd, T, o), tr(dx, T * D, o), tr(dgamma, D, o),
                                tr(dbeta, D, o), T, D, accumulate_dx);
  });
}
void CpuDevice::softmax_forward(const float* x, float* y, int64_t T, int64_t F, float* lse) {
  exec([=, this] {
    const char* o = "softmax_forward";
    kernels::softmax_forward(tr(x, T * F, o), tr(y, T * F, o), T, F, tr(lse, T, o));
  });
}
void CpuDevice::softmax_backward(const float* y, const float* dy, float* dx, int64_t T,
                                 int64_t F) {
  exec([=, this] {
    const char* o = "softmax_backward";
    kernels::softmax_backward(tr(y, T * F, o), tr(dy, T * F, o), tr(dx, T * F, o), T, F);
  });
}

void CpuDevice::patchify(const float* x, float* patches, int64_t B, int64_t V, int64_t H,
                         int64_t W, int64_t p) {
  exec([=, this] {
    const int64_t n = B * V * H * W;
    kernels::patchify(tr(x, n, "patchify"), tr(patches, n, "patchify"), B, V, H, W, p);
  });
}
void CpuDevice::unpatchify_vmajor(const float* patches, float* x, int64_t B, int64_t V,
                                  int64_t H, int64_t W, int64_t p) {
  exec([=, this] {
    const int64_t n = B * V * H * W;
    kernels::unpatchify_vmajor(tr(patches, n, "unpatchify_vmajor"), tr(x, n, "unpatchify_vmajor"),
                               B, V, H, W, p);
  });
}
void CpuDevice::unpatchify_channels_last(const float* tok, float* img, int64_t B, int64_t V,
                                         int64_t H, int64_t W, int64_t p) {
  exec([=, this] {
    const int64_t n = B * V * H * W;
    const char* o = "unpatchify_channels_last";
    kernels::unpatchify_channels_last(tr(tok, n, o), tr(img, n, o), B, V, H, W, p);
  });
}
void CpuDevice::patchify_channels_last(const float* img, float* tok, int64_t B, int64_t V,
                                       int64_t H, int64_t W, int64_t p) {
  exec([=, this] {
    const int64_t n = B * V * H * W;
    const char* o = "patchify_channels_last";
    kernels::patchify_channels_last(tr(img, n, o), tr(tok, n, o), B, V, H, W, p);
  });
}

StridedTensor CpuDevice::tr(const StridedTensor& t, int64_t extent_elems, const char* o) const {
  return {tr(t.data, extent_elems, o), t.sb, t.sn, t.sh};
}

// The extent of each strided operand: the last element it addresses, plus one.
AttentionArgs CpuDevice::translate_attention(const AttentionArgs& a, bool backward,
                                             const char* o) {
  auto ext = [&](const StridedTensor& t, int64_t b, int64_t n) {
    return (b - 1) * t.sb + (n - 1) * t.sn + (a.heads - 1) * t.sh + a.head_dim;
  };
  AttentionArgs r = a;
  r.q = tr(a.q, ext(a.q, a.batch, a.nq), o);
  r.k = tr(a.k, ext(a.k, a.batch, a.nk), o);
  r.v = tr(a.v, ext(a.v, a.batch, a.nk), o);
  r.o = tr(a.o, ext(a.o, a.batch, a.nq), o);
  r.lse = tr(a.lse, a.batch * a.heads * a.nq, o);
  r.probs = tr(a.probs, a.batch * a.heads * a.nq * a.nk, o);
  r.workspace = translate(a.workspace, a.workspace_bytes, o);
  if (backward) {
    r.dout = tr(a.dout, ext(a.dout, a.batch, a.nq), o);
    r.dq = tr(a.dq, ext(a.dq, a.batch, a.nq), o);
    r.dk = tr(a.dk, ext(a.dk, a.batch, a.nk), o);
    r.dv = tr(a.dv, ext(a.dv, a.batch, a.nk), o);
  }
  return r;
}

size_t CpuDevice::attention_workspace_bytes(AttentionKind kind, const AttentionArgs& a) {
  return backend::attention_workspace_bytes(name(), kind, a, threads());
}
void CpuDevice::attention_forward(AttentionKind kind, const AttentionArgs& a) {
  exec([=, this] {
    const AttentionArgs t = translate_attention(a, false, "attention_forward");
    switch (kind) {
      case AttentionKind::Flash: return kernels::flash_attention_forward(t);
      case AttentionKind::Dense: return kernels::dense_attention_forward(t);
      case AttentionKind::Naive: return kernels::naive_attention_forward(t);
    }
  });
}
void CpuDevice::attention_backward(AttentionKind kind, const AttentionArgs& a) {
  exec([=, this] {
    const AttentionArgs t = translate_attention(a, true, "attention_backward");
    switch (kind) {
      case AttentionKind::Flash: return kernels::flash_attention_backward(t);
      case AttentionKind::Dense: return kernels::dense_attention_backward(t);
      case AttentionKind::Naive: return kernels::naive_attention_backward(t);
    }
  });
}

void CpuDevice::adamw(const AdamArgs& a) {
  exec([=, this] {
    for (int64_t k = 0; k < a.num_segments; ++k) {
      const AdamSegment& s = a.segments[k];
      if (s.count <= 0) continue;
      float* g = tr(a.g + s.first, s.count, "adamw");
      if (a.grad_scale != 1.f) kernels::scale_inplace(g, a.grad_scale, s.count);
      const int64_t o = s.first - a.state_first;
      kernels::adamw_step(tr(a.p + s.first, s.count, "adamw"), g, tr(a.m + o, s.count, "adamw"),
                          tr(a.v + o, s.count, "adamw"), s.count, a.lr, a.beta1, a.beta2, a.eps,
                          s.decay ? a.weight_decay : 0.f, a.step);
    }
  });
}

}  // namespace seqvit::backend
