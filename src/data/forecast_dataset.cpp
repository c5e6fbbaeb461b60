#include "data/forecast_dataset.h"

#include <nlohmann/json.hpp>

#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include <fmt/ranges.h>

#include "core/check.h"
#include "core/rng.h"
#include "data/cf_time.h"
#include "data/regridded_source.h"
#include "data/zarr_store.h"
#include "io/safetensors.h"

namespace seqvit::data {

namespace {

int64_t time_key(double hours) { return std::llround(hours * 3600.0); }

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

std::pair<double, double> parse_range(const TimeRange& r, const char* what) {
  if (r.begin.empty() || r.end.empty())
    fail("{} split: begin and end dates are required (got '{}' .. '{}')", what, r.begin, r.end);
  const double b = parse_iso_datetime(r.begin) / 3600.0, e = parse_iso_datetime(r.end) / 3600.0;
  if (!(b < e)) fail("{} split: begin {} is not before end {}", what, r.begin, r.end);
  return {b, e};
}

// libnetcdf turns HDF5's automatic error printing off for the thread that initialised it only;
// HDF5's error stacks are per thread, so the prefetch thread would print a (harmless) trace for
// every attribute that netcdf probes and does not find. Turn it off there too, if HDF5 is loaded.
void quiet_hdf5_errors_on_this_thread() {
  using SetAuto = int (*)(int64_t, void*, void*);  // H5Eset_auto2(hid_t, H5E_auto2_t, void*)
  if (auto* f = reinterpret_cast<SetAuto>(::dlsym(RTLD_DEFAULT, "H5Eset_auto2")))
    f(0 /* H5E_DEFAULT */, nullptr, nullptr);
}

const char* split_name(Split s) {
  return s == Split::train ? "train" : s == Split::val ? "val" : "test";
}

}  // namespace

MissingPolicy parse_missing_policy(const std::string& s) {
  if (s == "skip") return MissingPolicy::skip;
  if (s == "fill") return MissingPolicy::fill;
  fail("missing-value policy '{}' is not valid: use 'skip' (drop the sample) or 'fill' (replace "
       "by the training mean)", s);
}

const char* missing_policy_name(MissingPolicy p) {
  return p == MissingPolicy::skip ? "skip" : "fill";
}

std::string time_origin_needed(const std::string& field, const GridVariable& v) {
  return fmt::format(
      "field '{}': the time axis '{}' has units '{}' without an epoch (not 'UNITS since "
      "DATE'); give the date its values count from with --time-origin DATE (an ISO date, "
      "e.g. --time-origin 1979-01-01: '{} since 1979-01-01')",
      field, v.time_axis, v.time_units, v.time_units.empty() ? "hours" : v.time_units);
}

std::string forecast_config_to_json(const ForecastConfig& c) {
  using nlohmann::json;
  auto range = [](const TimeRange& r) { return json::array({r.begin, r.end}); };
  json j{{"paths", c.paths},
         {"inputs", c.inputs},
         {"outputs", c.outputs},
         {"lead_hours", c.lead_hours},
         {"train", range(c.train)},
         {"val", range(c.val)},
         {"test", range(c.test)},
         {"coarsen", c.coarsen},
         {"missing", missing_policy_name(c.missing)},
         {"seed", c.seed},
         {"shuffle", c.shuffle}};
  if (!c.grid.empty()) {
    j["grid"] = c.grid;
    j["regrid_method"] = regrid_method_name(c.regrid_method);
  }
  if (!c.time_origin.empty()) j["time_origin"] = c.time_origin;
  return j.dump();
}

ForecastConfig forecast_config_from_json(const std::string& text, const std::string& where) {
  using nlohmann::json;
  ForecastConfig c;
  try {
    const json j = json::parse(text);
    if (!j.is_object()) fail("{}: dataset configuration is not a JSON object", where);
    static const std::set<std::string> known = {"paths", "inputs", "outputs", "lead_hours",
                                                "train", "val", "test", "coarsen",
                                                "missing", "seed", "shuffle", "grid",
                                                "regrid_method", "time_origin"};
    for (const auto& [k, v] : j.items())
      if (!known.count(k)) fail("{}: unknown dataset configuration key '{}'", where, k);
    auto range = [&](const char* k) {
      TimeRange r;
      if (j.contains(k)) {
        const auto& a = j.at(k);
        if (!a.is_array() || a.size() != 2)
          fail("{}: dataset key '{}' must be [begin, end]", where, k);
        r.begin = a[0].get<std::string>();
        r.end = a[1].get<std::string>();
      }
      return r;
    };
    c.paths = j.value("paths", std::vector<std::string>{});
    c.inputs = j.at("inputs").get<std::vector<std::string>>();
    c.outputs = j.at("outputs").get<std::vector<std::string>>();
    c.lead_hours = j.at("lead_hours").get<std::vector<double>>();
    c.train = range("train");
    c.val = range("val");
    c.test = range("test");
    c.coarsen = j.value("coarsen", 1);
    c.missing = parse_missing_policy(j.value("missing", std::string("skip")));
    c.seed = j.value("seed", uint64_t{0});
    c.shuffle = j.value("shuffle", true);
    c.grid = j.value("grid", std::string());
    c.regrid_method =
        parse_regrid_method(j.value("regrid_method", std::string("conservative")));
    c.time_origin = j.value("time_origin", std::string());
  } catch (const json::exception& e) {
    fail("{}: bad dataset configuration: {}", where, e.what());
  }
  return c;
}

std::unique_ptr<GridSource> open_forecast_source(const ForecastConfig& cfg) {
  if (cfg.grid.empty()) return open_grid_source(cfg.paths, SourceOptions{cfg.time_origin});
  const LatLonGrid target = parse_grid(cfg.grid);  // a bad text: the error naming it
  if (cfg.coarsen != 1)
    fail("--grid {} and --coarsen {} cannot be combined: regrid straight onto the grid you want "
         "(e.g. --grid {}x{}) instead of coarsening the regridded fields",
         cfg.grid, cfg.coarsen, target.H() / std::max(cfg.coarsen, 1),
         target.W() / std::max(cfg.coarsen, 1));
  auto inner = open_grid_source(cfg.paths, SourceOptions{cfg.time_origin});
  // The weights go where the statistics cache goes: beside --stats-cache when given (data
  // that are read-only), else beside the data.
  std::string dir;
  if (!cfg.cache_path.empty()) {
    dir = std::filesystem::path(cfg.cache_path).parent_path().string();
    if (dir.empty()) dir = ".";
  } else {
    dir = cache_dir_beside(cfg.paths, *inner);
  }
  if (::access(dir.c_str(), W_OK) != 0) dir.clear();  // read-only data: no weights cache
  RegridOptions ro;
  ro.method = cfg.regrid_method;
  return std::make_unique<RegriddedSource>(std::move(inner), target, ro, dir);
}

ForecastDataset::ForecastDataset(const ForecastConfig& cfg, Split split)
    : cfg_(cfg), split_(split) {
  if (cfg_.inputs.empty()) fail("forecast dataset: no input variables");
  if (cfg_.outputs.empty()) fail("forecast dataset: no output variables");
  if (cfg_.lead_hours.empty()) fail("forecast dataset: no lead times");
  for (double l : cfg_.lead_hours)
    if (!(l > 0)) fail("forecast dataset: lead time {} h must be positive", l);
  if (cfg_.coarsen < 1) fail("forecast dataset: coarsening factor {} must be >= 1", cfg_.coarsen);
  if (cfg_.batch_size < 1) fail("forecast dataset: batch size {} must be >= 1", cfg_.batch_size);
  if (!cfg_.time_origin.empty()) {
    try {
      parse_iso_datetime(cfg_.time_origin);
    } catch (const Error& e) {
      fail("forecast dataset: time origin: {}", e.what());
    }
  }
  ds_ = open_forecast_source(cfg_);

  // Fields, their grid and the common times.
  auto make = [&](const std::string& name) {
    Field f;
    f.name = name;
    try {
      f.ref = ds_->resolve(name);
    } catch (const Error& e) {
      fail("forecast dataset: unknown variable '{}': {}", name, e.what());
    }
    const GridVariable& v = ds_->variable(f.ref.variable);
    f.constant = !v.has_time;
    if (v.has_time && !v.time_has_epoch) fail("forecast dataset: {}", time_origin_needed(name, v));
    if (Hf_ == 0) {
      Hf_ = v.H(), Wf_ = v.W();
      if (Hf_ % cfg_.coarsen || Wf_ % cfg_.coarsen)
        fail("forecast dataset: grid {}x{} is not divisible by the coarsening factor {}", Hf_,
             Wf_, cfg_.coarsen);
      H_ = Hf_ / cfg_.coarsen, W_ = Wf_ / cfg_.coarsen;
      for (int64_t i = 0; i < H_; ++i) {
        double s = 0;
        for (int c = 0; c < cfg_.coarsen; ++c) s += v.lat[i * cfg_.coarsen + c];
        lat_.push_back(static_cast<float>(s / cfg_.coarsen));
      }
      for (int64_t j = 0; j < W_; ++j) {  // canonical longitudes ascend: no wrap in a block
        double s = 0;
        for (int c = 0; c < cfg_.coarsen; ++c) s += v.lon[j * cfg_.coarsen + c];
        lon_.push_back(s / cfg_.coarsen);
      }
    } else if (v.H() != Hf_ || v.W() != Wf_) {
      fail("forecast dataset: '{}' is on a {}x{} grid, other fields on {}x{}", name, v.H(), v.W(),
           Hf_, Wf_);
    }
    return f;
  };
  for (const auto& n : cfg_.inputs) in_.push_back(make(n));
  for (const auto& n : cfg_.outputs) {
    out_.push_back(make(n));
    if (out_.back().constant) fail("forecast dataset: output '{}' has no time axis", n);
  }
  {
    std::set<std::string> seen;
    for (const auto& n : cfg_.inputs)
      if (!seen.insert(n).second) fail("forecast dataset: input '{}' listed twice", n);
  }
  std::map<int64_t, std::vector<int64_t>> common;  // time key -> index per time-dependent field
  std::vector<Field*> timed;
  for (auto* fs : {&in_, &out_})
    for (auto& f : *fs)
      if (!f.constant) timed.push_back(&f);
  if (timed.empty()) fail("forecast dataset: no time-dependent field among the inputs/outputs");
  for (size_t fi = 0; fi < timed.size(); ++fi) {
    const auto& ts = ds_->variable(timed[fi]->ref.variable).times;
    for (size_t t = 0; t < ts.size(); ++t) {
      auto& e = common[time_key(ts[t])];
      if (e.size() == fi) e.push_back(static_cast<int64_t>(t));
    }
  }
  for (const auto& [key, idx] : common) {
    if (idx.size() != timed.size()) continue;  // not in every field
    times_.push_back(static_cast<double>(key) / 3600.0);
    for (size_t fi = 0; fi < timed.size(); ++fi) timed[fi]->tindex.push_back(idx[fi]);
  }
  if (times_.empty()) fail("forecast dataset: the fields have no time step in common");

  // Statistics: from the cache or computed (and cached).
  std::string fp;
  for (const auto& source_file : ds_->files()) {
    // A Zarr store is a directory, whose own mtime changes when this cache is written into it:
    // its metadata file stands for it (xarray rewrites .zmetadata whenever it writes the store).
    const std::string file =
        is_zarr_store(source_file) ? zarr_metadata_file(source_file) : source_file;
    struct stat st {};
    if (::stat(file.c_str(), &st) != 0) fail("forecast dataset: cannot stat '{}'", file);
    fp += fmt::format("{}|{}|{}.{}\n", file, static_cast<int64_t>(st.st_size),
                      static_cast<int64_t>(st.st_mtim.tv_sec),
                      static_cast<int64_t>(st.st_mtim.tv_nsec));
  }
  for (const auto& n : cfg_.inputs) fp += "in:" + n + "\n";
  for (const auto& n : cfg_.outputs) fp += "out:" + n + "\n";
  fp += fmt::format("train:{}..{}\ncoarsen:{}\n", cfg_.train.begin, cfg_.train.end, cfg_.coarsen);
  if (!cfg_.grid.empty())  // only then: the caches of runs on the data's own grid stay valid
    fp += fmt::format("grid:{}x{} {}\n", H_, W_, regrid_method_name(cfg_.regrid_method));
  fingerprint_ = fmt::format("{:016x}", fnv1a(fp));
  cache_path_ = cfg_.cache_path;
  if (cache_path_.empty()) {  // beside the data: in the first directory given, or the first file's
    const std::filesystem::path first = cfg_.paths.front();
    cache_path_ = ((std::filesystem::is_directory(first) ? first
                                                         : std::filesystem::path(ds_->files().front())
                                                               .parent_path()) /
                   "seqvit_stats.safetensors")
                      .string();
  }
  buf_.resize(static_cast<size_t>(Hf_ * Wf_));
  const char* sn = split_name(split_);
  const auto [b, e] = parse_range(
      split_ == Split::train ? cfg_.train : split_ == Split::val ? cfg_.val : cfg_.test, sn);
  if (!cfg_.climatology.empty() && cfg_.normalisation.empty())
    fail("forecast dataset: a climatology is given without a normalisation; give both (a "
         "checkpoint's) or neither");
  stats_given_ = !cfg_.climatology.empty();
  if (stats_given_) {
    // The statistics are the configuration's: the training period is not needed. The missing
    // values of this split's time steps come from a matching cache, or are looked up now.
    if (!load_cache()) compute_nan_masks(b, e);
    for (const auto& f : out_) {
      const auto it = cfg_.climatology.find(f.name);
      if (it == cfg_.climatology.end())
        fail("forecast dataset: the given climatology has no field for output '{}'", f.name);
      if (static_cast<int64_t>(it->second.size()) != H_ * W_)
        fail("forecast dataset: the given climatology of '{}' has {} values, but the grid is "
             "{}x{} ({} values)",
             f.name, it->second.size(), H_, W_, H_ * W_);
      clim_[f.name] = it->second;
    }
  } else if (!load_cache()) {
    if (cfg_.require_stats_cache)
      fail("forecast dataset: the statistics cache '{}' is missing or does not match the data "
           "(fingerprint {}) on this rank, after rank 0 computed it; every rank must see the "
           "same files (put --stats-cache and the data on a file system all nodes share)",
           cache_path_, fingerprint_);
    compute_stats();
    stats_computed_ = true;
    save_cache();
  }
  if (!cfg_.normalisation.empty())
    for (const auto* fs : {&in_, &out_})
      for (const auto& f : *fs) {
        const auto it = cfg_.normalisation.find(f.name);
        if (it == cfg_.normalisation.end())
          fail("forecast dataset: the given normalisation has no mean/std for '{}'", f.name);
        if (!(it->second.second > 0))
          fail("forecast dataset: the given std of '{}' is {}; it must be positive", f.name,
               it->second.second);
        FieldStats& st = stats_[f.name];  // count and nan_count: the cache's, or 0 when given
        st.mean = it->second.first;
        st.std = it->second.second;
      }
  for (const auto& f : in_) {
    if (!f.constant) continue;
    std::vector<float> c(static_cast<size_t>(H_ * W_));
    read_coarse(f, 0, c.data());
    const auto& s = stats_.at(f.name);
    for (auto& v : c) v = static_cast<float>((v - s.mean) / s.std);
    constant_[f.name] = std::move(c);
  }

  // Samples of this split.
  std::map<int64_t, int64_t> index;
  for (size_t k = 0; k < times_.size(); ++k) index[time_key(times_[k])] = static_cast<int64_t>(k);
  int64_t in_range = 0;
  const int64_t nl = static_cast<int64_t>(cfg_.lead_hours.size());
  for (int64_t k = 0; k < static_cast<int64_t>(times_.size()); ++k) {
    const double t = times_[k];
    if (t < b || t >= e) continue;
    ++in_range;
    const double lead = cfg_.lead_hours[k % nl];
    const auto it = index.find(time_key(t + lead));
    if (it == index.end() || t + lead >= e) continue;
    if (cfg_.missing == MissingPolicy::skip && (nan_in_[k] || nan_out_[it->second])) {
      ++skipped_;
      continue;
    }
    samples_.push_back({k, it->second, t, lead});
  }
  if (in_range == 0)
    fail("forecast dataset: {} split [{}, {}) is empty: the data cover {} .. {}", sn,
         iso8601(b), iso8601(e), iso8601(times_.front()), iso8601(times_.back()));
  if (samples_.empty())
    fail("forecast dataset: {} split [{}, {}) has {} time steps but no sample: lead time(s) "
         "{} h leave no target inside the split (or all {} candidates had missing values)",
         sn, iso8601(b), iso8601(e), in_range, fmt::join(cfg_.lead_hours, ", "), skipped_);
}

ForecastDataset::~ForecastDataset() { stop_worker(); }

int64_t ForecastDataset::num_batches() const {
  return (size() + cfg_.batch_size - 1) / cfg_.batch_size;
}

const FieldRef& ForecastDataset::field_ref(const std::string& name) const {
  for (const auto* fs : {&in_, &out_})
    for (const auto& f : *fs)
      if (f.name == name) return f.ref;
  fail("forecast dataset: '{}' is neither an input nor an output", name);
}

const FieldStats& ForecastDataset::stats(const std::string& name) const {
  const auto it = stats_.find(name);
  if (it == stats_.end()) fail("forecast dataset: no statistics for '{}'", name);
  return it->second;
}

const std::vector<float>& ForecastDataset::climatology(const std::string& output) const {
  const auto it = clim_.find(output);
  if (it == clim_.end()) fail("forecast dataset: '{}' is not an output", output);
  return it->second;
}

int64_t ForecastDataset::filled_values() const {
  std::lock_guard<std::mutex> l(fill_mu_);
  return filled_;
}

void ForecastDataset::read_coarse(const Field& f, int64_t k, float* out) const {
  const int64_t t = f.constant ? 0 : f.tindex[k];
  const int c = cfg_.coarsen;
  if (c == 1) {
    ds_->read(f.ref, t, out);
    return;
  }
  ds_->read(f.ref, t, buf_.data());
  const double inv = 1.0 / (c * c);
  for (int64_t i = 0; i < H_; ++i)
    for (int64_t j = 0; j < W_; ++j) {
      double s = 0;
      for (int a = 0; a < c; ++a)
        for (int bb = 0; bb < c; ++bb) s += buf_[(i * c + a) * Wf_ + j * c + bb];
      out[i * W_ + j] = static_cast<float>(s * inv);  // NaN in a block -> NaN
    }
}

void ForecastDataset::compute_stats() {
  const auto [b, e] = parse_range(cfg_.train, "train");
  const int64_t T = static_cast<int64_t>(times_.size()), n = H_ * W_;
  nan_in_.assign(T, 0);
  nan_out_.assign(T, 0);
  std::vector<float> v(static_cast<size_t>(n));
  int64_t total = 0, done = 0;
  for (const auto* fs : {&in_, &out_})
    for (const auto& f : *fs) total += f.constant ? 1 : T;
  auto accumulate = [&](const Field& f, bool is_out) {
    FieldStats s;
    double mean = 0, m2 = 0;  // Chan et al. combination of per-step (mean, M2), in double
    std::vector<double> csum, ccnt;
    if (is_out) csum.assign(n, 0), ccnt.assign(n, 0);
    const int64_t steps = f.constant ? 1 : T;
    bool any_train = false;
    for (int64_t k = 0; k < steps; ++k) {
      read_coarse(f, k, v.data());
      if (cfg_.stats_progress && (++done % 256 == 0 || done == total))
        cfg_.stats_progress(done, total);
      const bool train = f.constant || (times_[k] >= b && times_[k] < e);
      bool nan = false;
      for (float x : v) nan |= std::isnan(x);
      if (nan) {
        if (f.constant) {
          std::fill(nan_in_.begin(), nan_in_.end(), 1);
        } else {
          (is_out ? nan_out_ : nan_in_)[k] = 1;
        }
      }
      if (!train) continue;
      any_train = true;
      double sm = 0;
      int64_t cnt = 0;
      for (int64_t p = 0; p < n; ++p)
        if (!std::isnan(v[p])) {
          sm += v[p], ++cnt;
          if (is_out) csum[p] += v[p], ccnt[p] += 1;
        }
      s.nan_count += n - cnt;
      if (cnt == 0) continue;
      const double mb = sm / cnt;
      double m2b = 0;
      for (int64_t p = 0; p < n; ++p)
        if (!std::isnan(v[p])) m2b += (v[p] - mb) * (v[p] - mb);
      const double tot = static_cast<double>(s.count + cnt), d = mb - mean;
      mean += d * cnt / tot;
      m2 += m2b + d * d * static_cast<double>(s.count) * cnt / tot;
      s.count += cnt;
    }
    if (!any_train)
      fail("forecast dataset: train split [{}, {}) holds no time step of the data ({} .. {})",
           cfg_.train.begin, cfg_.train.end, iso8601(times_.front()), iso8601(times_.back()));
    if (s.count == 0) fail("forecast dataset: '{}' has no finite value in the train split", f.name);
    s.mean = mean;
    s.std = std::sqrt(m2 / static_cast<double>(s.count));
    if (!(s.std > 0)) s.std = 1.0;  // a uniform field: only centred
    stats_[f.name] = s;
    if (is_out) {
      std::vector<float> c(static_cast<size_t>(n));
      for (int64_t p = 0; p < n; ++p)
        c[p] = ccnt[p] > 0 ? static_cast<float>(csum[p] / ccnt[p]) : std::nanf("");
      clim_[f.name] = std::move(c);
    }
  };
  for (const auto& f : in_) accumulate(f, false);
  for (const auto& f : out_) accumulate(f, true);
}

void ForecastDataset::compute_nan_masks(double begin, double end) {
  const int64_t T = static_cast<int64_t>(times_.size()), n = H_ * W_;
  nan_in_.assign(T, 0);
  nan_out_.assign(T, 0);
  if (cfg_.missing == MissingPolicy::fill) return;  // only the skip policy looks at them
  std::vector<int64_t> steps;  // the time steps of [begin, end)
  for (int64_t k = 0; k < T; ++k)
    if (times_[k] >= begin && times_[k] < end) steps.push_back(k);
  int64_t total = 0, done = 0;
  for (const auto* fs : {&in_, &out_})
    for (const auto& f : *fs) total += f.constant ? 1 : static_cast<int64_t>(steps.size());
  std::vector<float> v(static_cast<size_t>(n));
  auto any_nan = [&] {
    return std::any_of(v.begin(), v.end(), [](float x) { return std::isnan(x); });
  };
  for (const auto* fs : {&in_, &out_})
    for (const auto& f : *fs) {
      const bool is_out = fs == &out_;
      for (int64_t k : f.constant ? std::vector<int64_t>{0} : steps) {
        read_coarse(f, k, v.data());
        if (cfg_.stats_progress && (++done % 256 == 0 || done == total))
          cfg_.stats_progress(done, total);
        if (!any_nan()) continue;
        if (f.constant) std::fill(nan_in_.begin(), nan_in_.end(), 1);
        else (is_out ? nan_out_ : nan_in_)[k] = 1;
      }
    }
}

bool ForecastDataset::load_cache() {
  if (!std::filesystem::exists(cache_path_)) return false;
  try {
    io::SafetensorsReader r(cache_path_);
    const auto& md = r.metadata();
    const auto fp = md.find("fingerprint");
    if (fp == md.end() || fp->second != fingerprint_) return false;
    const int64_t T = static_cast<int64_t>(times_.size());
    std::map<std::string, FieldStats> st;
    std::map<std::string, std::vector<float>> cl;
    for (const auto* fs : {&in_, &out_})
      for (const auto& f : *fs) {
        FieldStats s;
        s.mean = std::stod(md.at("mean/" + f.name));
        s.std = std::stod(md.at("std/" + f.name));
        s.count = std::stoll(md.at("count/" + f.name));
        s.nan_count = std::stoll(md.at("nan_count/" + f.name));
        st[f.name] = s;
      }
    for (const auto& f : out_) {
      std::vector<float> c(static_cast<size_t>(H_ * W_));
      r.read_f32("clim/" + f.name, {H_, W_}, c.data());
      cl[f.name] = std::move(c);
    }
    std::vector<float> a(static_cast<size_t>(T)), o(static_cast<size_t>(T));
    r.read_f32("nan_in", {T}, a.data());
    r.read_f32("nan_out", {T}, o.data());
    stats_ = std::move(st);
    clim_ = std::move(cl);
    nan_in_.assign(a.begin(), a.end());
    nan_out_.assign(o.begin(), o.end());
    return true;
  } catch (const std::exception&) {
    return false;  // unreadable or incomplete: recompute and overwrite
  }
}

void ForecastDataset::save_cache() const {
  io::SafetensorsWriter w;
  w.set_metadata("fingerprint", fingerprint_);
  for (const auto& [name, s] : stats_) {
    w.set_metadata("mean/" + name, fmt::format("{:.17g}", s.mean));
    w.set_metadata("std/" + name, fmt::format("{:.17g}", s.std));
    w.set_metadata("count/" + name, std::to_string(s.count));
    w.set_metadata("nan_count/" + name, std::to_string(s.nan_count));
  }
  for (const auto& [name, c] : clim_) w.add_f32("clim/" + name, {H_, W_}, c.data());
  const int64_t T = static_cast<int64_t>(times_.size());
  std::vector<float> a(nan_in_.begin(), nan_in_.end()), o(nan_out_.begin(), nan_out_.end());
  w.add_f32("nan_in", {T}, a.data());
  w.add_f32("nan_out", {T}, o.data());
  try {
    w.write(cache_path_);
  } catch (const Error& e) {
    fail("forecast dataset: cannot write the statistics cache (set cache_path to a writable "
         "place): {}", e.what());
  }
}

std::vector<int64_t> ForecastDataset::epoch_order(int64_t epoch) const {
  std::vector<int64_t> order(samples_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  if (!cfg_.shuffle) return order;
  Rng rng(cfg_.seed * 0x9e3779b97f4a7c15ull + static_cast<uint64_t>(epoch) + 1);
  for (size_t i = order.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(rng.next() % i);
    std::swap(order[i - 1], order[j]);
  }
  return order;
}

Batch ForecastDataset::load(const std::vector<int64_t>& ids) const {
  Batch bt;
  bt.B = static_cast<int64_t>(ids.size());
  bt.V = static_cast<int64_t>(in_.size());
  bt.Vo = static_cast<int64_t>(out_.size());
  bt.H = H_, bt.W = W_;
  const int64_t n = H_ * W_;
  bt.x.resize(static_cast<size_t>(bt.B * bt.V * n));
  bt.y.resize(static_cast<size_t>(bt.B * bt.Vo * n));
  bt.lat = lat_;
  int64_t filled = 0;
  auto norm = [&](const std::string& name, float* p) {
    const auto& s = stats_.at(name);
    for (int64_t q = 0; q < n; ++q) {
      if (std::isnan(p[q])) {
        if (cfg_.missing == MissingPolicy::skip)
          fail("forecast dataset: unexpected missing value in '{}' (skip policy)", name);
        p[q] = 0.0f, ++filled;
      } else {
        p[q] = static_cast<float>((p[q] - s.mean) / s.std);
      }
    }
  };
  for (int64_t i = 0; i < bt.B; ++i) {
    const Sample& s = samples_.at(ids[i]);
    bt.lead_times.push_back(static_cast<float>(s.lead));
    bt.times.push_back(s.t_hours);
    for (int64_t v = 0; v < bt.V; ++v) {
      float* p = bt.x.data() + (i * bt.V + v) * n;
      if (in_[v].constant) {
        const auto& c = constant_.at(in_[v].name);
        for (int64_t q = 0; q < n; ++q) {
          p[q] = std::isnan(c[q]) ? (++filled, 0.0f) : c[q];
        }
      } else {
        read_coarse(in_[v], s.ti, p);
        norm(in_[v].name, p);
      }
    }
    for (int64_t v = 0; v < bt.Vo; ++v) {
      float* p = bt.y.data() + (i * bt.Vo + v) * n;
      read_coarse(out_[v], s.to, p);
      norm(out_[v].name, p);
    }
  }
  bt.filled_values = filled;
  std::lock_guard<std::mutex> l(fill_mu_);
  filled_ += filled;
  return bt;
}

void ForecastDataset::stop_worker() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  stop_ = false;
  ready_.reset();
  error_ = nullptr;
}

void ForecastDataset::start_epoch(int64_t epoch, int64_t first_batch) {
  stop_worker();
  if (first_batch < 0 || first_batch > num_batches())
    fail("forecast dataset: cannot start epoch {} at batch {}: it has {} batches", epoch,
         first_batch, num_batches());
  order_ = epoch_order(epoch);
  next_batch_ = first_batch;
  requested_ = first_batch;
  started_ = true;
  if (cfg_.prefetch) worker_ = std::thread([this] { worker_loop(); });
}

void ForecastDataset::set_shard(int index, int count) {
  if (count < 1 || index < 0 || index >= count)
    fail("forecast dataset: shard {} of {} does not exist (valid: 0 .. count - 1, count >= 1)",
         index, count);
  shard_index_ = index;
  shard_count_ = count;
}

std::vector<int64_t> ForecastDataset::batch_ids(int64_t k) const {
  const int64_t lo = k * cfg_.batch_size, hi = std::min<int64_t>(lo + cfg_.batch_size, size());
  const int64_t n = hi - lo;
  return std::vector<int64_t>(order_.begin() + lo + n * shard_index_ / shard_count_,
                              order_.begin() + lo + n * (shard_index_ + 1) / shard_count_);
}

void ForecastDataset::worker_loop() {
  quiet_hdf5_errors_on_this_thread();
  const int64_t nb = num_batches();
  for (;;) {
    int64_t k;
    {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return stop_ || (!ready_ && !error_ && requested_ < nb); });
      if (stop_) return;
      k = requested_++;
    }
    std::optional<Batch> b;
    std::exception_ptr err;
    try {
      b = load(batch_ids(k));
    } catch (...) {
      err = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      if (err) error_ = err;
      else ready_ = std::move(b);
    }
    cv_.notify_all();
    if (err) return;
  }
}

