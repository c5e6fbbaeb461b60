// ForecastDataset on small hand-written files (tests/data/nc_test_writer.h): a 4x8 grid, 6-hourly
// from 1979-01-01, t2m (time, lat, lon), z (time, level = 500, 850, lat, lon), lsm (lat, lon).
#include "data/forecast_dataset.h"
#include "data/netcdf_reader.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>

#include "core/check.h"
#include "data/cf_time.h"
#include "data/nc_test_writer.h"
#include "data/synth/era5_synth.h"

namespace fs = std::filesystem;
using namespace seqvit;
using namespace seqvit::data;

namespace {

constexpr int kH = 4, kW = 8;
const std::vector<double> kLat = {67.5, 22.5, -22.5, -67.5};

double t2m_value(size_t k, size_t i, size_t j) {
  return 250.0 + 0.5 * static_cast<double>(k) + 3.0 * i + 0.25 * j + std::sin(0.7 * k + j);
}
double z_value(size_t k, size_t l, size_t i, size_t j) {
  return 50000.0 + 1000.0 * l + 40.0 * i - 7.0 * j + 30.0 * std::cos(0.3 * k + i);
}
double lsm_value(size_t i, size_t j) { return (i * 8 + j) % 3 == 0 ? 1.0 : 0.25 * i; }

double hours_1979() { return 24.0 * static_cast<double>(days_from_civil(1979, 1, 1)); }

class ForecastDatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = fs::temp_directory_path() /
           ("seqvit_fc_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(tmp_);
    fs::create_directories(tmp_);
  }
  void TearDown() override { fs::remove_all(tmp_); }

  // Writes T 6-hourly steps; NaN at the (time, row, col) listed for t2m and z (level 500).
  // z covers steps z_first .. T-1 only (a different coverage from t2m).
  void write_data(int T, std::set<std::array<size_t, 3>> t2m_nan = {},
                  std::set<std::array<size_t, 3>> z_nan = {}, int z_first = 0) {
    using nctest::Coord;
    using nctest::Var;
    const Coord time{"time", nctest::range(0, 6, T), "hours since 1979-01-01 00:00:00",
                     "gregorian"};
    const Coord lat{"latitude", kLat, "degrees_north", ""};
    const Coord lon{"longitude", nctest::range(0, 45, kW), "degrees_east", ""};
    const Coord lev{"level", {500, 850}, "hPa", ""};
    Var t{"t2m", NC_FLOAT, {"time", "latitude", "longitude"}, "K", {}, {}, nullptr};
    t.raw = [t2m_nan](const std::vector<size_t>& x) {
      if (t2m_nan.count({x[0], x[1], x[2]})) return std::nan("");
      return static_cast<double>(static_cast<float>(t2m_value(x[0], x[1], x[2])));
    };
    Var z{"z", NC_FLOAT, {"time", "level", "latitude", "longitude"}, "m**2 s**-2", {}, {},
          nullptr};
    z.raw = [z_nan](const std::vector<size_t>& x) {
      if (x[1] == 0 && z_nan.count({x[0], x[2], x[3]})) return std::nan("");
      return static_cast<double>(static_cast<float>(z_value(x[0], x[1], x[2], x[3])));
    };
    Var m{"lsm", NC_FLOAT, {"latitude", "longitude"}, "(0 - 1)", {}, {}, nullptr};
    m.raw = [](const std::vector<size_t>& x) { return lsm_value(x[0], x[1]); };
    fs::create_directories(tmp_ / "data");
    nctest::write((tmp_ / "data" / "t2m.nc").string(), NC_CLOBBER | NC_NETCDF4, {time, lat, lon},
                  {t});
    const Coord ztime{"time", nctest::range(6.0 * z_first, 6, T - z_first),
                      "hours since 1979-01-01 00:00:00", "gregorian"};
    z.raw = [z_nan, z_first, zr = z.raw](const std::vector<size_t>& x) {
      std::vector<size_t> g = x;
      g[0] += static_cast<size_t>(z_first);
      return zr(g);
    };
    nctest::write((tmp_ / "data" / "z.nc").string(), NC_CLOBBER | NC_NETCDF4,
                  {ztime, lev, lat, lon}, {z});
    nctest::write((tmp_ / "data" / "lsm.nc").string(), NC_CLOBBER, {lat, lon}, {m});
  }

