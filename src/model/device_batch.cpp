#include "model/device_batch.h"

#include <algorithm>

#include "core/check.h"

namespace seqvit::model {

DeviceBatch::DeviceBatch(backend::Device& dev, const ModelConfig& cfg, int64_t max_batch)
    : dev_(dev), max_batch_(max_batch), vhw_(cfg.V() * cfg.img_h * cfg.img_w),
      vohw_(cfg.Vo() * cfg.img_h * cfg.img_w), h_(cfg.img_h) {
  SEQVIT_CHECK(max_batch >= 1, "batch size must be >= 1, got {}", max_batch);
  arena_.request(x_, max_batch * vhw_);
  arena_.request(y_, max_batch * vohw_);
  arena_.request(lead_, max_batch);
  arena_.request(lat_, h_);
  arena_.commit(dev);
}

BatchView DeviceBatch::upload(const BatchView& host) {
  SEQVIT_CHECK(host.B >= 1 && host.B <= max_batch_,
               "batch of {} samples, but device memory was planned for at most {}", host.B,
               max_batch_);
  if (host.x) dev_.copy_to_device(x_.data(), host.x, sizeof(float) * host.B * vhw_);
  if (host.y) dev_.copy_to_device(y_.data(), host.y, sizeof(float) * host.B * vohw_);
  if (host.lead_times)
    dev_.copy_to_device(lead_.data(), host.lead_times, sizeof(float) * host.B);
  if (host.lat && (last_lat_.empty() || !std::equal(last_lat_.begin(), last_lat_.end(), host.lat))) {
    last_lat_.assign(host.lat, host.lat + h_);  // (first upload only: not in the step loop)
    dev_.copy_to_device(lat_.data(), host.lat, sizeof(float) * h_);
  }
  return {host.B, host.x ? x_.data() : nullptr, host.y ? y_.data() : nullptr,
          host.lead_times ? lead_.data() : nullptr, host.lat ? lat_.data() : nullptr,
          host.first_sample};
}

}  // namespace seqvit::model
