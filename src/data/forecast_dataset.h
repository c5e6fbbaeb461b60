// Forecast training samples from ERA5-like NetCDF (docs/data.md, "Forecast dataset"):
// (x at t, y at t + lead) pairs, normalised per variable with training-period statistics, on an
// optionally area-mean-coarsened or regridded grid, in batches loaded by a background prefetch
// thread.
//
//  - times: the times present in EVERY time-dependent field (inputs and outputs); a sample at t
//    exists only if t + lead is one of them too (gaps never produce a sample);
//  - split: a sample belongs to [begin, end) (ISO dates) if both t and t + lead lie in it;
//  - lead: one of `lead_hours`, picked deterministically from the time index (index % count);
//  - statistics (mean, std per field; per-pixel climatology per output; NaN masks per time)
//    over the training range, accumulated in double, cached in a safetensors file keyed by a
//    fingerprint of (files with sizes and mtimes, variables, training range, coarsening, the
//    --grid and its method when regridding);
//  - missing values: `skip` drops samples with any NaN in x or y, `fill` replaces NaN by 0 after
//    normalisation (the training mean); both are counted (skipped_samples, filled_values).
// Not thread-safe; while an epoch is being iterated with prefetch only the worker thread reads
// the files (libnetcdf is not thread-safe).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "data/grid_source.h"
#include "data/regrid.h"
#include "model/climax.h"

namespace seqvit::data {

struct TimeRange {
  std::string begin, end;  // ISO dates, [begin, end)
};

enum class Split { train, val, test };
enum class MissingPolicy { skip, fill };

struct ForecastConfig {
  std::vector<std::string> paths;
  std::vector<std::string> inputs;   // ClimaX names; constants (lsm, orography) are broadcast
  std::vector<std::string> outputs;  // time-dependent fields only
  std::vector<double> lead_hours = {6};
  TimeRange train, val, test;
  // ISO date: a time axis whose units name no epoch ("days") counts from it (SourceOptions,
  // docs/data.md "Unusual files"); empty: such an axis is an error naming it. Kept in the
  // checkpoint so that evaluate and predict read the data the same way.
  std::string time_origin;
  int coarsen = 1;                   // area-mean c x c blocks; H and W must be multiples of c
  // When not empty: "HxW", the data are read through a RegriddedSource onto the equiangular HxW
  // grid (data/regrid.h; docs/data.md "Regridding"), with `regrid_method`. Excludes coarsen > 1
  // (regrid straight onto the coarser grid instead). The weights are cached beside the
  // statistics cache when `cache_path` is given, else beside the data; not at all where that
  // directory is not writable (they take milliseconds to compute).
  std::string grid;
  RegridMethod regrid_method = RegridMethod::conservative;
  MissingPolicy missing = MissingPolicy::skip;
  std::string cache_path;  // empty: seqvit_stats.safetensors in paths[0] if a directory, else
                           // beside the first file
  int batch_size = 1;
  uint64_t seed = 0;
  bool shuffle = true;               // shuffle sample order per epoch (from seed and epoch)
  bool prefetch = true;              // load the next batch on a background thread
  // When not empty: the (mean, std) of every input and output, used instead of the computed
  // ones (a checkpoint's, so that a model sees data normalised as in its training).
  std::map<std::string, std::pair<double, double>> normalisation;
  // When not empty (and `normalisation` is given too): the per-pixel climatology of every
  // output, [H*W] on the dataset's (coarsened) grid in canonical orientation, physical units (a
  // checkpoint's). With both given the dataset needs no data of the training period: it
  // computes no statistics and writes no statistics cache; it only reads the time steps of its
  // split for their missing values (skip policy), or takes them from a matching cache.
  // Without it the climatology is computed over the training period (which the data must hold).
  std::map<std::string, std::vector<float>> climatology;
  // When set, called now and then while the statistics are computed (a full read of the data):
  // fields-steps read so far and in all. Not part of the dataset's identity.
  std::function<void(int64_t done, int64_t total)> stats_progress;
  // When true the statistics must come from the cache: the dataset fails (naming the file)
  // instead of computing and writing them. The ranks of a distributed run other than rank 0 set
  // it: rank 0 alone writes the cache and the others read it after a barrier. Not part of the
  // dataset's identity.
  bool require_stats_cache = false;
};

// The dataset part of a forecast checkpoint (__metadata__["seqvit.data"]): every field of
// ForecastConfig except cache_path, prefetch and batch_size (grid and regrid_method only when
// grid is set, so the settings of a run on the data's own grid read as before). from_json
// rejects unknown keys and names `where` in its errors.
std::string forecast_config_to_json(const ForecastConfig& cfg);
ForecastConfig forecast_config_from_json(const std::string& json, const std::string& where);
MissingPolicy parse_missing_policy(const std::string& s);  // "skip" | "fill"
// The source a forecast dataset reads: open_grid_source(cfg.paths), seen through a
// RegriddedSource on cfg.grid when that is set. Checks cfg.grid ("HxW") and that it is not
// combined with coarsen > 1; errors name the flags (--grid, --coarsen).
std::unique_ptr<GridSource> open_forecast_source(const ForecastConfig& cfg);

// Why a field whose time axis has no epoch (GridVariable::time_has_epoch false) cannot be used
// for forecasting without a time origin: names the field, the axis and its units, and asks for
// --time-origin DATE.
std::string time_origin_needed(const std::string& field, const GridVariable& v);
const char* missing_policy_name(MissingPolicy p);

struct FieldStats {
  double mean = 0, std = 1;
  int64_t count = 0;      // finite values seen
  int64_t nan_count = 0;  // missing values seen (training range)
};

struct Batch {
  int64_t B = 0, V = 0, Vo = 0, H = 0, W = 0;
  std::vector<float> x;           // [B, V, H, W] normalised
  std::vector<float> y;           // [B, Vo, H, W] normalised
  std::vector<float> lead_times;  // [B] hours
  std::vector<float> lat;         // [H] degrees, of the (coarsened) grid
  std::vector<double> times;      // [B] input time, hours since 1970
  int64_t filled_values = 0;      // NaNs replaced by 0 in this batch (fill policy)
  model::BatchView view() const { return {B, x.data(), y.data(), lead_times.data(), lat.data()}; }
};

class ForecastDataset {
 public:
  ForecastDataset(const ForecastConfig& cfg, Split split);
  ~ForecastDataset();
  ForecastDataset(const ForecastDataset&) = delete;
  ForecastDataset& operator=(const ForecastDataset&) = delete;