  // 10 days: train 1-5 Jan, val 6-7 Jan, test 8-10 Jan.
  ForecastConfig config() const {
    ForecastConfig c;
    c.paths = {(tmp_ / "data").string()};
    c.inputs = {"t2m", "z_500", "lsm"};
    c.outputs = {"t2m"};
    c.lead_hours = {6};
    c.train = {"1979-01-01", "1979-01-06"};
    c.val = {"1979-01-06", "1979-01-08"};
    c.test = {"1979-01-08", "1979-01-11"};
    c.batch_size = 4;
    c.seed = 7;
    return c;
  }

  fs::path tmp_;
};

// Direct two-pass statistics of a field over time steps [0, n_train) (NaN skipped).
std::pair<double, double> direct_stats(const NetcdfDataset& ds, const std::string& name,
                                       int64_t n_train) {
  const FieldRef f = ds.resolve(name);
  std::vector<float> v(kH * kW);
  std::vector<double> all;
  for (int64_t k = 0; k < n_train; ++k) {
    ds.read(f, k, v.data());
    for (float x : v)
      if (!std::isnan(x)) all.push_back(x);
  }
  double m = 0, s = 0;
  for (double x : all) m += x;
  m /= static_cast<double>(all.size());
  for (double x : all) s += (x - m) * (x - m);
  return {m, std::sqrt(s / static_cast<double>(all.size()))};
}

TEST_F(ForecastDatasetTest, NormalisationStatsEqualDirectComputation) {
  write_data(40);
  const auto c = config();
  ForecastDataset d(c, Split::train);
  NetcdfDataset ds(c.paths);
  for (const char* name : {"t2m", "z_500"}) {
    const auto [m, s] = direct_stats(ds, name, 20);  // 20 steps in 1-5 Jan
    EXPECT_NEAR(d.stats(name).mean, m, 1e-9 * std::abs(m)) << name;
    EXPECT_NEAR(d.stats(name).std, s, 1e-9 * s) << name;
    EXPECT_EQ(d.stats(name).count, 20 * kH * kW);
  }
  const auto [lm, ls] = direct_stats(ds, "lsm", 1);
  EXPECT_NEAR(d.stats("lsm").mean, lm, 1e-12);
  EXPECT_NEAR(d.stats("lsm").std, ls, 1e-12);
  // Climatology: per-pixel mean of the 20 training steps.
  const auto& clim = d.climatology("t2m");
  ASSERT_EQ(clim.size(), static_cast<size_t>(kH * kW));
  for (int i = 0; i < kH; ++i)
    for (int j = 0; j < kW; ++j) {
      double s = 0;
      for (int k = 0; k < 20; ++k) s += static_cast<float>(t2m_value(k, i, j));
      EXPECT_NEAR(clim[i * kW + j], s / 20, 1e-4);
    }
  EXPECT_THROW(d.climatology("z_500"), Error);
}

