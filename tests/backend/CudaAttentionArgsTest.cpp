// The host side of the CUDA attention (backend/cuda/attention.h, docs/cuda.md "Attention"):
// workspace sizes (exact, from the documented plans) and the argument checks, which all run
// before anything is enqueued, so this test needs no GPU. Every call here is refused before a
// kernel would launch; the kernels themselves are tested against the CPU backend on a GPU.
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "backend/cuda/attention.h"
#include "core/check.h"

using namespace seqvit;
using seqvit::backend::AttentionKind;
namespace cuda = seqvit::backend::cuda;

namespace {

// Never dereferenced: every call below fails its checks first.
float g_fake[1];

AttentionArgs args(int64_t batch, int64_t heads, int64_t nq, int64_t nk, int64_t d) {
  AttentionArgs a;
  a.batch = batch;
  a.heads = heads;
  a.nq = nq;
  a.nk = nk;
  a.head_dim = d;
  a.scale = 0.125f;
  for (StridedTensor* t : {&a.q, &a.k, &a.v, &a.o, &a.dout, &a.dq, &a.dk, &a.dv}) {
    t->data = g_fake;
    t->sb = nq * heads * d;
    t->sn = heads * d;
    t->sh = d;
  }
  a.lse = g_fake;
  a.probs = g_fake;
  return a;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(CudaAttentionArgs, WorkspaceOfTheTiledPaths) {
  const AttentionArgs a = args(2, 3, 100, 70, 64);
  // flash: Dv [B H nq] fp32 for the backward, 2400 bytes rounded up to 256
  EXPECT_EQ(cuda::attention_workspace_bytes(AttentionKind::Flash, a), 2560u);
  // dense: dP/dS of all 6 heads at once (6 x 100 x 70 fp32 = 168000, rounded up)
  EXPECT_EQ(cuda::attention_workspace_bytes(AttentionKind::Dense, a), 168192u);
  // naive: dQ [6][100][64] + dK, dV [6][70][64] fp32
  EXPECT_EQ(cuda::attention_workspace_bytes(AttentionKind::Naive, a), 153600u + 2 * 107520u);
}

TEST(CudaAttentionArgs, FewQueriesSplitLongKeyRanges) {
  // 2 query rows of 4096 keys: 32 splits of 128 keys; partial o [2][32][d] and lse [2][32]
  EXPECT_EQ(cuda::attention_workspace_bytes(AttentionKind::Flash, args(1, 2, 1, 4096, 64)),
            2u * 32 * 64 * 4 + 256);
  EXPECT_EQ(cuda::attention_workspace_bytes(AttentionKind::Flash, args(1, 2, 1, 4096, 50)),
            2u * 32 * 50 * 4 + 256);
  // ClimaX's aggregation: 16384 rows of nk = V keys need no split; only Dv for the backward
  EXPECT_EQ(cuda::attention_workspace_bytes(AttentionKind::Flash, args(4096, 4, 1, 92, 32)),
            16384u * 4);
  // few keys: at most ceil(nk / 128) splits, here one
  EXPECT_EQ(cuda::attention_workspace_bytes(AttentionKind::Flash, args(1, 1, 16, 100, 64)), 256u);
}

TEST(CudaAttentionArgs, FlashRefusesHeadDimAbove128) {
  const AttentionArgs a = args(1, 2, 64, 64, 160);
  const std::string e = error_of([&] { cuda::attention_forward(AttentionKind::Flash, a, nullptr); });
  EXPECT_NE(e.find("head_dim=160"), std::string::npos) << e;
  EXPECT_NE(e.find("128"), std::string::npos) << e;
  EXPECT_NE(error_of([&] { cuda::attention_workspace_bytes(AttentionKind::Flash, a); })
                .find("head_dim=160"),
            std::string::npos);
  // dense and naive take any head_dim
  EXPECT_EQ(cuda::attention_workspace_bytes(AttentionKind::Dense, a), 2u * 64 * 64 * 4);
}

TEST(CudaAttentionArgs, WorkspaceTooSmallNamesTheNeed) {
  AttentionArgs a = args(1, 2, 1, 4096, 64);  // needs 16384 + 256 bytes
  const std::string e = error_of([&] { cuda::attention_forward(AttentionKind::Flash, a, nullptr); });
  EXPECT_NE(e.find("workspace of 0 bytes is too small"), std::string::npos) << e;
  EXPECT_NE(e.find("16640"), std::string::npos) << e;
  a.workspace = g_fake;
  a.workspace_bytes = 16639;
  EXPECT_NE(error_of([&] { cuda::attention_forward(AttentionKind::Flash, a, nullptr); })
                .find("workspace of 16639 bytes"),
            std::string::npos);
  const AttentionArgs t = args(2, 3, 100, 70, 64);  // backward needs Dv
  EXPECT_NE(error_of([&] { cuda::attention_backward(AttentionKind::Flash, t, nullptr); })
                .find("attention backward: workspace of 0 bytes is too small"),
            std::string::npos);
}

TEST(CudaAttentionArgs, BadArgumentsAreNamed) {
  AttentionArgs a = args(1, 2, 8, 0, 32);
  EXPECT_NE(error_of([&] { cuda::attention_forward(AttentionKind::Naive, a, nullptr); })
                .find("nk=0"),
            std::string::npos);
  a = args(1, 2, 8, 8, 32);
  a.scale = 0.f;
  EXPECT_NE(error_of([&] { cuda::attention_forward(AttentionKind::Flash, a, nullptr); })
                .find("scale=0 must be positive"),
            std::string::npos);
  a = args(1, 2, 8, 8, 32);
  a.probs = nullptr;
  EXPECT_NE(error_of([&] { cuda::attention_forward(AttentionKind::Dense, a, nullptr); })
                .find("probs [batch, heads, nq, nk] must be set"),
            std::string::npos);
  a = args(1, 2, 8, 8, 32);
  a.dk.data = nullptr;
  EXPECT_NE(error_of([&] { cuda::attention_backward(AttentionKind::Dense, a, nullptr); })
                .find("dout, dq, dk and dv must be set"),
            std::string::npos);
  a = args(1, 2, 8, 8, 32);
  a.lse = nullptr;
  EXPECT_NE(error_of([&] { cuda::attention_forward(AttentionKind::Naive, a, nullptr); })
                .find("q, k, v, o and lse must be set"),
            std::string::npos);
}
