// The CPU backend's fused ops: the model's loss, embedding and aggregation-query pieces and the
// sequence-parallel copies and merges (backend/device.h documents each). Reductions keep the
// order and precision (double) the model used when it ran them itself, so results are
// bit-identical to it and independent of the thread count.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/cpu_device.h"
#include "core/latitude.h"

namespace seqvit::backend {

void CpuDevice::latitude_weights(const float* lat_deg, int64_t H, float* w) {
  exec([=, this] {
    seqvit::latitude_weights(tr(lat_deg, H, "latitude_weights"), H, tr(w, H, "latitude_weights"));
  });
}

void CpuDevice::weighted_mse(const WeightedMseArgs& a) {
  exec([=, this] {
    const char* op = "weighted_mse";
    const int64_t HW = a.H * a.W;
    const float* img = tr(a.img, a.B * a.V * HW, op);
    const float* y = tr(a.y, a.B * a.Vo * HW, op);
    const float* w = tr(a.wlat, a.H, op);
    float* dpred = tr(a.dpred, a.B * a.Vo * HW, op);
    float* pred = tr(a.pred, a.B * a.Vo * HW, op);
    double loss = 0;
    for (int64_t s = 0; s < a.B; ++s)
      for (int64_t o = 0; o < a.Vo; ++o) {
        const float* src = img + (s * a.V + a.out_index[o]) * HW;
        const float* ys = y + (s * a.Vo + o) * HW;
        float* dp = dpred + (s * a.Vo + o) * HW;
        if (pred) std::memcpy(pred + (s * a.Vo + o) * HW, src, sizeof(float) * HW);
        double acc = 0;
        for (int64_t i = 0; i < a.H; ++i) {
          double row = 0;
          for (int64_t j = 0; j < a.W; ++j) {
            const double e = static_cast<double>(src[i * a.W + j]) - ys[i * a.W + j];
            row += e * e;
            dp[i * a.W + j] = static_cast<float>(2.0 * w[i] * e / a.count);
          }
          acc += w[i] * row;
        }
        loss += acc;
      }
    *tr(a.loss_out, 1, op) = loss / a.count;
  });
}

void CpuDevice::shard_loss(const ShardLossArgs& a) {
  exec([=, this] {
    const char* op = "shard_loss";
    const int64_t p = a.p, pp = p * p, W = a.W, HW = a.H * W, V = a.V, gw = W / p,
                  Lp = (a.H / p) * gw;
    const int64_t outw = a.aggregate ? V * pp : pp;
    const float* head = tr(a.head_out, a.B * a.Nl * outw, op);
    const float* y = tr(a.y, a.B * a.Vo * HW, op);
    const float* w = tr(a.wlat, a.H, op);
    float* dhead = tr(a.dhead, a.B * a.Nl * outw, op);
    float* pred = tr(a.pred, a.B * a.Vo * HW, op);
    std::fill(dhead, dhead + a.B * a.Nl * outw, 0.f);  // variables that are not outputs: zero
    double loss = 0;
    for (int64_t s = 0; s < a.B; ++s)
      for (int64_t j = 0; j < a.Nl; ++j) {
        const int64_t n = a.n0 + j, l = a.aggregate ? n : n % Lp, gr = l / gw, gc = l % gw;
        const int64_t v_first = a.aggregate ? 0 : n / Lp, v_end = a.aggregate ? V : v_first + 1;
        const float* h = head + (s * a.Nl + j) * outw;
        float* dh = dhead + (s * a.Nl + j) * outw;
        for (int64_t v = v_first; v < v_end; ++v) {
          const int64_t o = a.out_slot[v];
          if (o < 0) continue;
          for (int64_t pr = 0; pr < p; ++pr)
            for (int64_t pc = 0; pc < p; ++pc) {
              const int64_t k = a.aggregate ? (pr * p + pc) * V + v : pr * p + pc;
              const int64_t row = gr * p + pr;
              const int64_t pix = (s * a.Vo + o) * HW + row * W + gc * p + pc;
              const double e = static_cast<double>(h[k]) - y[pix];
              loss += w[row] * e * e;
              dh[k] = static_cast<float>(2.0 * w[row] * e / a.count);
              if (pred) pred[pix] = h[k];
            }
        }
      }
    *tr(a.loss_out, 1, op) = loss / a.count;
  });
}

void CpuDevice::scatter_outputs(const float* dpred, float* dimg, const int64_t* out_index,
                                int64_t B, int64_t V, int64_t Vo, int64_t HW) {
  exec([=, this] {
    const float* src = tr(dpred, B * Vo * HW, "scatter_outputs");
    float* dst = tr(dimg, B * V * HW, "scatter_outputs");
    std::fill(dst, dst + B * V * HW, 0.f);
    for (int64_t s = 0; s < B; ++s)
      for (int64_t o = 0; o < Vo; ++o)
        std::memcpy(dst + (s * V + out_index[o]) * HW, src + (s * Vo + o) * HW, sizeof(float) * HW);
  });
}

void CpuDevice::add_position_time(float* x, const float* pos, const float* ltw, const float* ltb,
                                  const float* lead_hours, float* tscaled, int64_t B, int64_t Nl,
                                  int64_t D, int64_t Lp, int64_t n0) {
  exec([=, this] {
    const char* op = "add_position_time";
    float* xs = tr(x, B * Nl * D, op);
    const float* ps = tr(pos, Lp * D, op);
    const float* tw = tr(ltw, D, op);
    const float* tb = tr(ltb, D, op);
    const float* lead = tr(lead_hours, B, op);
    float* ts = tr(tscaled, B, op);
    for (int64_t s = 0; s < B; ++s) ts[s] = lead[s] / 100.f;
  #pragma omp parallel for collapse(2)
    for (int64_t s = 0; s < B; ++s)
      for (int64_t j = 0; j < Nl; ++j) {
        float* r = xs + (s * Nl + j) * D;
        const float* pr = ps + ((n0 + j) % Lp) * D;
        const float t = ts[s];
        for (int64_t k = 0; k < D; ++k) r[k] += pr[k] + (tw[k] * t + tb[k]);
      }
  });
}

void CpuDevice::add_position_time_backward(const float* dx, const float* tscaled, float* dpos,
                                           float* dltw, float* dltb, int64_t B, int64_t Nl,
                                           int64_t D, int64_t Lp, int64_t n0) {
  exec([=, this] {
    const char* op = "add_position_time_backward";
    const float* dx0 = tr(dx, B * Nl * D, op);
    const float* ts = tr(tscaled, B, op);
    float* dp = tr(dpos, Lp * D, op);
    float* dw = tr(dltw, D, op);
    float* db = tr(dltb, D, op);
  #pragma omp parallel for
    for (int64_t k = 0; k < D; ++k) {
      double tw = 0, tb = 0;
      for (int64_t s = 0; s < B; ++s) {
        double rs = 0;
        for (int64_t j = 0; j < Nl; ++j) rs += dx0[(s * Nl + j) * D + k];
        tw += rs * ts[s];
        tb += rs;
      }
      for (int64_t l = 0; l < Lp; ++l) {
        double acc = 0;  // tokens n = l (mod Lp) among [n0, n0 + Nl)
        const int64_t first = n0 + ((l - n0) % Lp + Lp) % Lp;
        for (int64_t s = 0; s < B; ++s)
          for (int64_t n = first; n < n0 + Nl; n += Lp) acc += dx0[(s * Nl + n - n0) * D + k];
        dp[l * D + k] += static_cast<float>(acc);
      }
      dw[k] += static_cast<float>(tw);
      db[k] += static_cast<float>(tb);
    }
  });
}

void CpuDevice::gemv_bias(const float* Wt, const float* x, const float* b, float* q, int64_t R,
                          int64_t C) {
  exec([=, this] {
    const char* op = "gemv_bias";
    const float* w = tr(Wt, R * C, op);
    const float* xs = tr(x, C, op);
    const float* bs = tr(b, R, op);
    float* qs = tr(q, R, op);
    for (int64_t j = 0; j < R; ++j) {
      double acc = bs[j];
      for (int64_t k = 0; k < C; ++k) acc += static_cast<double>(w[j * C + k]) * xs[k];
      qs[j] = static_cast<float>(acc);
    }
  });
}

void CpuDevice::gemv_bias_backward(const float* dq_rows, int64_t n, const float* Wt,
                                   const float* x, double* dq_sum, float* dW, float* db,
                                   float* dx, int64_t R, int64_t C) {
  exec([=, this] {
    const char* op = "gemv_bias_backward";
    const float* dqr = tr(dq_rows, n * R, op);
    const float* w = tr(Wt, R * C, op);
    const float* xs = tr(x, C, op);
    double* dq = tr(dq_sum, R, op);
    float* dw = tr(dW, R * C, op);
    float* dbs = tr(db, R, op);
    float* dxs = tr(dx, C, op);
    std::fill(dq, dq + R, 0.0);
    for (int64_t r = 0; r < n; ++r)
      for (int64_t j = 0; j < R; ++j) dq[j] += dqr[r * R + j];
    for (int64_t j = 0; j < R; ++j) {
      dbs[j] += static_cast<float>(dq[j]);
      for (int64_t k = 0; k < C; ++k) dw[j * C + k] += static_cast<float>(dq[j] * xs[k]);
    }
    for (int64_t k = 0; k < C; ++k) {
      double acc = 0;
      for (int64_t j = 0; j < R; ++j) acc += w[j * C + k] * dq[j];
      dxs[k] = static_cast<float>(acc);
    }
  });
}

void CpuDevice::merge_by_lse(const LseMerge& m) {
  exec([=, this] {
    const char* op = "merge_by_lse";
    const int64_t rows = m.nb * m.nh * m.ni;
    if (rows == 0) return;
    // extents: o up to its last addressed row, the contiguous arrays to their last row
    const int64_t bl = m.b0 + m.nb - 1, hl = m.h0 + m.nh - 1, tl = m.i0 + m.ni - 1;
    const StridedTensor o =
        CpuDevice::tr(m.o, bl * m.o.sb + tl * m.o.sn + hl * m.o.sh + m.d, op);
    const int64_t nlse = (bl * m.Hh + hl) * m.Nl + tl + 1;
    float* lse = tr(m.lse, nlse, op);
    const float* lse_in = tr(m.lse_in, nlse, op);
    const float* o_in = tr(m.o_in, ((bl * m.Nl + tl) * m.Hh + hl + 1) * m.d, op);
  #pragma omp parallel for schedule(static)
    for (int64_t y = 0; y < rows; ++y) {  // lse order [b][h][t]
      const int64_t b = m.b0 + y / (m.nh * m.ni), h = m.h0 + y % (m.nh * m.ni) / m.ni,
                    t = m.i0 + y % m.ni;
      const int64_t x = (b * m.Hh + h) * m.Nl + t;
      const float l1 = lse[x], l2 = lse_in[x], mx = std::max(l1, l2);
      const float l = mx + std::log1p(std::exp(-std::abs(l1 - l2)));
      const float w1 = std::exp(l1 - l), w2 = std::exp(l2 - l);
      float* out = o.data + b * o.sb + t * o.sn + h * o.sh;
      const float* in = o_in + ((b * m.Nl + t) * m.Hh + h) * m.d;
      for (int64_t c = 0; c < m.d; ++c) out[c] = w1 * out[c] + w2 * in[c];
      lse[x] = l;
    }
  });
}

void CpuDevice::block_copy(const BlockCopy& c) {
  exec([=, this] {
    const char* op = "block_copy";
    if (c.n0 <= 0 || c.n1 <= 0 || c.n2 <= 0 || c.run <= 0) return;
    const int64_t dext = (c.n0 - 1) * c.d0 + (c.n1 - 1) * c.d1 + (c.n2 - 1) * c.d2 + c.run;
    const int64_t sext = (c.n0 - 1) * c.s0 + (c.n1 - 1) * c.s1 + (c.n2 - 1) * c.s2 + c.run;
    float* dst = tr(c.dst, dext, op);
    const float* src = tr(c.src, sext, op);
    const int64_t jobs = c.n0 * c.n1;
  #pragma omp parallel for schedule(static)
    for (int64_t x = 0; x < jobs; ++x) {
      const int64_t i = x / c.n1, j = x % c.n1;
      for (int64_t k = 0; k < c.n2; ++k) {
        float* d = dst + i * c.d0 + j * c.d1 + k * c.d2;
        if (!src) {
          std::fill_n(d, c.run, 0.f);
          continue;
        }
        const float* s = src + i * c.s0 + j * c.s1 + k * c.s2;
        if (c.accumulate)
          for (int64_t e = 0; e < c.run; ++e) d[e] += s[e];
        else
          std::memcpy(d, s, sizeof(float) * c.run);
      }
    }
  });
}

}  // namespace seqvit::backend