TEST_F(ForecastDatasetTest, CacheHitAndInvalidation) {
  write_data(40);
  auto c = config();
  std::string fp;
  {
    ForecastDataset d(c, Split::train);
    EXPECT_TRUE(d.stats_computed());
    EXPECT_TRUE(fs::exists(d.cache_path()));
    EXPECT_EQ(fs::path(d.cache_path()).parent_path(), tmp_ / "data");
    fp = d.fingerprint();
  }
  const double mean = ForecastDataset(c, Split::val).stats("t2m").mean;
  {
    ForecastDataset d(c, Split::test);  // another split, same training statistics
    EXPECT_FALSE(d.stats_computed());
    EXPECT_EQ(d.stats("t2m").mean, mean);
    EXPECT_EQ(d.fingerprint(), fp);
  }
  c.inputs = {"t2m", "z_500"};  // variable list changed: recomputed
  {
    ForecastDataset d(c, Split::train);
    EXPECT_TRUE(d.stats_computed());
    EXPECT_NE(d.fingerprint(), fp);
  }
  {
    ForecastDataset d(c, Split::train);
    EXPECT_FALSE(d.stats_computed());
  }
  c.train = {"1979-01-01", "1979-01-05"};  // split changed
  EXPECT_TRUE(ForecastDataset(c, Split::train).stats_computed());
  // A corrupt cache is recomputed, not trusted.
  { std::ofstream(ForecastDataset(c, Split::train).cache_path()) << "garbage"; }
  EXPECT_TRUE(ForecastDataset(c, Split::train).stats_computed());
}

TEST_F(ForecastDatasetTest, SplitBoundaries) {
  write_data(40);
  const auto c = config();
  const double t0 = hours_1979();
  ForecastDataset tr(c, Split::train), va(c, Split::val), te(c, Split::test);
  // Train: inputs 0 .. 114 h (target before 120 h), val: 120 .. 162 h, test: 168 .. 228 h.
  ASSERT_EQ(tr.size(), 19);
  EXPECT_EQ(tr.sample_time(0), t0);
  EXPECT_EQ(tr.sample_time(18), t0 + 108);
  ASSERT_EQ(va.size(), 7);
  EXPECT_EQ(va.sample_time(0), t0 + 120);
  EXPECT_EQ(va.sample_time(6), t0 + 156);
  ASSERT_EQ(te.size(), 11);  // data end at 234 h
  EXPECT_EQ(te.sample_time(0), t0 + 168);
  EXPECT_EQ(te.sample_time(10), t0 + 228);
  for (auto* d : {&tr, &va, &te})
    for (int64_t i = 0; i < d->size(); ++i) EXPECT_EQ(d->sample_lead(i), 6.0);
}

TEST_F(ForecastDatasetTest, OnlyTimesPresentInEveryFieldMakeSamples) {
  write_data(40, {}, {}, 4);  // z starts 24 h after t2m
  auto c = config();
  c.lead_hours = {6, 12};
  ForecastDataset d(c, Split::train);
  const double t0 = hours_1979();
  // Common steps 4 .. 39; train inputs at 4 .. 18 (k even: +6 h, k odd: +12 h, target < 120 h).
  ASSERT_EQ(d.size(), 8 + 7);
  EXPECT_EQ(d.sample_time(0), t0 + 24);
  for (int64_t i = 0; i < d.size(); ++i) EXPECT_GE(d.sample_time(i), t0 + 24);
  NetcdfDataset ds(c.paths);
  const auto [m, s] = [&] {  // t2m statistics over the common training steps 4 .. 19 only
    std::vector<float> v(kH * kW);
    double sm = 0, sq = 0;
    for (int k = 4; k < 20; ++k) {
      ds.read(ds.resolve("t2m"), k, v.data());
      for (float x : v) sm += x;
    }
    const double mean = sm / (16.0 * kH * kW);
    for (int k = 4; k < 20; ++k) {
      ds.read(ds.resolve("t2m"), k, v.data());
      for (float x : v) sq += (x - mean) * (x - mean);
    }
    return std::pair<double, double>{mean, std::sqrt(sq / (16.0 * kH * kW))};
  }();
  EXPECT_NEAR(d.stats("t2m").mean, m, 1e-9 * m);
  EXPECT_NEAR(d.stats("t2m").std, s, 1e-9 * s);
  // z time index 0 is t2m step 4: the pairing goes by time, not by index.
  const Batch b = d.load({0});
  std::vector<float> v(kH * kW);
  ds.read(ds.resolve("z_500"), 0, v.data());
  const auto& zs = d.stats("z_500");
  for (int p = 0; p < kH * kW; ++p)
    EXPECT_EQ(b.x[1 * kH * kW + p], static_cast<float>((v[p] - zs.mean) / zs.std));
}

