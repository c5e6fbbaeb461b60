// One forecast from a checkpoint (see predict.h).
#include "eval/predict.h"

#include "model/device_batch.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "data/cf_time.h"
#include "model/climax.h"

namespace seqvit::eval {

std::unique_ptr<data::ForecastDataset> prediction_dataset(const eval::ForecastCheckpoint& ckpt,
                                                          const std::vector<std::string>& paths,
                                                          double lead_hours) {
  data::ForecastConfig cfg = ckpt.data;
  if (!paths.empty()) cfg.paths = paths;
  cfg.lead_hours = {lead_hours > 0 ? lead_hours : ckpt.data.lead_hours.front()};
  use_checkpoint_statistics(ckpt, cfg);  // without the training period's data
  // Every time of the data is a candidate; the sample is then looked up by its input time, so
  // a time that is not there gets an error listing those that are.
  cfg.test = {"1000-01-01", "3000-01-01"};
  cfg.batch_size = 1;
  cfg.shuffle = false;
  cfg.prefetch = false;
  auto ds = std::make_unique<data::ForecastDataset>(cfg, data::Split::test);
  check_climatology_grid(ckpt, *ds);
  return ds;
}

int64_t find_sample(const data::ForecastDataset& ds, double time) {
  const int64_t n = ds.size();
  for (int64_t i = 0; i < n; ++i)
    if (std::abs(ds.sample_time(i) - time) < 0.5 / 3600.0) return i;  // same second
  const double lead = ds.config().lead_hours.front();
  // The nearest input times before and after.
  int64_t after = 0;
  while (after < n && ds.sample_time(after) < time) ++after;
  std::vector<std::string> near;
  if (after > 0) near.push_back(data::iso8601(ds.sample_time(after - 1)));
  if (after < n) near.push_back(data::iso8601(ds.sample_time(after)));
  fail(
      "no forecast from {} at lead {} h: the data have forecasts (input time with its target "
      "at +{} h) from {} to {} ({} input times{}); nearest: {}",
      data::iso8601(time), lead, lead, data::iso8601(ds.sample_time(0)),
      data::iso8601(ds.sample_time(n - 1)), n,
      ds.skipped_samples() ? fmt::format(", {} left out for missing values", ds.skipped_samples())
                           : "",
      fmt::join(near, ", "));
}

Prediction predict(const eval::ForecastCheckpoint& ckpt, const data::ForecastDataset& ds,
                   int64_t sample, backend::Device& device) {
  const auto& mc = ckpt.model;
  if (mc.img_h != ds.H() || mc.img_w != ds.W())
    fail("{}: the model is for a {}x{} grid but the data give {}x{} (coarsen {})", ckpt.path,
         mc.img_h, mc.img_w, ds.H(), ds.W(), ds.config().coarsen);
  if (mc.variables != ds.inputs() || mc.out_variables != ds.outputs())
    fail("{}: the model's variables ({} -> {}) differ from the dataset's ({} -> {})", ckpt.path,
         fmt::join(mc.variables, ","), fmt::join(mc.out_variables, ","),
         fmt::join(ds.inputs(), ","), fmt::join(ds.outputs(), ","));
  model::ClimaX m(mc, model::ModelShard{}, device);
  SEQVIT_CHECK(static_cast<int64_t>(ckpt.params.size()) == m.params().total(),
               "{}: {} parameters, the model has {}", ckpt.path, ckpt.params.size(),
               m.params().total());
  m.plan(1, model::Precision::F32);
  // weights, batch and forecast in device memory
  backend::Allocation params(device, ckpt.params.size() * sizeof(float));
  device.copy_to_device(params.get(), ckpt.params.data(), params.bytes());
  m.sync_weights(params.as<float>());
  const data::Batch b = ds.load({sample});
  model::DeviceBatch db(device, mc, 1);
  Prediction p;
  p.time = ds.sample_time(sample);
  p.lead_hours = ds.sample_lead(sample);
  p.H = ds.H(), p.W = ds.W();
  p.outputs = ds.outputs();
  p.forecast.resize(b.y.size());  // [1, Vo, H, W]
  backend::Allocation pred(device, p.forecast.size() * sizeof(float));
  m.forward(params.as<float>(), db.upload(b.view()), pred.as<float>());
  device.copy_to_host(p.forecast.data(), pred.get(), pred.bytes());
  p.truth = b.y;
  ds.denormalise_y(p.forecast.data(), 1);
  ds.denormalise_y(p.truth.data(), 1);
  return p;
}

}  // namespace seqvit::eval
