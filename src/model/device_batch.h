// A batch's home in device memory: planned once for up to max_batch samples, filled from a
// host batch by upload() (which enqueues copies; the host batch may be reused when it
// returns). What the trainer and the commands hand to ClimaX::forward.
#pragma once

#include "backend/device.h"
#include "model/climax.h"

namespace seqvit::model {

class DeviceBatch {
 public:
  DeviceBatch(backend::Device& dev, const ModelConfig& cfg, int64_t max_batch);
  // The device copy of `host` (host.B <= max_batch). lat is copied only when it changed.
  BatchView upload(const BatchView& host);
  int64_t max_batch() const { return max_batch_; }

 private:
  backend::Device& dev_;
  int64_t max_batch_, vhw_, vohw_, h_;
  backend::DeviceArray<float> x_, y_, lead_, lat_;
  backend::Arena arena_;
  std::vector<float> last_lat_;  // host copy of the uploaded latitudes
};

}  // namespace seqvit::model
