// Shared by the tests that run the whole model on a device and compare it with the CPU backend
// (GuardedClimaXTest, CudaClimaXTest): two forward/backward passes of the model on one random
// batch, everything in device memory, and what a comparison reads back.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/device.h"
#include "model/climax.h"
#include "model/device_batch.h"
#include "model/model_batch.h"

namespace seqvit_test {

struct DeviceRun {
  double loss = 0;
  std::vector<float> pred, grads;  // [B, Vo, H, W] and the gradient table, on the host
};

inline DeviceRun run_on_device(seqvit::backend::Device& dev, const seqvit::model::ModelConfig& c,
                               seqvit::model::Precision prec, bool recompute) {
  using namespace seqvit;
  model::ClimaX m(c, {}, dev);
  m.set_recompute(recompute);
  const int64_t B = 2, n = m.params().total();
  const int64_t pred_n = B * c.Vo() * c.img_h * c.img_w;
  std::vector<float> host(n);
  m.init(host.data(), 5);
  backend::Allocation P(dev, sizeof(float) * n), G(dev, sizeof(float) * n),
      pred(dev, sizeof(float) * pred_n);
  dev.copy_to_device(P.get(), host.data(), sizeof(float) * n);
  m.plan(B, prec);
  m.sync_weights(P.as<float>());
  RandomBatch data(c, B);
  model::DeviceBatch batch(dev, c, B);
  DeviceRun r;
  for (int step = 0; step < 2; ++step) {  // twice: state left by a step must not matter
    dev.zero(G.get(), G.bytes());
    r.loss = m.forward(P.as<float>(), batch.upload(data.batch(7)), pred.as<float>());
    m.backward(P.as<float>(), G.as<float>());
  }
  r.pred.resize(pred_n);
  r.grads.resize(n);
  dev.copy_to_host(r.pred.data(), pred.get(), pred.bytes());
  dev.copy_to_host(r.grads.data(), G.get(), G.bytes());
  return r;
}

}  // namespace seqvit_test
