// The CUDA ops (run under the host emulation of fake/cuda_runtime.h) against the CPU backend,
// op by op; run by run.sh. Exact where the GPU result is meant to be bit-identical, else
// tolerances from docs/cuda.md.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "backend/cuda/ops.h"
#include "backend/device.h"
#include "core/bf16.h"

using namespace seqvit;
using namespace seqvit::backend;
using V = std::vector<float>;

namespace seqvit::backend::cuda {
void fail(cudaError_t, const char* op, const char*, std::initializer_list<int64_t>) {
  throw std::runtime_error(op);
}
}  // namespace seqvit::backend::cuda

static int failures = 0;
V rnd(size_t n, unsigned seed, float scale = 1.f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, scale);
  V v(n);
  for (auto& x : v) x = d(g);
  return v;
}
template <typename T>
void check(const char* name, const std::vector<T>& got, const std::vector<T>& want, double rtol,
           double atol = 0) {
  double worst = 0;
  size_t bad = 0, at = 0;
  if (got.size() != want.size()) { std::printf("FAIL %s size\n", name); ++failures; return; }
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], w = want[i];
    if (std::isnan(g) && std::isnan(w)) continue;
    if (g == w) continue;
    const double e = std::fabs(g - w);
    const double lim = rtol * std::fabs(w) + atol;
    if (!(e <= lim)) { ++bad; if (e > worst || std::isnan(e)) { worst = e; at = i; } }
  }
  if (bad) {
    ++failures;
    std::printf("FAIL %-32s %zu/%zu bad, worst |d|=%g at %zu (got %.9g want %.9g)\n", name, bad,
                got.size(), worst, at, (double)got[at], (double)want[at]);
  } else {
    std::printf("ok   %-32s (%zu values)\n", name, got.size());
  }
}

