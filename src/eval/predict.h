// One forecast from a trained checkpoint (what `seqvit predict` runs): the sample of the data
// whose input time is T, at one lead, through the model, de-normalised, with the truth at the
// valid time T + lead beside it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "data/forecast_dataset.h"
#include "eval/forecast_checkpoint.h"

namespace seqvit::eval {

// A dataset for forecasting with `ckpt`: its data configuration (with `paths` instead of the
// training paths when not empty), its normalisation and climatology, the single lead
// `lead_hours` (<= 0: the first of the checkpoint's leads), and every input time of the data as
// candidate (the test split spans all time). The data need not hold the training period. The
// missing-value masks come from the training statistics cache when the files are those of
// training (same fingerprint: no data read), else every time step is read once for them (skip
// policy). A checkpoint without a stored climatology has it computed from the training period
// of the data, as before. Throws when the data's grid is not the climatology's.
std::unique_ptr<data::ForecastDataset> prediction_dataset(const eval::ForecastCheckpoint& ckpt,
                                                          const std::vector<std::string>& paths,
                                                          double lead_hours);

struct Prediction {
  double time = 0;        // input (forecast reference) time, hours since 1970
  double lead_hours = 0;  // valid time = time + lead_hours
  int64_t H = 0, W = 0;   // the dataset's (coarsened) grid, canonical orientation
  std::vector<std::string> outputs;
  std::vector<float> forecast;  // [Vo, H, W] physical units
  std::vector<float> truth;     // [Vo, H, W] physical units, at the valid time
};

// The sample of `ds` whose input time is `time` (hours since 1970). When there is none, throws
// naming the time, the lead, the range of input times that have a target, and the nearest ones.
int64_t find_sample(const data::ForecastDataset& ds, double time);

// Runs the model of `ckpt` on sample `sample` of `ds` (a prediction_dataset).
// The model runs on `device` (weights, batch and forecast copied there and back).
Prediction predict(const eval::ForecastCheckpoint& ckpt, const data::ForecastDataset& ds,
                   int64_t sample, backend::Device& device = backend::cpu());

}  // namespace seqvit::eval
