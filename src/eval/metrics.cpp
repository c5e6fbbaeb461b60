// Forecast scores (see metrics.h).
#include "eval/metrics.h"

#include <fmt/core.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>

#include "core/latitude.h"
#include "core/check.h"
#include "model/device_batch.h"

namespace seqvit::eval {

MetricAccumulator::MetricAccumulator(const float* lat_deg, int64_t H, int64_t W)
    : H_(H), W_(W), w_(static_cast<size_t>(H)) {
  const auto w = latitude_weights(lat_deg, H);
  for (int64_t i = 0; i < H; ++i) w_[i] = w[i];
}

void MetricAccumulator::set_sums(const std::array<double, kSums>& s) {
  mse_sum_ = s[0];
  rmse_sum_ = s[1];
  acc_sum_ = s[2];
  n_ = std::llround(s[3]);
}

void MetricAccumulator::add(const float* pred, const float* truth, const float* clim) {
  // A pixel is left out when its truth or climatology is missing (NaN): missing data. A NaN in
  // the prediction at a pixel that counts is the forecast's fault, not the data's: it makes this
  // forecast's scores NaN, so a diverged model can never look good by dropping pixels.
  double sw = 0, se = 0, sp = 0, so = 0, s2 = 0;
  for (int64_t i = 0; i < H_; ++i)
    for (int64_t j = 0; j < W_; ++j) {
      const int64_t k = i * W_ + j;
      if (std::isnan(truth[k]) || std::isnan(clim[k])) continue;
      const double e = static_cast<double>(pred[k]) - truth[k];
      const double pa = static_cast<double>(pred[k]) - clim[k];
      sw += w_[i];
      se += w_[i] * e * e;
      sp += w_[i] * pa;
      so += w_[i] * (static_cast<double>(truth[k]) - clim[k]);
      s2 += w_[i] * (static_cast<double>(pred[k]) * pred[k] +
                     static_cast<double>(truth[k]) * truth[k] +
                     static_cast<double>(clim[k]) * clim[k]);
    }
  if (sw <= 0) return;  // nothing valid in this forecast
  const double mp = sp / sw, mo = so / sw;
  double spo = 0, spp = 0, soo = 0;
  for (int64_t i = 0; i < H_; ++i)
    for (int64_t j = 0; j < W_; ++j) {
      const int64_t k = i * W_ + j;
      if (std::isnan(truth[k]) || std::isnan(clim[k])) continue;
      const double p = static_cast<double>(pred[k]) - clim[k] - mp;
      const double o = static_cast<double>(truth[k]) - clim[k] - mo;
      spo += w_[i] * p * o;
      spp += w_[i] * p * p;
      soo += w_[i] * o * o;
    }
  mse_sum_ += se / sw;  // MSE_t
  rmse_sum_ += std::sqrt(se / sw);
  // An anomaly that is constant over the globe (the climatology forecast itself, or climatology
  // plus an offset) has no spatial pattern to correlate: ACC = 0 by convention. "Constant" up to
  // float rounding of the fields: values are float (relative rounding 6e-8), so a centred anomaly
  // whose rms is below 1e-6 of the fields' rms is rounding noise, and correlating noise would
  // give an arbitrary ACC in [-1, 1].
  const double tiny = 1e-12 * s2;  // sw * (1e-6 * rms of pred, truth and clim together)^2
  const bool flat = spp <= tiny || soo <= tiny;
  if (std::isnan(spo + spp)) acc_sum_ += spo + spp;  // NaN prediction: NaN ACC
  else if (!flat) acc_sum_ += spo / std::sqrt(spp * soo);
  ++n_;
}

std::vector<Scores> evaluate(model::ClimaX& model, const float* params,
                             data::ForecastDataset& ds, int64_t max_batches,
                             const Progress& progress, const EvalParallel* par) {
  const auto& mc = model.config();
  const int64_t H = ds.H(), W = ds.W(), HW = H * W, V = mc.V(), Vo = mc.Vo();
  if (mc.img_h != H || mc.img_w != W)
    fail("evaluate: the model is for a {}x{} grid, the data is {}x{}", mc.img_h, mc.img_w, H, W);
  if (mc.variables != ds.inputs() || mc.out_variables != ds.outputs())
    fail("evaluate: the model maps {} -> {}, the dataset gives {} -> {}",
         fmt::join(mc.variables, ","), fmt::join(mc.out_variables, ","),
         fmt::join(ds.inputs(), ","), fmt::join(ds.outputs(), ","));
  // Units now: the files are not to be touched while the epoch below is being prefetched.
  std::vector<std::string> units;
  for (const auto& name : mc.out_variables)
    units.push_back(ds.source().variable(ds.field_ref(name).variable).units);
  // Where each output sits among the inputs (persistence), -1 if it is not an input.
  std::vector<int64_t> in_of(static_cast<size_t>(Vo), -1);
  for (int64_t o = 0; o < Vo; ++o)
    for (int64_t v = 0; v < V; ++v)
      if (mc.variables[v] == mc.out_variables[o]) in_of[o] = v;

  struct Acc {
    MetricAccumulator model, pers, clim;
  };
  std::map<std::pair<int64_t, int64_t>, Acc> acc;  // (output, lead in seconds) -> scores
  std::vector<float> pred, truth(static_cast<size_t>(HW)), pers(static_cast<size_t>(HW));
  // the model's batches and forecasts in device memory (not needed when a hook runs the forward)
  const bool hook = par && par->forward;
  backend::Device& dev = model.device();
  std::optional<model::DeviceBatch> dbatch;
  backend::Allocation dpred;
  if (!hook) {
    dbatch.emplace(dev, mc, model.max_batch());
    dpred = backend::Allocation(dev, static_cast<size_t>(model.max_batch() * Vo * HW) *
                                         sizeof(float));
  }
  data::Batch b;
  ds.start_epoch(0);
  int64_t batches = 0;
  const int64_t total =
      max_batches > 0 ? std::min(max_batches, ds.num_batches()) : ds.num_batches();
  // Every (output, lead) scored, from the samples of the batches evaluated (all shards), so that
  // every rank of a sharded evaluation holds the same accumulators in the same order.
  {
    const auto order = ds.epoch_order(0);
    const int64_t n = std::min<int64_t>(ds.size(), total * ds.config().batch_size);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t o = 0; o < Vo; ++o)
        acc.try_emplace(std::make_pair(o, std::llround(ds.sample_lead(order[i]) * 3600.0)),
                        Acc{MetricAccumulator(ds.lat().data(), H, W),
                            MetricAccumulator(ds.lat().data(), H, W),
                            MetricAccumulator(ds.lat().data(), H, W)});
  }
  while ((max_batches <= 0 || batches < max_batches) && ds.next(b)) {
    ++batches;
    if (!hook && b.B > model.max_batch())
      fail("evaluate: batch of {} samples but the model is planned for {}", b.B,
           model.max_batch());
    if (b.B > 0) {
      pred.assign(static_cast<size_t>(b.B * Vo * HW), 0.0f);
      if (hook) {
        par->forward(b.view(), pred.data());
      } else {
        const size_t bytes = pred.size() * sizeof(float);
        dev.zero(dpred.get(), bytes);  // under SP the forward writes this rank's pixels only
        model.forward(params, dbatch->upload(b.view()), dpred.as<float>());
        dev.copy_to_host(pred.data(), dpred.get(), bytes);
      }
      if (par && par->complete_pred) par->complete_pred(pred.data(), b.B * Vo * HW);
    }
    for (int64_t s = 0; s < b.B; ++s)
      for (int64_t o = 0; o < Vo; ++o) {
        const std::string& name = mc.out_variables[o];
        const auto key = std::make_pair(o, std::llround(b.lead_times[s] * 3600.0));
        auto it = acc.find(key);
        if (it == acc.end())
          fail("evaluate: internal error: sample lead {} h not among the dataset's leads",
               b.lead_times[s]);
        float* p = pred.data() + (s * Vo + o) * HW;
        ds.denormalise(name, p, HW);
        std::copy_n(b.y.data() + (s * Vo + o) * HW, HW, truth.data());
        ds.denormalise(name, truth.data(), HW);
        const auto& clim = ds.climatology(name);
        it->second.model.add(p, truth.data(), clim.data());
        it->second.clim.add(clim.data(), truth.data(), clim.data());
        if (in_of[o] >= 0) {
          std::copy_n(b.x.data() + (s * V + in_of[o]) * HW, HW, pers.data());
          ds.denormalise(mc.variables[in_of[o]], pers.data(), HW);
          it->second.pers.add(pers.data(), truth.data(), clim.data());
        }
      }
    if (progress) progress(batches, total);
  }
  if (par && par->sum_over_shards) {
    std::vector<double> sums;
    for (const auto& [key, a] : acc)
      for (const auto* m : {&a.model, &a.pers, &a.clim})
        for (double v : m->sums()) sums.push_back(v);
    par->sum_over_shards(sums.data(), static_cast<int64_t>(sums.size()));
    size_t k = 0;
    for (auto& [key, a] : acc)
      for (auto* m : {&a.model, &a.pers, &a.clim}) {
        std::array<double, MetricAccumulator::kSums> s{};
        std::copy_n(sums.begin() + static_cast<std::ptrdiff_t>(k), s.size(), s.begin());
        m->set_sums(s);
        k += s.size();
      }
  }
  std::vector<Scores> out;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (const auto& [key, a] : acc) {
    Scores s;
    s.variable = mc.out_variables[key.first];
    s.units = units[key.first];
    s.lead_hours = static_cast<double>(key.second) / 3600.0;
    s.forecasts = a.model.count();
    s.rmse_wb2 = a.model.rmse_wb2();
    s.rmse_mean_per_forecast = a.model.rmse_mean_per_forecast();
    s.acc = a.model.acc();
    const bool has_p = in_of[key.first] >= 0;
    s.rmse_wb2_persistence = has_p ? a.pers.rmse_wb2() : nan;
    s.rmse_mean_per_forecast_persistence = has_p ? a.pers.rmse_mean_per_forecast() : nan;
    s.acc_persistence = has_p ? a.pers.acc() : nan;
    s.rmse_wb2_climatology = a.clim.rmse_wb2();
    s.rmse_mean_per_forecast_climatology = a.clim.rmse_mean_per_forecast();
    s.acc_climatology = a.clim.acc();
    out.push_back(s);
  }
  return out;
}