TEST_F(ForecastDatasetTest, SamplePairingExactAgainstDirectReads) {
  write_data(40);
  auto c = config();
  c.lead_hours = {6, 12};
  ForecastDataset d(c, Split::train);
  NetcdfDataset ds(c.paths);
  const double t0 = hours_1979();
  std::vector<int64_t> ids(d.size());
  for (int64_t i = 0; i < d.size(); ++i) ids[i] = i;
  const Batch b = d.load(ids);
  ASSERT_EQ(b.B, d.size());
  ASSERT_EQ(b.V, 3);
  ASSERT_EQ(b.Vo, 1);
  EXPECT_EQ(b.lat, std::vector<float>(kLat.begin(), kLat.end()));
  const int n = kH * kW;
  std::vector<float> v(n);
  for (int64_t i = 0; i < b.B; ++i) {
    const int64_t k = std::llround((b.times[i] - t0) / 6);
    const double lead = k % 2 == 0 ? 6 : 12;  // leads[index % count]
    EXPECT_EQ(b.lead_times[i], lead);
    for (int vi = 0; vi < 3; ++vi) {
      const std::string name = c.inputs[vi];
      ds.read(ds.resolve(name), name == "lsm" ? 0 : k, v.data());
      const auto& s = d.stats(name);
      for (int p = 0; p < n; ++p)
        ASSERT_EQ(b.x[(i * 3 + vi) * n + p], static_cast<float>((v[p] - s.mean) / s.std))
            << name << " sample " << i;
    }
    ds.read(ds.resolve("t2m"), k + static_cast<int64_t>(lead) / 6, v.data());
    const auto& s = d.stats("t2m");
    for (int p = 0; p < n; ++p)
      ASSERT_EQ(b.y[i * n + p], static_cast<float>((v[p] - s.mean) / s.std)) << i;
    // denormalise gives the physical values back.
    std::vector<float> y(b.y.begin() + i * n, b.y.begin() + (i + 1) * n);
    d.denormalise_y(y.data(), 1);
    for (int p = 0; p < n; ++p) EXPECT_NEAR(y[p], v[p], 1e-3);
  }
}

TEST_F(ForecastDatasetTest, CoarseningExactOnKnownValues) {
  write_data(40);
  auto c = config();
  c.coarsen = 2;
  ForecastDataset d(c, Split::train);
  ASSERT_EQ(d.H(), 2);
  ASSERT_EQ(d.W(), 4);
  EXPECT_EQ(d.lat(), (std::vector<float>{45.0f, -45.0f}));
  EXPECT_EQ(d.lon(), (std::vector<double>{22.5, 112.5, 202.5, 292.5}));  // block means
  const Batch b = d.load({0, 5});
  ASSERT_EQ(b.x.size(), static_cast<size_t>(2 * 3 * 8));
  for (int64_t s = 0; s < 2; ++s) {
    const size_t k = s == 0 ? 0 : 5;
    std::vector<float> x(b.x.begin() + s * 24, b.x.begin() + s * 24 + 8);  // t2m
    d.denormalise("t2m", x.data(), 8);
    for (size_t i = 0; i < 2; ++i)
      for (size_t j = 0; j < 4; ++j) {
        double m = 0;
        for (size_t a = 0; a < 2; ++a)
          for (size_t bb = 0; bb < 2; ++bb)
            m += static_cast<float>(t2m_value(k, 2 * i + a, 2 * j + bb));
        EXPECT_NEAR(x[i * 4 + j], m / 4, 1e-4);
      }
  }
  // Statistics are of the coarse fields: the mean is unchanged, the std smaller or equal.
  auto c1 = config();
  c1.cache_path = (tmp_ / "fine.safetensors").string();
  ForecastDataset fine(c1, Split::train);
  EXPECT_NEAR(d.stats("t2m").mean, fine.stats("t2m").mean, 1e-4);  // coarse values are float
  EXPECT_LE(d.stats("t2m").std, fine.stats("t2m").std);
  c.coarsen = 3;
  EXPECT_THROW(ForecastDataset(c, Split::train), Error);
}