  int64_t size() const { return static_cast<int64_t>(samples_.size()); }
  int64_t num_batches() const;  // the last batch may be smaller
  int64_t H() const { return H_; }
  int64_t W() const { return W_; }
  const std::vector<float>& lat() const { return lat_; }    // [H] degrees, north to south
  const std::vector<double>& lon() const { return lon_; }   // [W] degrees east, [0, 360) ascending
  // The time steps common to every time-dependent field, hours since 1970, ascending.
  const std::vector<double>& times() const { return times_; }
  const std::vector<std::string>& inputs() const { return cfg_.inputs; }
  const std::vector<std::string>& outputs() const { return cfg_.outputs; }
  const ForecastConfig& config() const { return cfg_; }
  // The source underneath, e.g. for a field's units and its stored orientation
  // (source().variable(field_ref(name).variable)). Not while an epoch is being prefetched.
  const GridSource& source() const { return *ds_; }
  const FieldRef& field_ref(const std::string& name) const;  // an input or output

  const FieldStats& stats(const std::string& name) const;  // inputs and outputs
  // Per-pixel training-period mean of an output, [H*W], physical units.
  const std::vector<float>& climatology(const std::string& output) const;
  bool stats_computed() const { return stats_computed_; }  // false: read from the cache or given
  // true: the normalisation and the climatology came from the configuration (a checkpoint's).
  bool stats_given() const { return stats_given_; }
  const std::string& cache_path() const { return cache_path_; }
  const std::string& fingerprint() const { return fingerprint_; }