namespace {
// The scores of s in the order of score_keys().
std::vector<double> score_values(const Scores& s) {
  return {s.rmse_wb2,
          s.rmse_mean_per_forecast,
          s.acc,
          s.rmse_wb2_persistence,
          s.rmse_mean_per_forecast_persistence,
          s.acc_persistence,
          s.rmse_wb2_climatology,
          s.rmse_mean_per_forecast_climatology,
          s.acc_climatology};
}
}  // namespace

const std::vector<std::string>& score_keys() {
  static const std::vector<std::string> keys = {"rmse_wb2",
                                                "rmse_mean_per_forecast",
                                                "acc",
                                                "rmse_wb2_persistence",
                                                "rmse_mean_per_forecast_persistence",
                                                "acc_persistence",
                                                "rmse_wb2_climatology",
                                                "rmse_mean_per_forecast_climatology",
                                                "acc_climatology"};
  return keys;
}

std::string format_scores_table(const std::vector<Scores>& scores) {
  auto g = [](double v) { return std::isfinite(v) ? fmt::format("{:.5g}", v) : std::string("-"); };
  auto f = [](double v) { return std::isfinite(v) ? fmt::format("{:.4f}", v) : std::string("-"); };
  // Two header lines: which score (the same names as the JSON keys and CSV columns), then which
  // forecast.
  std::string t = fmt::format("{:<12} {:>6} {:>6} {:>11} | {:^32} | {:^32} | {:^23}", "", "", "",
                              "", "rmse_wb2", "rmse_mean_per_forecast", "acc");
  t.erase(t.find_last_not_of(' ') + 1);
  t += "\n";
  t += fmt::format("{:<12} {:>6} {:>6} {:>11} | {:>10} {:>10} {:>10} | {:>10} {:>10} {:>10} | "
                   "{:>7} {:>7} {:>7}\n",
                   "variable", "lead_h", "n", "units", "model", "persist", "clim", "model",
                   "persist", "clim", "model", "persist", "clim");
  for (const auto& s : scores)
    t += fmt::format("{:<12} {:>6g} {:>6} {:>11} | {:>10} {:>10} {:>10} | {:>10} {:>10} {:>10} | "
                     "{:>7} {:>7} {:>7}\n",
                     s.variable, s.lead_hours, s.forecasts, s.units.empty() ? "-" : s.units,
                     g(s.rmse_wb2), g(s.rmse_wb2_persistence), g(s.rmse_wb2_climatology),
                     g(s.rmse_mean_per_forecast), g(s.rmse_mean_per_forecast_persistence),
                     g(s.rmse_mean_per_forecast_climatology), f(s.acc), f(s.acc_persistence),
                     f(s.acc_climatology));
  return t;
}

std::string scores_to_json(const std::vector<Scores>& scores) {
  auto num = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); };
  nlohmann::json a = nlohmann::json::array();
  for (const auto& s : scores) {
    nlohmann::json o = {{"variable", s.variable},
                        {"units", s.units},
                        {"lead_hours", s.lead_hours},
                        {"forecasts", s.forecasts}};
    const auto v = score_values(s);
    for (size_t k = 0; k < v.size(); ++k) o[score_keys()[k]] = num(v[k]);
    a.push_back(std::move(o));
  }
  return a.dump(2);
}

namespace {
// RFC 4180: a field holding a comma, quote or line break is quoted, quotes doubled.
std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}
}  // namespace

std::string scores_to_csv(const std::vector<Scores>& scores) {
  std::string t = "variable,units,lead_hours,forecasts";
  for (const auto& k : score_keys()) t += "," + k;
  t += "\n";
  for (const auto& s : scores) {
    t += fmt::format("{},{},{:g},{}", csv_field(s.variable), csv_field(s.units), s.lead_hours,
                     s.forecasts);
    for (double v : score_values(s)) t += fmt::format(",{:.9g}", v);
    t += "\n";
  }
  return t;
}

}  // namespace seqvit::eval