TEST_F(ForecastDatasetTest, SkipAndFillWithInjectedNaNs) {
  write_data(40, {{3, 0, 0}}, {{7, 1, 2}, {7, 2, 2}});
  auto c = config();
  c.missing = MissingPolicy::skip;
  ForecastDataset sk(c, Split::train);
  // Input t2m at step 3, input z at step 7, target t2m at step 3 (input step 2): 3 dropped.
  EXPECT_EQ(sk.skipped_samples(), 3);
  EXPECT_EQ(sk.size(), 19 - 3);
  EXPECT_EQ(sk.stats("t2m").nan_count, 1);
  EXPECT_EQ(sk.stats("t2m").count, 20 * kH * kW - 1);
  EXPECT_EQ(sk.stats("z_500").nan_count, 2);
  std::set<int64_t> steps;
  for (int64_t i = 0; i < sk.size(); ++i)
    steps.insert(std::llround((sk.sample_time(i) - hours_1979()) / 6));
  for (int64_t k : {2, 3, 7}) EXPECT_FALSE(steps.count(k)) << k;
  std::vector<int64_t> all(sk.size());
  for (int64_t i = 0; i < sk.size(); ++i) all[i] = i;
  const Batch bs = sk.load(all);
  for (float x : bs.x) ASSERT_FALSE(std::isnan(x));
  EXPECT_EQ(sk.filled_values(), 0);

  c.missing = MissingPolicy::fill;
  ForecastDataset fi(c, Split::train);
  EXPECT_EQ(fi.skipped_samples(), 0);
  EXPECT_EQ(fi.size(), 19);
  std::vector<int64_t> ids(fi.size());
  for (int64_t i = 0; i < fi.size(); ++i) ids[i] = i;
  const Batch b = fi.load(ids);
  // t2m NaN as input of sample 3 and target of sample 2; z NaN twice in sample 7.
  EXPECT_EQ(b.filled_values, 4);
  EXPECT_EQ(fi.filled_values(), 4);
  for (float x : b.x) ASSERT_FALSE(std::isnan(x));
  for (float y : b.y) ASSERT_FALSE(std::isnan(y));
  const int n = kH * kW;
  EXPECT_EQ(b.x[(3 * 3 + 0) * n + 0], 0.0f);  // sample 3, t2m, pixel (0, 0)
  EXPECT_EQ(b.y[2 * n + 0], 0.0f);            // sample 2 target
  EXPECT_EQ(b.x[(7 * 3 + 1) * n + 1 * kW + 2], 0.0f);
}

TEST_F(ForecastDatasetTest, DeterministicShuffle) {
  write_data(40);
  auto c = config();
  ForecastDataset a(c, Split::train), b(c, Split::train);
  EXPECT_EQ(a.epoch_order(0), b.epoch_order(0));
  EXPECT_NE(a.epoch_order(0), a.epoch_order(1));
  auto sorted = a.epoch_order(3);
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < a.size(); ++i) EXPECT_EQ(sorted[i], i);
  c.seed = 8;
  ForecastDataset other(c, Split::train);
  EXPECT_NE(other.epoch_order(0), a.epoch_order(0));
  c.shuffle = false;
  ForecastDataset plain(c, Split::train);
  for (int64_t i = 0; i < plain.size(); ++i) EXPECT_EQ(plain.epoch_order(2)[i], i);
}

