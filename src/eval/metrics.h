// Forecast scores as the field computes them (docs/evaluation.md), on de-normalised
// fields in the variable's units, with latitude weights w_i = cos(lat_i) / mean_i cos(lat_i).
// With MSE_t = mean_{i,j} w_i (pred_t - truth_t)^2, the latitude-weighted spatial MSE of
// forecast t, two RMSEs that differ whenever the forecasts' errors differ:
//   rmse_wb2               = sqrt( mean_t MSE_t )   WeatherBench2's RMSE (its tables)
//   rmse_mean_per_forecast = mean_t sqrt( MSE_t )   ClimaX's lat_weighted_rmse, always <= the other
//   ACC  = mean over forecasts of  sum w p'o' / sqrt( sum w p'^2 * sum w o'^2 ),
//          p' = pred - clim, o' = truth - clim, each centred by its own latitude-weighted
//          spatial mean (the "centred" ACC). A forecast whose anomaly is constant (the
//          climatology forecast itself) has no correlation; it scores ACC = 0.
// Sums are in double. Pixels where truth or clim is NaN (missing data) are left out of that
// forecast; a NaN in pred where truth and clim are valid makes the forecast's scores NaN.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/forecast_dataset.h"
#include "model/climax.h"

namespace seqvit::eval {

class MetricAccumulator {
 public:
  MetricAccumulator() = default;
  MetricAccumulator(const float* lat_deg, int64_t H, int64_t W);
  // One forecast of one variable; every array [H*W], physical units.
  void add(const float* pred, const float* truth, const float* clim);
  int64_t count() const { return n_; }
  // sqrt(mean_t MSE_t): WeatherBench2's RMSE.
  double rmse_wb2() const { return n_ ? std::sqrt(mse_sum_ / static_cast<double>(n_)) : 0.0; }
  // mean_t sqrt(MSE_t): the mean of the per-forecast RMSEs (ClimaX).
  double rmse_mean_per_forecast() const {
    return n_ ? rmse_sum_ / static_cast<double>(n_) : 0.0;
  }
  double acc() const { return n_ ? acc_sum_ / static_cast<double>(n_) : 0.0; }
  // The running sums (MSE sum, RMSE sum, ACC sum, forecast count), to combine the accumulators
  // of ranks that scored different forecasts: sum them over the ranks and set them back.
  static constexpr int kSums = 4;
  std::array<double, kSums> sums() const {
    return {mse_sum_, rmse_sum_, acc_sum_, static_cast<double>(n_)};
  }
  void set_sums(const std::array<double, kSums>& s);

 private:
  int64_t H_ = 0, W_ = 0, n_ = 0;
  std::vector<double> w_;  // [H]
  double mse_sum_ = 0, rmse_sum_ = 0, acc_sum_ = 0;
};

// The scores of the model and of the two baselines for one output variable at one lead time:
// each RMSE in both definitions (see the top of this file), named the same in the table, the
// JSON and the CSV.
struct Scores {
  std::string variable, units;
  double lead_hours = 0;
  int64_t forecasts = 0;
  // the model
  double rmse_wb2 = 0, rmse_mean_per_forecast = 0, acc = 0;
  // y_hat = x(t); NaN if the output is not an input
  double rmse_wb2_persistence = 0, rmse_mean_per_forecast_persistence = 0, acc_persistence = 0;
  // y_hat = the training-period climatology
  double rmse_wb2_climatology = 0, rmse_mean_per_forecast_climatology = 0, acc_climatology = 0;
};

// Runs the model over every batch of `ds` (iterating a fresh epoch 0 of it; at most
// `max_batches` batches when > 0) and scores it, per output variable and lead time (sorted by
// variable order, then lead). `model` must be planned for ds's batch size; params in its table
// layout, DEVICE memory of the model's device (the batches are uploaded with model::DeviceBatch
// and the forecasts copied back). Units come from the NetCDF files. `progress`, if set, is called after each batch with
// (batches done, batches to do).
using Progress = std::function<void(int64_t done, int64_t total)>;

// A distributed evaluation (seqvit train --data --dp/--sp): `ds` is sharded over the
// data-parallel ranks (ForecastDataset::set_shard), every rank of an SP group scores the same
// forecasts. The scores are those of the whole (unsharded) dataset, equal to one process's up to
// the order of the sums.
struct EvalParallel {
  // Sequence parallelism: pred [n], this rank's pixels with zeros elsewhere, becomes the whole
  // forecast (a sum over the SP group). Called after every forward; an empty batch of a shard
  // (no forward) is empty on every rank of its SP group alike.
  std::function<void(float* pred, int64_t n)> complete_pred;
  // Sums sums[n] over the data-parallel ranks (in place).
  std::function<void(double* sums, int64_t n)> sum_over_shards;
  // Replaces model.forward(params, b, pred) (and its batch-size check) when set; b and pred are
  // HOST memory (the hook uploads and downloads): e.g. a
  // pipelined model whose stages each hold some blocks (seqvit train --data --pp); pred [b.B, Vo,
  // H, W] must then hold the forecast (this rank's pixels under SP) on every rank.
  std::function<void(const model::BatchView& b, float* pred)> forward;
};

std::vector<Scores> evaluate(model::ClimaX& model, const float* params,
                             data::ForecastDataset& ds, int64_t max_batches = 0,
                             const Progress& progress = {}, const EvalParallel* par = nullptr);

// A fixed-width table of scores (the model beside persistence and climatology, for each RMSE
// definition and the ACC, under a two-line header that names them); a score that does not exist
// (persistence of an output that is not an input) shows as "-".
std::string format_scores_table(const std::vector<Scores>& scores);
std::string scores_to_json(const std::vector<Scores>& scores);  // a JSON array
std::string scores_to_csv(const std::vector<Scores>& scores);   // header + one row per score
// The score keys of the JSON objects and CSV columns, in the CSV's order (after variable, units,
// lead_hours, forecasts).
const std::vector<std::string>& score_keys();

}  // namespace seqvit::eval