bool ForecastDataset::next(Batch& out) {
  if (!started_) fail("forecast dataset: next() before start_epoch()");
  if (next_batch_ >= num_batches()) return false;
  if (!cfg_.prefetch) {
    out = load(batch_ids(next_batch_));
    ++next_batch_;
    return true;
  }
  {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return ready_.has_value() || error_ != nullptr; });
    if (error_) {
      std::exception_ptr e = error_;
      l.unlock();
      stop_worker();
      next_batch_ = num_batches();  // the epoch ends with the error
      std::rethrow_exception(e);
    }
    out = std::move(*ready_);
    ready_.reset();
    ++next_batch_;
  }
  cv_.notify_all();
  return true;
}

void ForecastDataset::denormalise(const std::string& name, float* data, int64_t n) const {
  const auto& s = stats(name);
  for (int64_t i = 0; i < n; ++i) data[i] = static_cast<float>(data[i] * s.std + s.mean);
}

void ForecastDataset::denormalise_y(float* y, int64_t B) const {
  const int64_t n = H_ * W_;
  for (int64_t i = 0; i < B; ++i)
    for (size_t v = 0; v < out_.size(); ++v)
      denormalise(out_[v].name, y + (i * static_cast<int64_t>(out_.size()) + v) * n, n);
}

}  // namespace seqvit::data