TEST_F(ForecastDatasetTest, PrefetchYieldsTheSameBatchesAsSynchronousLoading) {
  write_data(40);
  auto c = config();
  c.prefetch = true;
  ForecastDataset pre(c, Split::train);
  c.prefetch = false;
  ForecastDataset sync(c, Split::train);
  Batch b;
  EXPECT_THROW(pre.next(b), Error);  // before start_epoch
  for (int64_t epoch : {0, 1}) {
    pre.start_epoch(epoch);
    sync.start_epoch(epoch);
    const auto order = sync.epoch_order(epoch);
    int64_t k = 0;
    Batch p, s;
    while (pre.next(p)) {
      ASSERT_TRUE(sync.next(s));
      const int64_t lo = k * 4, hi = std::min<int64_t>(lo + 4, sync.size());
      const Batch direct = sync.load(std::vector<int64_t>(order.begin() + lo, order.begin() + hi));
      EXPECT_EQ(p.B, hi - lo);
      EXPECT_EQ(p.x, s.x);
      EXPECT_EQ(p.y, s.y);
      EXPECT_EQ(p.times, s.times);
      EXPECT_EQ(p.lead_times, s.lead_times);
      EXPECT_EQ(p.x, direct.x);
      EXPECT_EQ(p.view().B, p.B);
      ++k;
    }
    EXPECT_FALSE(sync.next(s));
    EXPECT_EQ(k, pre.num_batches());
    EXPECT_EQ(k, 5);  // 19 samples in batches of 4
  }
  // Restarting an epoch half-way and destroying a dataset mid-epoch shut the worker down cleanly.
  pre.start_epoch(2);
  ASSERT_TRUE(pre.next(b));
  pre.start_epoch(3);
  ASSERT_TRUE(pre.next(b));
}

TEST_F(ForecastDatasetTest, ShardsSplitEveryBatchAndTogetherMakeIt) {
  // Data parallelism: shard d of 3 yields samples [d n/3, (d+1) n/3) of each batch of n, so the
  // shards of a batch concatenate to the unsharded batch (19 samples: the last batch has 3).
  write_data(40);
  auto c = config();
  c.batch_size = 6;
  ForecastDataset whole(c, Split::train);
  std::vector<std::unique_ptr<ForecastDataset>> shard;
  for (int d = 0; d < 3; ++d) {
    shard.push_back(std::make_unique<ForecastDataset>(c, Split::train));
    shard.back()->set_shard(d, 3);
  }
  whole.start_epoch(1, 1);
  for (auto& s : shard) s->start_epoch(1, 1);
  Batch w;
  int64_t batches = 0;
  while (whole.next(w)) {
    std::vector<double> times;
    std::vector<float> x;
    for (int d = 0; d < 3; ++d) {
      Batch b;
      ASSERT_TRUE(shard[d]->next(b));
      EXPECT_EQ(b.B, w.B * (d + 1) / 3 - w.B * d / 3);
      times.insert(times.end(), b.times.begin(), b.times.end());
      x.insert(x.end(), b.x.begin(), b.x.end());
    }
    EXPECT_EQ(times, w.times);
    EXPECT_EQ(x, w.x);
    ++batches;
  }
  EXPECT_EQ(batches, 3);  // batches 1..3 of 4: 6, 6, 1 samples
  Batch b;
  for (auto& s : shard) EXPECT_FALSE(s->next(b));
  EXPECT_THROW(whole.set_shard(3, 3), Error);
  EXPECT_THROW(whole.set_shard(0, 0), Error);
}

