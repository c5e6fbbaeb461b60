// Forecast scores (src/eval/metrics.h): MetricAccumulator against values worked out by hand
// (both RMSE definitions), and eval::evaluate on the synthetic fixture against persistence and
// climatology RMSEs recomputed here straight from the NetCDF files (NetcdfDataset + the same 2x2
// area-mean coarsening; the climatology the training-period mean, which the fixture's
// checkpoint stores).
#include "eval/metrics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "data/cf_time.h"
#include "data/netcdf_reader.h"
#include "eval/forecast_fixture.h"
#include "eval/forecast_checkpoint.h"

namespace seqvit {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// lat 60, 0, -60: cos = 0.5, 1, 0.5, mean 2/3, so w = 0.75, 1.5, 0.75.
const std::vector<float> kLat3 = {60.f, 0.f, -60.f};

TEST(MetricsTest, LatitudeWeightsAreCosOverMeanCos) {
  // One wrong row at a time, error 2 (squared 4) in both columns of a 3x2 grid:
  // RMSE = sqrt(w_i * 4 * 2 / 6).
  const std::vector<float> truth(6, 0.f), clim(6, 0.f);
  const double w[3] = {0.75, 1.5, 0.75};
  for (int row = 0; row < 3; ++row) {
    eval::MetricAccumulator m(kLat3.data(), 3, 2);
    std::vector<float> pred(6, 0.f);
    pred[row * 2] = pred[row * 2 + 1] = 2.f;
    m.add(pred.data(), truth.data(), clim.data());
    EXPECT_NEAR(m.rmse_wb2(), std::sqrt(w[row] * 4 * 2 / 6), 1e-6) << "row " << row;
    EXPECT_EQ(m.rmse_mean_per_forecast(), m.rmse_wb2()) << "one forecast: the same number";
  }
}

TEST(MetricsTest, HandComputedRmseAndAcc) {
  {  // Equal weights (lat +-30), clim 0: o = 1 2 3 4, p = 1 1 1 5.
    // o' = -1.5 -0.5 0.5 1.5, p' = -1 -1 -1 3: sum p'o' = 6, sum p'^2 = 12, sum o'^2 = 5.
    const float lat[2] = {30.f, -30.f};
    const float o[4] = {1, 2, 3, 4}, p[4] = {1, 1, 1, 5}, c[4] = {0, 0, 0, 0};
    eval::MetricAccumulator m(lat, 2, 2);
    m.add(p, o, c);
    EXPECT_NEAR(m.acc(), 6.0 / std::sqrt(60.0), 1e-7);
    EXPECT_NEAR(m.rmse_wb2(), std::sqrt((0 + 1 + 4 + 1) / 4.0), 1e-7);
  }
  {  // Unequal weights, 3x1: o = 1 0 0, p = 0 0 1, clim 0. Weighted means 1/4 each:
    // o' = .75 -.25 -.25, p' = -.25 -.25 .75; sum w p'o' = -3/16, sum w p'^2 = sum w o'^2 = 9/16.
    const float o[3] = {1, 0, 0}, p[3] = {0, 0, 1}, c[3] = {0, 0, 0};
    eval::MetricAccumulator m(kLat3.data(), 3, 1);
    m.add(p, o, c);
    EXPECT_NEAR(m.acc(), -1.0 / 3.0, 1e-7);
    EXPECT_NEAR(m.rmse_wb2(), std::sqrt(0.5), 1e-7);  // (0.75 * 1 + 0.75 * 1) / 3
  }
}

// A 3x4 field with structure and a climatology with structure of its own.
struct Fields {
  std::vector<float> truth, clim;
  Fields() {
    for (int k = 0; k < 12; ++k) {
      truth.push_back(280.f + 3.f * std::sin(0.9f * k) + 0.5f * k);
      clim.push_back(279.f + 0.25f * k);
    }
  }
};

TEST(MetricsTest, PerfectForecastOffsetAndAntiCorrelation) {
  const Fields f;
  std::vector<float> offset(12), anti(12), noisy(12), noisy_offset(12);
  for (int k = 0; k < 12; ++k) {
    offset[k] = f.truth[k] + 1.5f;
    anti[k] = f.clim[k] - (f.truth[k] - f.clim[k]);
    noisy[k] = f.truth[k] + 2.f * std::cos(2.3f * k);
    noisy_offset[k] = noisy[k] + 1.5f;
  }
  auto score = [&](const std::vector<float>& pred) {
    eval::MetricAccumulator m(kLat3.data(), 3, 4);
    m.add(pred.data(), f.truth.data(), f.clim.data());
    return std::make_pair(m.rmse_wb2(), m.acc());
  };
  const auto perfect = score(f.truth);
  EXPECT_EQ(perfect.first, 0.0);
  EXPECT_NEAR(perfect.second, 1.0, 1e-12);
  // A constant offset: RMSE = the offset (weights average to 1), the centred ACC does not see it.
  EXPECT_NEAR(score(offset).first, 1.5, 1e-5);
  EXPECT_NEAR(score(offset).second, 1.0, 1e-6);
  const auto n = score(noisy), no = score(noisy_offset);
  EXPECT_GT(n.second, 0.2);
  EXPECT_LT(n.second, 0.99);
  EXPECT_NEAR(no.second, n.second, 1e-6);
  EXPECT_GT(no.first, n.first);
  EXPECT_NEAR(score(anti).second, -1.0, 1e-6);
}

TEST(MetricsTest, ClimatologyForecastHasAccZero) {
  const Fields f;
  eval::MetricAccumulator m(kLat3.data(), 3, 4);
  m.add(f.clim.data(), f.truth.data(), f.clim.data());
  EXPECT_EQ(m.acc(), 0.0);
  // Climatology plus a constant: the anomaly is flat up to float rounding, which differs from
  // binade to binade (a wind-like field through zero), so without the "flat" rule the ACC would
  // be the correlation of rounding noise with the truth.
  std::vector<float> u_clim(12), u_truth(12), shifted(12);
  for (int k = 0; k < 12; ++k) {
    u_clim[k] = 7.f * std::sin(1.3f * k) + 0.01f;
    u_truth[k] = u_clim[k] + 2.f * std::cos(0.7f * k);
    shifted[k] = u_clim[k] + 3.7f;
  }
  double noise = 0;
  for (int k = 0; k < 12; ++k) noise += std::abs((double(shifted[k]) - u_clim[k]) - 3.7f);
  ASSERT_GT(noise, 0.0);  // the case the rule is for
  eval::MetricAccumulator s(kLat3.data(), 3, 4);
  s.add(shifted.data(), u_truth.data(), u_clim.data());
  EXPECT_EQ(s.acc(), 0.0);
  EXPECT_GT(s.rmse_wb2(), 0.0);
}

TEST(MetricsTest, TwoForecastsWithDifferentErrorsGiveTwoDifferentRmses) {
  {  // Equal weights: errors 1 and 3 everywhere, MSE_t = 1 and 9.
    const float lat[2] = {30.f, -30.f};
    const float truth[4] = {0, 0, 0, 0}, c[4] = {0, 0, 0, 0};
    const float p1[4] = {1, 1, 1, 1}, p3[4] = {3, 3, 3, 3};
    eval::MetricAccumulator m(lat, 2, 2);
    m.add(p1, truth, c);
    m.add(p3, truth, c);
    EXPECT_EQ(m.count(), 2);
    EXPECT_NEAR(m.rmse_mean_per_forecast(), 2.0, 1e-12);  // (1 + 3) / 2
    EXPECT_NEAR(m.rmse_wb2(), std::sqrt(5.0), 1e-12);     // sqrt((1 + 9) / 2)
  }
  // Latitude weights 0.75, 1.5, 0.75 (3x1). Forecast A: error 2 in the northern row only,
  // MSE_A = 0.75 * 4 / 3 = 1. Forecast B: error 2 everywhere, MSE_B = 4.
  // Mean per forecast (1 + 2) / 2 = 1.5; WeatherBench2 sqrt((1 + 4) / 2) = sqrt(2.5).
  const float truth[3] = {0, 0, 0}, c[3] = {0, 0, 0};
  const float a[3] = {2, 0, 0}, b[3] = {2, 2, 2};
  eval::MetricAccumulator m(kLat3.data(), 3, 1);
  m.add(a, truth, c);
  m.add(b, truth, c);
  EXPECT_NEAR(m.rmse_mean_per_forecast(), 1.5, 1e-12);
  EXPECT_NEAR(m.rmse_wb2(), std::sqrt(2.5), 1e-12);
  // Two ranks that scored one forecast each: their summed sums give the same two numbers.
  eval::MetricAccumulator ra(kLat3.data(), 3, 1), rb(kLat3.data(), 3, 1);
  ra.add(a, truth, c);
  rb.add(b, truth, c);
  auto sum = ra.sums();
  for (size_t k = 0; k < sum.size(); ++k) sum[k] += rb.sums()[k];
  ra.set_sums(sum);
  EXPECT_EQ(ra.count(), 2);
  EXPECT_NEAR(ra.rmse_mean_per_forecast(), 1.5, 1e-12);
  EXPECT_NEAR(ra.rmse_wb2(), std::sqrt(2.5), 1e-12);
}

TEST(MetricsTest, MissingPixelsAreLeftOutAndNaNPredictionsAreNot) {
  // 3x1, errors 2 in rows 0 and 2 and 100 in row 1 where the truth is missing: RMSE 2.
  const float c[3] = {0, 0, 0}, p[3] = {2, 100, 2};
  const float truth[3] = {0, kNaN, 0};
  eval::MetricAccumulator m(kLat3.data(), 3, 1);
  m.add(p, truth, c);
  EXPECT_NEAR(m.rmse_wb2(), 2.0, 1e-6);
  // Same with the climatology missing there.
  const float t0[3] = {0, 0, 0}, cn[3] = {0, kNaN, 0};
  eval::MetricAccumulator mc(kLat3.data(), 3, 1);
  mc.add(p, t0, cn);
  EXPECT_NEAR(mc.rmse_wb2(), 2.0, 1e-6);
  // A forecast with no valid pixel is not counted.
  const float all_nan[3] = {kNaN, kNaN, kNaN};
  eval::MetricAccumulator e(kLat3.data(), 3, 1);
  e.add(p, all_nan, c);
  EXPECT_EQ(e.count(), 0);
  // A NaN prediction on valid data is the model's failure: NaN scores, never a better one.
  const float pn[3] = {2, kNaN, 2};
  eval::MetricAccumulator n(kLat3.data(), 3, 1);
  n.add(pn, t0, c);
  EXPECT_EQ(n.count(), 1);
  EXPECT_TRUE(std::isnan(n.rmse_wb2()));
  EXPECT_TRUE(std::isnan(n.rmse_mean_per_forecast()));
  EXPECT_TRUE(std::isnan(n.acc()));
}

TEST(MetricsTest, FormatsShowAbsentScoresAndQuoteCsvFields) {
  eval::Scores s;
  s.variable = "tp";
  s.units = "kg m**-2, \"daily\"";
  s.lead_hours = 24;
  s.forecasts = 3;
  s.rmse_wb2 = 1.75, s.rmse_mean_per_forecast = 1.5, s.acc = 0.5;
  s.rmse_wb2_climatology = 2.5, s.rmse_mean_per_forecast_climatology = 2, s.acc_climatology = 0;
  s.rmse_wb2_persistence = s.rmse_mean_per_forecast_persistence = s.acc_persistence =
      std::numeric_limits<double>::quiet_NaN();
  const std::string csv = eval::scores_to_csv({s});
  EXPECT_EQ(csv,
            "variable,units,lead_hours,forecasts,rmse_wb2,rmse_mean_per_forecast,acc,"
            "rmse_wb2_persistence,rmse_mean_per_forecast_persistence,acc_persistence,"
            "rmse_wb2_climatology,rmse_mean_per_forecast_climatology,acc_climatology\n"
            "tp,\"kg m**-2, \"\"daily\"\"\",24,3,1.75,1.5,0.5,nan,nan,nan,2.5,2,0\n");
  const auto j = nlohmann::json::parse(eval::scores_to_json({s}));
  EXPECT_TRUE(j[0].at("rmse_wb2_persistence").is_null());
  EXPECT_TRUE(j[0].at("rmse_mean_per_forecast_persistence").is_null());
  EXPECT_EQ(j[0].at("rmse_wb2").get<double>(), 1.75);
  EXPECT_EQ(j[0].at("rmse_mean_per_forecast").get<double>(), 1.5);
  EXPECT_EQ(j[0].at("rmse_wb2_climatology").get<double>(), 2.5);
  EXPECT_EQ(j[0].at("rmse_mean_per_forecast_climatology").get<double>(), 2.0);
  EXPECT_EQ(j[0].size(), 4 + eval::score_keys().size());
  EXPECT_FALSE(j[0].contains("rmse")) << "the ambiguous old key is gone";
  const std::string table = eval::format_scores_table({s});
  EXPECT_EQ(table.find("nan"), std::string::npos) << table;
  // The header names both RMSEs as the JSON and CSV do; the row holds them in that order.
  EXPECT_NE(table.find("rmse_wb2"), std::string::npos) << table;
  EXPECT_NE(table.find("rmse_mean_per_forecast"), std::string::npos) << table;
  EXPECT_LT(table.find("rmse_wb2"), table.find("rmse_mean_per_forecast")) << table;
  const std::string row = table.substr(table.find("\ntp") + 1);
  EXPECT_LT(row.find("1.75"), row.find("1.5 ")) << table;
  EXPECT_LT(row.find("2.5"), row.find(" 2 ")) << table;
}

// ---------------------------------------------------------------- evaluate() on the fixture

// Coarse fields read straight from the files: name -> [T][h*w] (physical units), and the grid.
struct Reference {
  int64_t h = 0, w = 0;
  std::vector<double> times;  // hours since 1970
  std::vector<double> wlat;   // [h]
  std::map<std::string, std::vector<std::vector<double>>> fields;
  std::map<std::string, std::vector<double>> clim;  // training-period per-pixel mean
};

const Reference& reference() {
  static const Reference r = [] {
    const auto& fx = testing::ForecastFixture::get();
    const int c = fx.data.coarsen;
    data::NetcdfDataset nc({fx.dir});
    Reference r;
    const double b = data::parse_iso_datetime(fx.data.train.begin) / 3600.0;
    const double e = data::parse_iso_datetime(fx.data.train.end) / 3600.0;
    for (const auto& name : fx.data.outputs) {
      const auto ref = nc.resolve(name);
      const auto& v = nc.variable(ref.variable);
      if (r.times.empty()) {
        r.times = v.times;
        r.h = v.H() / c, r.w = v.W() / c;
        double mean = 0;
        std::vector<double> cl(r.h);
        for (int64_t i = 0; i < r.h; ++i) {
          const double lat = (v.lat[i * c] + v.lat[i * c + 1]) / 2;
          cl[i] = std::cos(lat * M_PI / 180.0);
          mean += cl[i] / r.h;
        }
        for (double x : cl) r.wlat.push_back(x / mean);
      }
      EXPECT_EQ(v.times, r.times) << name;  // synthetic fields share one time axis
      std::vector<float> full(v.H() * v.W());
      auto& out = r.fields[name];
      std::vector<double> sum(r.h * r.w, 0.0);
      int n = 0;
      for (int64_t t = 0; t < v.T(); ++t) {
        nc.read(ref, t, full.data());
        std::vector<double> coarse(r.h * r.w, 0.0);
        for (int64_t i = 0; i < v.H(); ++i)
          for (int64_t j = 0; j < v.W(); ++j)
            coarse[(i / c) * r.w + j / c] += full[i * v.W() + j] / double(c * c);
        if (v.times[t] >= b && v.times[t] < e) {
          for (size_t k = 0; k < sum.size(); ++k) sum[k] += coarse[k];
          ++n;
        }
        out.push_back(std::move(coarse));
      }
      for (auto& s : sum) s /= n;
      r.clim[name] = sum;
    }
    return r;
  }();
  return r;
}

// The latitude-weighted spatial MSE of one forecast.
double mse(const std::vector<double>& a, const std::vector<double>& b, const Reference& r) {
  double s = 0;
  for (int64_t i = 0; i < r.h; ++i)
    for (int64_t j = 0; j < r.w; ++j) {
      const double d = a[i * r.w + j] - b[i * r.w + j];
      s += r.wlat[i] * d * d;
    }
  return s / static_cast<double>(r.h * r.w);
}

std::vector<eval::Scores> evaluate_fixture(const std::vector<double>& leads) {
  const auto& fx = testing::ForecastFixture::get();
  const auto ck = eval::load_forecast_checkpoint(fx.checkpoint);
  data::ForecastConfig cfg = ck.data;
  cfg.lead_hours = leads;
  eval::use_checkpoint_statistics(ck, cfg);
  cfg.batch_size = 4;
  cfg.shuffle = false;
  data::ForecastDataset ds(cfg, data::Split::test);
  model::ClimaX m(ck.model);
  m.plan(cfg.batch_size, model::Precision::F32);
  m.sync_weights(ck.params.data());
  return eval::evaluate(m, ck.params.data(), ds);
}

TEST(MetricsTest, EvaluateBaselinesMatchDirectReadsOfTheFiles) {
  const auto& fx = testing::ForecastFixture::get();
  const Reference& r = reference();
  const double tb = data::parse_iso_datetime(fx.data.test.begin) / 3600.0;
  const double te = data::parse_iso_datetime(fx.data.test.end) / 3600.0;
  for (double lead : {6.0, 12.0}) {
    const auto scores = evaluate_fixture({lead});
    ASSERT_EQ(scores.size(), fx.data.outputs.size());
    for (size_t o = 0; o < scores.size(); ++o) {
      const auto& s = scores[o];
      const std::string& name = fx.data.outputs[o];
      EXPECT_EQ(s.variable, name);
      EXPECT_EQ(s.lead_hours, lead);
      double pers = 0, clim = 0, pers_mse = 0, clim_mse = 0;  // sums of RMSE_t and MSE_t
      int n = 0;
      const auto& f = r.fields.at(name);
      for (size_t t = 0; t < r.times.size(); ++t) {
        if (r.times[t] < tb || r.times[t] + lead >= te) continue;
        const size_t tl = t + static_cast<size_t>(lead / 6);
        ASSERT_DOUBLE_EQ(r.times[tl], r.times[t] + lead);
        const double mp = mse(f[t], f[tl], r), mc = mse(r.clim.at(name), f[tl], r);
        pers += std::sqrt(mp), pers_mse += mp;
        clim += std::sqrt(mc), clim_mse += mc;
        ++n;
      }
      ASSERT_GT(n, 0);
      EXPECT_EQ(s.forecasts, n) << name << " lead " << lead;
      const std::string what = name + " lead " + std::to_string(lead);
      EXPECT_NEAR(s.rmse_mean_per_forecast_persistence, pers / n, 1e-5 * pers / n) << what;
      EXPECT_NEAR(s.rmse_mean_per_forecast_climatology, clim / n, 1e-5 * clim / n) << what;
      const double wp = std::sqrt(pers_mse / n), wc = std::sqrt(clim_mse / n);
      EXPECT_NEAR(s.rmse_wb2_persistence, wp, 1e-5 * wp) << what;
      EXPECT_NEAR(s.rmse_wb2_climatology, wc, 1e-5 * wc) << what;
      // sqrt of a mean >= the mean of the square roots, strictly when the errors differ.
      EXPECT_GT(s.rmse_wb2_persistence, s.rmse_mean_per_forecast_persistence) << what;
      EXPECT_GT(s.rmse_wb2, s.rmse_mean_per_forecast) << what;
      EXPECT_EQ(s.acc_climatology, 0.0);
      EXPECT_TRUE(std::isfinite(s.rmse_mean_per_forecast) && s.rmse_mean_per_forecast > 0) << name;
      EXPECT_TRUE(std::isfinite(s.acc) && std::abs(s.acc) <= 1) << name;
      EXPECT_TRUE(std::isfinite(s.acc_persistence) && s.acc_persistence > 0) << name;
      EXPECT_FALSE(s.units.empty()) << name;
    }
  }
}

TEST(MetricsTest, EvaluateScoresEveryOutputAtEveryLead) {
  const auto& fx = testing::ForecastFixture::get();
  const auto scores = evaluate_fixture(fx.data.lead_hours);  // one dataset, leads alternate
  ASSERT_EQ(scores.size(), fx.data.outputs.size() * fx.data.lead_hours.size());
  size_t k = 0;
  for (const auto& name : fx.data.outputs)
    for (double lead : fx.data.lead_hours) {
      EXPECT_EQ(scores[k].variable, name);
      EXPECT_EQ(scores[k].lead_hours, lead);
      EXPECT_GT(scores[k].forecasts, 0);
      EXPECT_TRUE(std::isfinite(scores[k].rmse_wb2)) << name << " " << lead;
      EXPECT_TRUE(std::isfinite(scores[k].rmse_mean_per_forecast)) << name << " " << lead;
      EXPECT_TRUE(std::isfinite(scores[k].acc)) << name << " " << lead;
      ++k;
    }
  // The formats hold every score.
  const std::string csv = eval::scores_to_csv(scores);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), static_cast<long>(scores.size() + 1));
  const std::string table = eval::format_scores_table(scores);
  for (const auto& name : fx.data.outputs) EXPECT_NE(table.find(name), std::string::npos);
}

}  // namespace
}  // namespace seqvit