int main() {
  Device& cpu = backend::cpu();
  cudaStream_t st = nullptr;
  {  // bf16
    V x = rnd(3000, 1, 100.f);
    const float sp[] = {NAN, -NAN, INFINITY, -INFINITY, 1e-40f, -1e-41f, 3.3895e38f, 0.f, -0.f,
                        1.0f + 1.0f / 256, 1.0f + 3.0f / 256, 1.00390625f};
    for (float f : sp) x.push_back(f);
    std::vector<bf16> y(x.size());
    cuda::convert_to_bf16(x.data(), y.data(), x.size(), st);
    size_t bad = 0;
    for (size_t i = 0; i < x.size(); ++i) bad += y[i].bits != to_bf16(x[i]).bits;
    std::printf("%s convert_to_bf16 (%zu bad)\n", bad ? "FAIL" : "ok  ", bad);
    failures += bad != 0;
  }
  {  // broadcast, bias
    const int64_t T = 7, F = 37;
    V b = rnd(F, 2), y1(T * F), y2(T * F);
    cuda::broadcast_rows(y1.data(), b.data(), T, F, st);
    cpu.broadcast_rows(y2.data(), b.data(), T, F);
    check("broadcast_rows", y1, y2, 0);
    for (auto [TT, FF] : {std::pair<int64_t, int64_t>{1000, 37}, {5, 2050}, {0, 5}, {3, 1}}) {
      V dy = rnd(TT * FF, 3), d1 = rnd(FF, 4), d2 = d1;
      cuda::bias_backward(dy.data(), d1.data(), TT, FF, st);
      cpu.bias_backward(dy.data(), d2.data(), TT, FF);
      check("bias_backward", d1, d2, 1e-6, 1e-7);
    }
  }
  {  // adds, scale, sum_squares
    const int64_t n = 10000;
    V a = rnd(n, 5), b = rnd(n, 6), y1 = a, y2 = a, s1(n), s2(n);
    cuda::add_inplace(y1.data(), b.data(), n, st);
    cpu.add_inplace(y2.data(), b.data(), n);
    check("add_inplace", y1, y2, 0);
    cuda::add(a.data(), b.data(), s1.data(), n, st);
    cpu.add(a.data(), b.data(), s2.data(), n);
    check("add", s1, s2, 0);
    cuda::scale_inplace(s1.data(), 0.37f, n, st);
    cpu.scale_inplace(s2.data(), 0.37f, n);
    check("scale_inplace", s1, s2, 0);
    const int64_t ranges[] = {3, 500, 600, 0, 700, 9000, 9999, 1};
    std::vector<double> o1(1, 7.0), o2(1);
    cuda::sum_squares(a.data(), ranges, 4, o1.data(), st);
    cpu.sum_squares(a.data(), ranges, 4, o2.data());
    check("sum_squares", o1, o2, 1e-13);
    cuda::sum_squares(a.data(), ranges, 0, o1.data(), st);
    check("sum_squares (none)", o1, std::vector<double>{0.0}, 0);
  }
  {  // gelu
    V x = rnd(4000, 7, 3.f);
    for (float v = -14.f; v <= 14.f; v += 0.137f) x.push_back(v);
    for (float v : {0.f, -0.f, 30.f, -30.f, INFINITY, -INFINITY, NAN}) x.push_back(v);
    const int64_t n = x.size();
    V y1(n), y2(n), dy = rnd(n, 8), d1(n), d2(n);
    cuda::gelu_forward(x.data(), y1.data(), n, st);
    cpu.gelu_forward(x.data(), y2.data(), n);
    for (int64_t i = 0; i < n; ++i)  // -inf: GPU NaN, CPU may be -inf
      if (x[i] == -INFINITY) y1[i] = y2[i];
    check("gelu_forward", y1, y2, 1e-5, 1e-37);
    cuda::gelu_backward(x.data(), dy.data(), d1.data(), n, st);
    cpu.gelu_backward(x.data(), dy.data(), d2.data(), n);
    check("gelu_backward", d1, d2, 1e-5, 1e-6);
    V alias = dy;
    cuda::gelu_backward(x.data(), alias.data(), alias.data(), n, st);
    check("gelu_backward (in place)", alias, d1, 0);
  }
  {  // layernorm
    const int64_t T = 13, D = 77;
    V x = rnd(T * D, 9, 2.f), g = rnd(D, 10), be = rnd(D, 11), y1(T * D), y2(T * D), m1(T), m2(T),
      r1(T), r2(T);
    for (auto& v : x) v += 3.f;
    cuda::layernorm_forward(x.data(), g.data(), be.data(), y1.data(), m1.data(), r1.data(), T, D,
                            1e-5f, st);
    cpu.layernorm_forward(x.data(), g.data(), be.data(), y2.data(), m2.data(), r2.data(), T, D,
                          1e-5f);
    check("layernorm y", y1, y2, 1e-5, 1e-5);
    check("layernorm mean", m1, m2, 1e-6, 1e-6);
    check("layernorm rstd", r1, r2, 1e-5);
    for (bool acc : {false, true}) {
      V dy = rnd(T * D, 12), dx1 = rnd(T * D, 13), dx2 = dx1, dg1 = rnd(D, 14), dg2 = dg1,
        db1 = rnd(D, 15), db2 = db1;
      cuda::layernorm_backward(dy.data(), x.data(), g.data(), m2.data(), r2.data(), dx1.data(),
                               dg1.data(), db1.data(), T, D, acc, st);
      cpu.layernorm_backward(dy.data(), x.data(), g.data(), m2.data(), r2.data(), dx2.data(),
                             dg2.data(), db2.data(), T, D, acc);
      check(acc ? "layernorm dx (+=)" : "layernorm dx", dx1, dx2, 1e-5, 1e-5);
      check("layernorm dgamma", dg1, dg2, 1e-6, 1e-6);
      check("layernorm dbeta", db1, db2, 1e-6, 1e-6);
    }
    V dy = rnd(T * D, 12), dg = V(D), db = V(D), dg2 = V(D), db2 = V(D), want(T * D);
    cpu.layernorm_backward(dy.data(), x.data(), g.data(), m2.data(), r2.data(), want.data(),
                           dg2.data(), db2.data(), T, D, false);
    cuda::layernorm_backward(dy.data(), x.data(), g.data(), m2.data(), r2.data(), dy.data(),
                             dg.data(), db.data(), T, D, false, st);
    check("layernorm dx aliasing dy", dy, want, 1e-5, 1e-5);
    check("layernorm dgamma (alias)", dg, dg2, 1e-6, 1e-6);
  }
  {  // softmax
    const int64_t T = 9, F = 45;
    V x = rnd(T * F, 16, 3.f), y1(T * F), y2(T * F), l1(T), l2(T);
    cuda::softmax_forward(x.data(), y1.data(), T, F, l1.data(), st);
    cpu.softmax_forward(x.data(), y2.data(), T, F, l2.data());
    check("softmax y", y1, y2, 1e-5, 1e-8);
    check("softmax lse", l1, l2, 1e-6, 1e-6);
    V inplace = x;
    cuda::softmax_forward(inplace.data(), inplace.data(), T, F, nullptr, st);
    check("softmax in place", inplace, y1, 0);
    V dy = rnd(T * F, 17), d1(T * F), d2(T * F);
    cuda::softmax_backward(y2.data(), dy.data(), d1.data(), T, F, st);
    cpu.softmax_backward(y2.data(), dy.data(), d2.data(), T, F);
    check("softmax dx", d1, d2, 1e-5, 1e-7);
  }
  {  // patches
    const int64_t B = 2, Vv = 3, H = 6, W = 8, p = 2, n = B * Vv * H * W;
    V x = rnd(n, 18), a1(n), a2(n), b1(n), b2(n);
    cuda::patchify(x.data(), a1.data(), B, Vv, H, W, p, st);
    cpu.patchify(x.data(), a2.data(), B, Vv, H, W, p);
    check("patchify", a1, a2, 0);
    cuda::unpatchify_vmajor(x.data(), b1.data(), B, Vv, H, W, p, st);
    cpu.unpatchify_vmajor(x.data(), b2.data(), B, Vv, H, W, p);
    check("unpatchify_vmajor", b1, b2, 0);
    cuda::patchify_channels_last(x.data(), a1.data(), B, Vv, H, W, p, st);
    cpu.patchify_channels_last(x.data(), a2.data(), B, Vv, H, W, p);
    check("patchify_channels_last", a1, a2, 0);
    cuda::unpatchify_channels_last(x.data(), b1.data(), B, Vv, H, W, p, st);
    cpu.unpatchify_channels_last(x.data(), b2.data(), B, Vv, H, W, p);
    check("unpatchify_channels_last", b1, b2, 0);
    try {
      cuda::patchify(x.data(), a1.data(), B, Vv, H, W, 4, st);
      std::printf("FAIL patchify p=4 did not throw\n");
      ++failures;
    } catch (const std::exception& e) {
      std::printf("ok   patchify p=4 throws: %s\n", e.what());
    }
  }
  {  // merge and block copies (BackendOpsTest's case)
    const int64_t Bt = 2, Hh = 3, Nl = 11, dh = 8, n = Bt * Nl * Hh * dh;
    V o1 = rnd(n, 14), o2 = o1, lse1 = rnd(Bt * Hh * Nl, 15), lse2 = lse1, oin = rnd(n, 16),
      lin = rnd(Bt * Hh * Nl, 17);
    lse1[(1 * Hh + 1) * Nl + 4] = lse2[(1 * Hh + 1) * Nl + 4] = -INFINITY;  // one side empty
    lin[(1 * Hh + 2) * Nl + 5] = -INFINITY;
    LseMerge m;
    m.o = {o1.data(), Nl * Hh * dh, Hh * dh, dh};
    m.lse = lse1.data();
    m.o_in = oin.data();
    m.lse_in = lin.data();
    m.Hh = Hh, m.Nl = Nl, m.d = dh;
    m.b0 = 1, m.nb = 1, m.h0 = 1, m.nh = 2, m.i0 = 3, m.ni = 7;
    cuda::merge_by_lse(m, st);
    m.o.data = o2.data();
    m.lse = lse2.data();
    cpu.merge_by_lse(m);
    check("merge_by_lse o", o1, o2, 1e-6, 1e-7);
    check("merge_by_lse lse", lse1, lse2, 1e-6, 1e-7);
    // both -inf: untouched
    V o3 = o1, l3 = lse1, li3 = lin;
    const int64_t x = (1 * Hh + 1) * Nl + 6;
    l3[x] = li3[x] = -INFINITY;
    V o3b = o3;
    m.o.data = o3.data();
    m.lse = l3.data();
    m.lse_in = li3.data();
    cuda::merge_by_lse(m, st);
    bool same = l3[x] == -INFINITY;
    for (int64_t c = 0; c < dh; ++c) {
      const int64_t at = 1 * Nl * Hh * dh + 6 * Hh * dh + 1 * dh + c;
      same = same && o3[at] == o3b[at];
    }
    std::printf("%s merge_by_lse both -inf row untouched\n", same ? "ok  " : "FAIL");
    failures += !same;

    V dst1 = rnd(n, 18), dst2 = dst1, src = rnd(n, 19);
    BlockCopy c;
    c.src = src.data();
    c.n0 = Bt, c.n1 = Nl, c.n2 = Hh, c.run = dh - 1;
    c.d0 = Nl * Hh * dh, c.d1 = Hh * dh, c.d2 = dh;
    c.s0 = Nl * Hh * dh, c.s1 = dh, c.s2 = Nl * dh;
    for (int mode = 0; mode < 3; ++mode) {
      c.accumulate = mode == 1;
      if (mode == 2) c.src = nullptr, c.n0 = 1;
      c.dst = dst1.data();
      cuda::block_copy(c, st);
      c.dst = dst2.data();
      cpu.block_copy(c);
      check(mode == 0 ? "block_copy" : mode == 1 ? "block_copy +=" : "block_copy zero", dst1,
            dst2, 0);
    }
  }
  {  // fused (BackendOpsTest's case)
    const int64_t B = 2, Vv = 3, Vo = 2, H = 6, W = 8, p = 2, HW = H * W, Lp = (H / p) * (W / p);
    const std::vector<int64_t> out_index = {2, 0}, out_slot = {1, -1, 0};
    V lat(H);
    for (int64_t i = 0; i < H; ++i) lat[i] = static_cast<float>(-75 + 30 * i);
    V w1(H), w2(H);
    cuda::latitude_weights(lat.data(), H, w1.data(), st);
    cpu.latitude_weights(lat.data(), H, w2.data());
    check("latitude_weights", w1, w2, 1e-7);
    V bad = {90.f, 90.f, -90.f, 100.f}, wn(4);
    cuda::latitude_weights(bad.data(), 4, wn.data(), st);
    std::printf("%s latitude_weights non-positive mean -> NaN (%g)\n",
                std::isnan(wn[0]) ? "ok  " : "FAIL", wn[0]);
    failures += !std::isnan(wn[0]);
    V y = rnd(B * Vo * HW, 20), img = rnd(B * Vv * HW, 21);
    WeightedMseArgs m;
    m.img = img.data();
    m.y = y.data();
    m.wlat = w2.data();
    m.out_index = out_index.data();
    m.B = B, m.V = Vv, m.Vo = Vo, m.H = H, m.W = W;
    m.count = static_cast<double>(B * Vo * HW);
    std::vector<double> L1(1, 5.0), L2(1);
    V dp1(B * Vo * HW), dp2(B * Vo * HW), pr1(B * Vo * HW), pr2(B * Vo * HW);
    m.loss_out = L1.data(), m.dpred = dp1.data(), m.pred = pr1.data();
    cuda::weighted_mse(m, st);
    m.loss_out = L2.data(), m.dpred = dp2.data(), m.pred = pr2.data();
    cpu.weighted_mse(m);
    check("weighted_mse loss", L1, L2, 1e-13);
    check("weighted_mse dpred", dp1, dp2, 0);
    check("weighted_mse pred", pr1, pr2, 0);
    V di1 = rnd(B * Vv * HW, 22), di2 = di1;
    cuda::scatter_outputs(dp2.data(), di1.data(), out_index.data(), B, Vv, Vo, HW, st);
    cpu.scatter_outputs(dp2.data(), di2.data(), out_index.data(), B, Vv, Vo, HW);
    check("scatter_outputs", di1, di2, 0);
    for (bool agg : {true, false}) {
      const int64_t Nl = agg ? 5 : 7, n0 = agg ? 6 : 17, outw = agg ? Vv * p * p : p * p;
      ShardLossArgs s;
      V head = rnd(B * Nl * outw, 23);
      s.head_out = head.data();
      s.y = y.data();
      s.wlat = w2.data();
      s.out_slot = out_slot.data();
      s.aggregate = agg;
      s.B = B, s.V = Vv, s.Vo = Vo, s.H = H, s.W = W, s.p = p, s.Nl = Nl, s.n0 = n0;
      s.count = m.count;
      std::vector<double> S1(1, 3.0), S2(1);
      V dh1 = rnd(B * Nl * outw, 1), dh2 = dh1, p1(B * Vo * HW), p2(B * Vo * HW);
      s.loss_out = S1.data(), s.dhead = dh1.data(), s.pred = p1.data();
      cuda::shard_loss(s, st);
      s.loss_out = S2.data(), s.dhead = dh2.data(), s.pred = p2.data();
      cpu.shard_loss(s);
      check(agg ? "shard_loss loss (agg)" : "shard_loss loss (pv)", S1, S2, 1e-13);
      check("shard_loss dhead", dh1, dh2, 0);
      check("shard_loss pred", p1, p2, 0);
      const int64_t E = 10;
      V x1 = rnd(B * Nl * E, 24), x2 = x1, pos = rnd(Lp * E, 25), ltw = rnd(E, 26),
        ltb = rnd(E, 27), lead = {6.f, 72.f}, ts1(B), ts2(B);
      cuda::add_position_time(x1.data(), pos.data(), ltw.data(), ltb.data(), lead.data(),
                              ts1.data(), B, Nl, E, Lp, n0 % Lp, st);
      cpu.add_position_time(x2.data(), pos.data(), ltw.data(), ltb.data(), lead.data(),
                            ts2.data(), B, Nl, E, Lp, n0 % Lp);
      check("add_position_time x", x1, x2, 0);
      check("add_position_time ts", ts1, ts2, 0);
      V dpos1 = rnd(Lp * E, 28), dpos2 = dpos1, dw1(E), dw2(E), db1(E), db2(E);
      cuda::add_position_time_backward(x2.data(), ts2.data(), dpos1.data(), dw1.data(),
                                       db1.data(), B, Nl, E, Lp, n0 % Lp, st);
      cpu.add_position_time_backward(x2.data(), ts2.data(), dpos2.data(), dw2.data(), db2.data(),
                                     B, Nl, E, Lp, n0 % Lp);
      check("add_position_time_backward dpos", dpos1, dpos2, 0);
      check("add_position_time_backward dltw", dw1, dw2, 1e-6);
      check("add_position_time_backward dltb", db1, db2, 1e-6);
    }
    const int64_t R = 9, C = 14, n = 6;
    V Wt = rnd(R * C, 29), xv = rnd(C, 30), bv = rnd(R, 31), q1(R), q2(R);
    cuda::gemv_bias(Wt.data(), xv.data(), bv.data(), q1.data(), R, C, st);
    cpu.gemv_bias(Wt.data(), xv.data(), bv.data(), q2.data(), R, C);
    check("gemv_bias", q1, q2, 1e-7);
    std::vector<double> dq1(R), dq2(R);
    V dW1 = rnd(R * C, 32), dW2 = dW1, db1 = rnd(R, 33), db2 = db1, dx1(C), dx2(C),
      rows = rnd(n * R, 34);
    cuda::gemv_bias_backward(rows.data(), n, Wt.data(), xv.data(), dq1.data(), dW1.data(),
                             db1.data(), dx1.data(), R, C, st);
    cpu.gemv_bias_backward(rows.data(), n, Wt.data(), xv.data(), dq2.data(), dW2.data(),
                           db2.data(), dx2.data(), R, C);
    check("gemv_bias_backward dq_sum", dq1, dq2, 1e-14);
    check("gemv_bias_backward dW", dW1, dW2, 1e-7);
    check("gemv_bias_backward db", db1, db2, 1e-7);
    check("gemv_bias_backward dx", dx1, dx2, 1e-7);
  }
  {  // adamw (BackendOpsTest's case)
    const int64_t n = 300;
    V p1 = rnd(n, 35), g1 = rnd(n, 36), m1 = rnd(n - 20, 37, 0.1f), v1 = rnd(n - 20, 38, 0.1f);
    for (auto& x : v1) x = x * x;
    V p2 = p1, g2 = g1, m2 = m1, v2 = v1;
    const AdamSegment segs[] = {{20, 100, true}, {130, 170, false}};
    AdamArgs a;
    a.state_first = 20;
    a.segments = segs, a.num_segments = 2;
    a.lr = 1e-3f, a.beta1 = 0.9f, a.beta2 = 0.95f, a.eps = 1e-8f, a.weight_decay = 0.05f;
    a.step = 3;
    a.grad_scale = 0.37f;
    a.p = p1.data(), a.g = g1.data(), a.m = m1.data(), a.v = v1.data();
    cuda::adamw(a, st);
    a.p = p2.data(), a.g = g2.data(), a.m = m2.data(), a.v = v2.data();
    cpu.adamw(a);
    check("adamw p", p1, p2, 0);
    check("adamw g", g1, g2, 0);
    check("adamw m", m1, m2, 0);
    check("adamw v", v1, v2, 0);
    a.step = 0;
    try {
      cuda::adamw(a, st);
      ++failures;
      std::printf("FAIL adamw step 0 did not throw\n");
    } catch (const std::exception& e) {
      std::printf("ok   adamw step=0 throws: %s\n", e.what());
    }
  }
  {  // many chunks: the round-robin wraps past the 1024 blocks; the widest column tile
    const int64_t n = 5'300'000;
    V x = rnd(n, 40), p1 = rnd(n, 41), g1 = rnd(n, 42), m1 = rnd(n, 43, 0.1f), v1(n, 0.01f);
    const int64_t ranges[] = {0, 1'000'003, 1'000'010, 4'000'000, 5'000'100, 299'900};
    std::vector<double> o1(1), o2(1);
    cuda::sum_squares(x.data(), ranges, 3, o1.data(), st);
    cpu.sum_squares(x.data(), ranges, 3, o2.data());
    check("sum_squares (wrapping chunks)", o1, o2, 1e-13);
    V p2 = p1, g2 = g1, m2 = m1, v2 = v1;
    const AdamSegment segs[] = {{0, 1'000'003, true}, {1'000'010, 4'000'000, false},
                                {5'000'100, 299'900, true}};
    AdamArgs a;
    a.state_first = 0;
    a.segments = segs, a.num_segments = 3;
    a.lr = 1e-3f, a.beta1 = 0.9f, a.beta2 = 0.95f, a.eps = 1e-8f, a.weight_decay = 0.05f;
    a.step = 7;
    a.grad_scale = 1.f;
    a.p = p1.data(), a.g = g1.data(), a.m = m1.data(), a.v = v1.data();
    cuda::adamw(a, st);
    a.p = p2.data(), a.g = g2.data(), a.m = m2.data(), a.v = v2.data();
    cpu.adamw(a);
    check("adamw (wrapping chunks) p", p1, p2, 0);
    check("adamw (wrapping chunks) m", m1, m2, 0);
    const int64_t T = 3, F = 8200;
    V dy = rnd(T * F, 44), d1 = rnd(F, 45), d2 = d1;
    cuda::bias_backward(dy.data(), d1.data(), T, F, st);
    cpu.bias_backward(dy.data(), d2.data(), T, F);
    check("bias_backward (TX=32)", d1, d2, 1e-6, 1e-7);
  }
  std::printf("%d failures, %ld emulated launches\n", failures, emu::launches);
  return failures != 0;
}