TEST_F(ForecastDatasetTest, RequiredStatisticsCacheIsReadNeverWritten) {
  // The ranks other than 0 of a distributed run: the cache must be there; they never write it.
  write_data(40);
  auto c = config();
  c.cache_path = (tmp_ / "stats.safetensors").string();
  c.require_stats_cache = true;
  try {
    ForecastDataset d(c, Split::train);
    FAIL() << "no error without the cache";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("stats.safetensors"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(c.cache_path));
  c.require_stats_cache = false;
  ForecastDataset first(c, Split::train);  // rank 0 writes it
  c.require_stats_cache = true;
  ForecastDataset other(c, Split::train);
  EXPECT_FALSE(other.stats_computed());
  EXPECT_EQ(other.stats("t2m").mean, first.stats("t2m").mean);
}

TEST_F(ForecastDatasetTest, GivenNormalisationAndClimatologyNeedNoTrainingPeriod) {
  // Missing values in the test split (from step 28, 1979-01-08): t2m at step 30, z at step 33.
  write_data(40, {{30, 1, 1}}, {{33, 0, 4}});
  auto c = config();
  c.cache_path = (tmp_ / "stats.safetensors").string();
  const ForecastDataset ref(c, Split::test);  // statistics computed over the training period
  EXPECT_EQ(ref.lon(), nctest::range(0, 45, kW));
  EXPECT_EQ(ref.lat(), std::vector<float>(kLat.begin(), kLat.end()));
  ASSERT_EQ(ref.skipped_samples(), 3);  // inputs at 30 and 33, target at 30

  // A checkpoint's statistics, and a training period the data do not hold: nothing of it is
  // needed. No cache matches (another file), none is written.
  auto g = c;
  for (const auto& n : {"t2m", "z_500", "lsm"})
    g.normalisation[n] = {ref.stats(n).mean, ref.stats(n).std};
  g.climatology["t2m"] = ref.climatology("t2m");
  g.train = {"1970-01-01", "1970-02-01"};
  g.cache_path = (tmp_ / "other_stats.safetensors").string();
  const ForecastDataset given(g, Split::test);
  EXPECT_TRUE(given.stats_given());
  EXPECT_FALSE(given.stats_computed());
  EXPECT_FALSE(fs::exists(g.cache_path));
  EXPECT_EQ(given.climatology("t2m"), ref.climatology("t2m"));
  EXPECT_EQ(given.skipped_samples(), ref.skipped_samples());
  ASSERT_EQ(given.size(), ref.size());
  std::vector<int64_t> ids(ref.size());
  for (int64_t i = 0; i < ref.size(); ++i) {
    ids[i] = i;
    EXPECT_EQ(given.sample_time(i), ref.sample_time(i)) << i;
  }
  const Batch a = ref.load(ids), b = given.load(ids);
  EXPECT_EQ(a.x, b.x);
  EXPECT_EQ(a.y, b.y);
  // With the training cache (same files, range and coarsening): its masks, the given statistics.
  auto h = g;
  h.train = c.train;
  h.cache_path = c.cache_path;
  h.normalisation["t2m"].first += 1.0;
  const ForecastDataset cached(h, Split::test);
  EXPECT_EQ(cached.skipped_samples(), 3);
  EXPECT_EQ(cached.stats("t2m").mean, ref.stats("t2m").mean + 1.0);

  auto message = [](const ForecastConfig& cfg) {
    try {
      ForecastDataset d(cfg, Split::test);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  auto bad = g;
  bad.normalisation.clear();
  EXPECT_NE(message(bad).find("without a normalisation"), std::string::npos) << message(bad);
  bad = g;
  bad.outputs = {"t2m", "z_500"};
  EXPECT_NE(message(bad).find("no field for output 'z_500'"), std::string::npos) << message(bad);
  bad = g;
  bad.climatology["t2m"].pop_back();
  EXPECT_NE(message(bad).find("'t2m' has 31 values, but the grid is 4x8 (32 values)"),
            std::string::npos)
      << message(bad);
  bad = g;
  bad.normalisation.erase("lsm");
  EXPECT_NE(message(bad).find("no mean/std for 'lsm'"), std::string::npos) << message(bad);
}

TEST_F(ForecastDatasetTest, WorkerExceptionsReachTheCaller) {
  write_data(40);
  auto c = config();
  ForecastDataset d(c, Split::train);  // reads the constant lsm last: that file stays open
  fs::remove(tmp_ / "data" / "t2m.nc");
  d.start_epoch(0);
  Batch b;
  EXPECT_THROW(d.next(b), Error);
  EXPECT_FALSE(d.next(b));  // the epoch ended with the error
}

TEST_F(ForecastDatasetTest, ClearErrors) {
  write_data(40);
  auto c = config();
  auto message = [](const ForecastConfig& cfg, Split s) {
    try {
      ForecastDataset d(cfg, s);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  auto bad = c;
  bad.inputs = {"t2m", "q_700"};
  EXPECT_NE(message(bad, Split::train).find("unknown variable 'q_700'"), std::string::npos)
      << message(bad, Split::train);
  bad = c;
  bad.val = {"1980-01-01", "1980-02-01"};
  EXPECT_NE(message(bad, Split::val).find("val split"), std::string::npos);
  EXPECT_NE(message(bad, Split::val).find("is empty"), std::string::npos)
      << message(bad, Split::val);
  bad = c;
  bad.lead_hours = {72};  // the val split spans 48 h
  EXPECT_NE(message(bad, Split::val).find("no sample"), std::string::npos)
      << message(bad, Split::val);
  bad = c;
  bad.train = {"1980-01-01", "1980-02-01"};
  EXPECT_NE(message(bad, Split::train).find("train split"), std::string::npos)
      << message(bad, Split::train);
  bad = c;
  bad.outputs = {"lsm"};
  EXPECT_NE(message(bad, Split::train).find("no time axis"), std::string::npos);
  bad = c;
  bad.lead_hours = {-6};
  EXPECT_NE(message(bad, Split::train).find("must be positive"), std::string::npos);
}

}  // namespace

namespace {

// End to end on the synthetic ERA5 layout (one sub-directory per variable, constants apart).
TEST(ForecastDatasetSynthTest, Era5LayoutCoarsenedEpochIsNormalised) {
  const fs::path dir = fs::temp_directory_path() /
                       ("seqvit_fc_synth_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  SynthSpec s;
  s.out_dir = dir.string();
  s.days = 3;
  s.spinup_days = 2;
  synthesize(s);
  ForecastConfig c;
  c.paths = {dir.string()};
  c.inputs = {"t2m", "z_500", "t_850", "lsm", "orography"};
  c.outputs = {"z_500", "t_850", "t2m"};
  c.lead_hours = {6, 24};
  c.train = {"1979-01-01", "1979-01-04"};
  c.val = c.test = c.train;
  c.coarsen = 2;
  c.batch_size = 3;
  ForecastDataset d(c, Split::train);
  EXPECT_EQ(d.H(), 16);
  EXPECT_EQ(d.W(), 32);
  EXPECT_EQ(d.skipped_samples(), 0);
  // 12 steps: even k use 6 h (k <= 10), odd k use 24 h (k <= 7).
  EXPECT_EQ(d.size(), 6 + 4);
  d.start_epoch(0);
  Batch b;
  std::vector<double> sum(5, 0), sq(5, 0);
  int64_t n = 0;
  while (d.next(b)) {
    ASSERT_EQ(b.x.size(), static_cast<size_t>(b.B * 5 * 16 * 32));
    ASSERT_EQ(b.y.size(), static_cast<size_t>(b.B * 3 * 16 * 32));
    for (int64_t i = 0; i < b.B; ++i) {
      for (int v = 0; v < 5; ++v)
        for (int p = 0; p < 16 * 32; ++p) {
          const float x = b.x[(i * 5 + v) * 512 + p];
          ASSERT_TRUE(std::isfinite(x));
          sum[v] += x, sq[v] += double(x) * x;
        }
      n += 512;
    }
  }
  // Constants are exactly standardised; time-dependent inputs nearly (samples ~ training steps).
  for (int v = 0; v < 5; ++v) {
    const double m = sum[v] / n, sd = std::sqrt(sq[v] / n - m * m);
    EXPECT_NEAR(m, 0, v >= 3 ? 1e-5 : 0.3) << c.inputs[v];
    EXPECT_NEAR(sd, 1, v >= 3 ? 1e-5 : 0.3) << c.inputs[v];
  }
  fs::remove_all(dir);
}

}  // namespace