  int64_t skipped_samples() const { return skipped_; }  // dropped for NaN (skip policy)
  int64_t filled_values() const;                         // replaced so far (fill policy)

  // Sample i: input time (hours since 1970) and lead (hours).
  double sample_time(int64_t i) const { return samples_.at(i).t_hours; }
  double sample_lead(int64_t i) const { return samples_.at(i).lead; }

  // The order of sample indices in `epoch` (a permutation when shuffle is on).
  std::vector<int64_t> epoch_order(int64_t epoch) const;
  // Loads the given samples now, on this thread (not while an epoch is being iterated).
  Batch load(const std::vector<int64_t>& sample_ids) const;

  // Starts iterating `epoch`; next() then yields its batches in order and returns false at the
  // end. With prefetch, a worker thread loads batch k+1 while batch k is used; an exception in
  // the worker is rethrown by next().
  // `first_batch` > 0 starts part-way through (resuming a run at its saved data position).
  void start_epoch(int64_t epoch, int64_t first_batch = 0);
  bool next(Batch& out);

  // Data parallelism: from the next start_epoch() on, next() yields only shard `index` of
  // `count` of every batch: of the n samples of a batch, [n*index/count, n*(index+1)/count) (a
  // batch of batch_size = B divisible by count gives every shard B/count samples; a smaller last
  // batch may leave a shard empty, B = 0). The batches themselves (epoch order, batch_size,
  // num_batches) are the unsharded ones, so every shard walks the same global batches.
  void set_shard(int index, int count);
  int shard_index() const { return shard_index_; }
  int shard_count() const { return shard_count_; }
  // The sample ids of this shard of batch k of the current epoch order.
  std::vector<int64_t> batch_ids(int64_t k) const;

  // Physical units from normalised values: v * std + mean, in place.
  void denormalise(const std::string& name, float* data, int64_t n) const;
  void denormalise_y(float* y, int64_t B) const;  // [B, Vo, H, W]

 private:
  struct Sample {
    int64_t ti = 0, to = 0;  // index into times_ of input and target
    double t_hours = 0, lead = 0;
  };
  struct Field {
    std::string name;
    FieldRef ref;
    bool constant = false;
    std::vector<int64_t> tindex;  // common time k -> the variable's time index
  };
  void read_coarse(const Field& f, int64_t k, float* out) const;  // [H*W] physical units
  void compute_stats();
  void compute_nan_masks(double begin, double end);  // hours since 1970, [begin, end)
  bool load_cache();
  void save_cache() const;
  void stop_worker();
  void worker_loop();

  ForecastConfig cfg_;
  Split split_;
  std::unique_ptr<GridSource> ds_;
  std::vector<Field> in_, out_;  // fields of inputs, outputs
  std::vector<double> times_;    // common times, hours since 1970
  int64_t H_ = 0, W_ = 0, Hf_ = 0, Wf_ = 0;
  std::vector<float> lat_;
  std::vector<double> lon_;
  std::map<std::string, FieldStats> stats_;
  std::map<std::string, std::vector<float>> clim_;
  std::map<std::string, std::vector<float>> constant_;  // normalised constants [H*W]
  std::vector<uint8_t> nan_in_, nan_out_;               // [times] any NaN in inputs / outputs
  std::string fingerprint_, cache_path_;
  bool stats_computed_ = false, stats_given_ = false;
  std::vector<Sample> samples_;
  int64_t skipped_ = 0;
  mutable std::mutex fill_mu_;
  mutable int64_t filled_ = 0;
  mutable std::vector<float> buf_;  // [Hf*Wf] read buffer

  int shard_index_ = 0, shard_count_ = 1;

  // Prefetch state.
  std::vector<int64_t> order_;
  bool started_ = false;
  int64_t next_batch_ = 0;   // next batch next() returns
  int64_t requested_ = 0;    // next batch the worker loads
  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::optional<Batch> ready_;
  std::exception_ptr error_;
};

}  // namespace seqvit::data
