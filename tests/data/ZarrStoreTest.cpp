// The Zarr v2 reader (data/zarr_store.h, data/zarr_source.h) on stores written at test time by
// Debian's python3-zarr / xarray / numcodecs (tests/data/zarr_fixtures.py): every compressor,
// f4 / f8 / packed i2, NaN and fill values, both latitude orders, -180..180 longitudes, partial
// edge chunks, the "/" separator, unconsolidated stores, WeatherBench2-like stores (latitude or
// longitude first) and a variable spread over two stores. Every decoded value is checked
// against what xarray decodes from the same store; each bad store gives one error naming the
// defect.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "data/cf_time.h"
#include "data/grid_source.h"
#include "data/zarr_source.h"
#include "data/zarr_store.h"
#include "error_of.h"
#include "zarr_fixture.h"

using namespace seqvit;
using namespace seqvit::data;
namespace fs = std::filesystem;

namespace {

using seqvit_test::error_of;

double f(double k, double lat, double lon, double lev = 0) {
  return 100.0 * k + lat + std::fmod(lon + 360.0, 360.0) / 1000.0 + lev;
}

class Zarr : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { dir_ = zarr_test::fixture_dir(); }
  void SetUp() override {
    ASSERT_FALSE(dir_.empty()) << "tests/data/zarr_fixtures.py failed; see " << SEQVIT_BINARY_DIR
                               << "/zarr_fixtures.log";
  }
  static std::string store(const std::string& name) { return dir_ + "/" + name; }
  static std::string dir_;
};
std::string Zarr::dir_;

std::vector<double> read_f64(const std::string& path, size_t n) {
  std::vector<double> v(n);
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * sizeof(double)));
  EXPECT_TRUE(in.good()) << path;
  return v;
}

}  // namespace

TEST_F(Zarr, EveryStoreDecodesWhatXarrayDecodes) {
  nlohmann::json expected;
  std::ifstream(store("expected.json")) >> expected;
  std::map<std::string, std::unique_ptr<GridSource>> sources;
  std::map<std::string, int> fields_per_store;
  for (const auto& e : expected) {
    const std::string name = e["store"];
    SCOPED_TRACE(name + " " + e["field"].get<std::string>());
    auto& src = sources[name];
    if (!src) src = open_grid_source({store(name)});
    EXPECT_EQ(src->format(), "Zarr");
    ++fields_per_store[name];
    const FieldRef ref = src->resolve(e["field"]);
    const GridVariable& v = src->variable(ref.variable);
    EXPECT_EQ(v.lat, e["lat"].get<std::vector<double>>());
    EXPECT_EQ(v.lon, e["lon"].get<std::vector<double>>());
    const auto shape = e["shape"].get<std::vector<int64_t>>();
    const bool timed = e.contains("times");
    ASSERT_EQ(v.has_time, timed);
    if (timed) EXPECT_EQ(v.times, e["times"].get<std::vector<double>>());
    const int64_t T = timed ? shape[0] : 1, H = v.H(), W = v.W();
    ASSERT_EQ(H, shape[timed ? 1 : 0]);
    ASSERT_EQ(W, shape[timed ? 2 : 1]);
    const auto want = read_f64(store(e["file"]), static_cast<size_t>(T * H * W));
    std::vector<float> got(static_cast<size_t>(T * H * W));  // [T*H*W] all steps at once
    EXPECT_EQ(src->read(ref, 0, T, got.data()), e["missing"].get<int64_t>());
    const auto& zv = dynamic_cast<const ZarrDataset&>(*src).zarr_variable(ref.variable);
    const bool packed = zv.segments[0].array->kind != 'f';
    for (size_t i = 0; i < want.size(); ++i) {
      if (std::isnan(want[i])) {
        ASSERT_TRUE(std::isnan(got[i])) << "index " << i;
      } else if (packed) {  // xarray unpacks in float32, seqvit in double
        ASSERT_NEAR(got[i], want[i], 1e-5 * std::fabs(want[i])) << "index " << i;
      } else {
        ASSERT_EQ(got[i], static_cast<float>(want[i])) << "index " << i;
      }
    }
  }
  // Every compressor and layout took part: t2m, z_500 and z_850 of each codec store.
  for (const char* codec : {"blosc_lz4_shuffle", "blosc_lz4_bitshuffle", "blosc_lz4hc",
                            "blosc_zstd_shuffle", "blosc_zstd_bitshuffle", "blosc_zlib_noshuffle",
                            "blosc_blosclz", "zstd", "zlib", "gzip", "none"})
    EXPECT_EQ(fields_per_store[std::string("codec_") + codec + ".zarr"], 3) << codec;
  EXPECT_EQ(fields_per_store["dtypes.zarr"], 7);  // >f4, >i2 (two levels), |u1, <i4, >i8, inf
  for (const char* s : {"slash.zarr", "plain.zarr"}) EXPECT_EQ(fields_per_store[s], 3) << s;
  EXPECT_EQ(fields_per_store["packed.zarr"], 5);  // t2m, z_500, z_850, sst, lsm
  EXPECT_EQ(fields_per_store["wb2.zarr"], 4);     // 2m_temperature, geopotential at 3 levels
}

TEST_F(Zarr, ArrayMetadataAsStored) {
  const ZarrStore s(store("codec_blosc_zstd_bitshuffle.zarr"));
  EXPECT_TRUE(s.consolidated());
  const ZarrArray* t2m = s.find("t2m");
  ASSERT_NE(t2m, nullptr);
  EXPECT_EQ(t2m->shape, (std::vector<int64_t>{3, 7, 10}));
  EXPECT_EQ(t2m->chunks, (std::vector<int64_t>{2, 3, 4}));
  EXPECT_EQ(t2m->dtype, "<f4");
  EXPECT_EQ(t2m->codec, ZarrCodec::Blosc);
  EXPECT_EQ(t2m->codec_name, "blosc (zstd)");
  EXPECT_TRUE(t2m->has_fill && std::isnan(t2m->fill));
  EXPECT_EQ(t2m->dims, (std::vector<std::string>{"time", "latitude", "longitude"}));
  EXPECT_EQ(t2m->text_attr("units"), "K");
  EXPECT_EQ(s.chunk_path(*t2m, {1, 2, 0}), store("codec_blosc_zstd_bitshuffle.zarr/t2m/1.2.0"));
  const ZarrStore slash(store("slash.zarr"));
  EXPECT_EQ(slash.find("z")->separator, '/');
  EXPECT_EQ(slash.chunk_path(*slash.find("z"), {2, 1, 0, 1}), store("slash.zarr/z/2/1/0/1"));
  EXPECT_FALSE(ZarrStore(store("plain.zarr")).consolidated());
  const ZarrStore packed(store("packed.zarr"));
  const ZarrArray* p = packed.find("t2m");
  EXPECT_EQ(p->dtype, "<i2");
  EXPECT_EQ(p->fill, -32767);
  EXPECT_EQ(p->num_attrs.at("scale_factor"), std::vector<double>{0.01});
  EXPECT_EQ(p->num_attrs.at("add_offset"), std::vector<double>{300.0});
  const ZarrStore wb(store("wb2.zarr"));
  EXPECT_EQ(wb.find("time")->dtype, "<i8");
  EXPECT_EQ(wb.find("time")->text_attr("units"), "hours since 1959-01-01");
  const ZarrStore dtypes(store("dtypes.zarr"));
  EXPECT_TRUE(dtypes.find("t2m")->big_endian);
  EXPECT_EQ(dtypes.find("u8")->dtype, "|u1");
  EXPECT_EQ(dtypes.find("u8")->fill, 255);
  EXPECT_EQ(dtypes.find("inf_fill")->fill, INFINITY);
  EXPECT_TRUE(std::isnan(dtypes.find("inf_fill")->num_attrs.at("note")[0]));  // NaN in .zattrs
  EXPECT_EQ(ZarrStore(store("codec_none.zarr")).find("z")->codec_name, "none");
  EXPECT_EQ(ZarrStore(store("codec_gzip.zarr")).find("z")->codec, ZarrCodec::Gzip);
}

// Any hyperslab, across chunk boundaries and partial edge chunks, equals the same part of the
// whole array; each value is also the formula the store was written with.
TEST_F(Zarr, HyperslabsAcrossChunks) {
  const ZarrStore s(store("codec_zlib.zarr"));  // latitude 60..-60 descending, lon 0..324
  const ZarrArray& z = *s.find("z");            // (3, 2, 7, 10), chunks (1, 1, 4, 6)
  const auto all = s.read_all(z);
  const auto lat = s.read_all(*s.find("latitude")), lon = s.read_all(*s.find("longitude"));
  for (int64_t k = 0; k < 3; ++k)
    for (int64_t l = 0; l < 2; ++l)
      for (int64_t i = 0; i < 7; ++i)
        for (int64_t j = 0; j < 10; ++j)
          ASSERT_EQ(all[((k * 2 + l) * 7 + i) * 10 + j], f(k, lat[i], lon[j], l ? 850 : 500));
  const std::vector<int64_t> start{1, 0, 2, 3}, count{2, 2, 5, 6};
  std::vector<float> part(2 * 2 * 5 * 6);
  s.read(z, start, count, part.data());
  for (int64_t a = 0; a < 2; ++a)
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t i = 0; i < 5; ++i)
        for (int64_t j = 0; j < 6; ++j)
          ASSERT_EQ(part[((a * 2 + b) * 5 + i) * 6 + j],
                    static_cast<float>(all[(((1 + a) * 2 + b) * 7 + 2 + i) * 10 + 3 + j]));
  EXPECT_HAS(error_of([&] {
               s.read(z, {0, 0, 5, 0}, {1, 1, 3, 10}, part.data());
             }),
             "dim 2 range [5, 8) outside its length 7");
}

TEST_F(Zarr, WeatherBench2Store) {
  const auto src = open_grid_source({store("wb2.zarr")});
  EXPECT_EQ(src->variables(), (std::vector<std::string>{"2m_temperature", "geopotential"}));
  const auto& z = src->variable("geopotential");
  EXPECT_EQ(z.levels_hpa, (std::vector<double>{50, 500, 850}));
  EXPECT_TRUE(z.lat_ascending_in_file);
  EXPECT_EQ(z.lat.front(), 84.375);
  EXPECT_EQ(z.H(), 16);
  EXPECT_EQ(z.W(), 32);
  EXPECT_EQ(z.T(), 12);
  EXPECT_EQ(iso8601(z.times.front()), "1979-01-01T00:00:00Z");
  EXPECT_EQ(iso8601(z.times.back()), "1979-01-03T18:00:00Z");
  const auto ref = src->resolve("geopotential_500");
  EXPECT_EQ(ref.level, 1);
  std::vector<float> out(16 * 32);
  EXPECT_EQ(src->read(ref, 3, out.data()), 0);
  EXPECT_EQ(out[0], static_cast<float>(1000.0 * f(3, 84.375, 0, 500)));
  EXPECT_EQ(out[16 * 32 - 1], static_cast<float>(1000.0 * f(3, -84.375, 31 * 11.25, 500)));
  EXPECT_HAS(error_of([&] { src->resolve("geopotential_700"); }),
             "available levels (hPa): 50, 500, 850");
  EXPECT_HAS(error_of([&] { src->resolve("q"); }), "2m_temperature, geopotential");
}

// WeatherBench2 as published: (time, longitude, latitude) and (time, level, longitude, latitude),
// latitude ascending, chunks splitting both horizontal axes. Read transposed into the canonical
// [H, W], it gives exactly what the (latitude, longitude) copy wb2.zarr gives, field by field and
// step by step (EveryStoreDecodesWhatXarrayDecodes checks it against xarray too).
TEST_F(Zarr, WeatherBench2StoreWithLongitudeBeforeLatitude) {
  const auto src = open_grid_source({store("wb2_lonlat.zarr")});
  const auto ref = open_grid_source({store("wb2.zarr")});
  EXPECT_EQ(src->variables(), (std::vector<std::string>{"2m_temperature", "geopotential"}));
  for (const std::string name : {"2m_temperature", "geopotential"}) {
    const auto& v = src->variable(name);
    EXPECT_TRUE(v.lon_first_in_file) << name;
    EXPECT_FALSE(ref->variable(name).lon_first_in_file) << name;
    EXPECT_TRUE(v.lat_ascending_in_file) << name;
    EXPECT_EQ(v.lat, ref->variable(name).lat) << name;
    EXPECT_EQ(v.lon, ref->variable(name).lon) << name;
    EXPECT_EQ(v.times, ref->variable(name).times) << name;
  }
  EXPECT_EQ(src->variable("geopotential").levels_hpa, (std::vector<double>{50, 500, 850}));
  std::vector<float> a(16 * 32), b(16 * 32);
  for (const std::string field :
       {"2m_temperature", "geopotential_50", "geopotential_500", "geopotential_850"})
    for (int64_t t = 0; t < 12; ++t) {
      EXPECT_EQ(src->read(src->resolve(field), t, a.data()), 0);
      ref->read(ref->resolve(field), t, b.data());
      ASSERT_EQ(a, b) << field << " t=" << t;
    }
  // Values by hand: north-west and south-east corners of geopotential at 500 hPa, step 3.
  src->read(src->resolve("geopotential_500"), 3, a.data());
  EXPECT_EQ(a[0], static_cast<float>(1000.0 * f(3, 84.375, 0, 500)));
  EXPECT_EQ(a[1], static_cast<float>(1000.0 * f(3, 84.375, 11.25, 500)));
  EXPECT_EQ(a[32], static_cast<float>(1000.0 * f(3, 73.125, 0, 500)));
  EXPECT_EQ(a[16 * 32 - 1], static_cast<float>(1000.0 * f(3, -84.375, 31 * 11.25, 500)));
  // Several steps in one read.
  std::vector<float> many(3 * 16 * 32);
  src->read(src->resolve("2m_temperature"), 4, 3, many.data());
  ref->read(ref->resolve("2m_temperature"), 5, b.data());
  EXPECT_TRUE(std::equal(b.begin(), b.end(), many.begin() + 16 * 32));
}

TEST_F(Zarr, ScalarLevelCoordinateNamesTheField) {
  const auto src = open_grid_source({store("wb1.zarr")});
  EXPECT_EQ(src->variables(), std::vector<std::string>{"z_500"});
  const auto& v = src->variable("z_500");
  std::vector<float> out(v.H() * v.W());
  src->read(src->resolve("z_500"), 2, out.data());
  EXPECT_EQ(out[3 * 10 + 4], static_cast<float>(f(2, v.lat[3], v.lon[4], 500)));
}

TEST_F(Zarr, ArraysThatAreNoGridVariableDoNotStopTheStore) {
  const auto src = open_grid_source({store("extras.zarr")});
  EXPECT_EQ(src->variables(), std::vector<std::string>{"t2m"});
  EXPECT_HAS(error_of([&] { src->resolve("time_bnds"); }), "has dims (time, nv)");
  EXPECT_HAS(error_of([&] { src->resolve("label"); }), "has dims (longitude)");
  const ZarrStore s(store("extras.zarr"));
  const ZarrArray& label = *s.find("label");  // numpy unicode: no number to read
  EXPECT_HAS(label.unsupported, "key 'dtype': '<U2' is not supported");
  EXPECT_HAS(error_of([&] { s.read_all(label); }), "array 'label': key 'dtype': '<U2'");
}

TEST_F(Zarr, OneVariableOverTwoStores) {
  // Given in reverse order; the second store stores latitude south to north.
  ZarrDataset ds({store("part2.zarr"), store("part1.zarr")});
  const auto& v = ds.zarr_variable("t2m");
  ASSERT_EQ(v.T(), 8);
  ASSERT_EQ(v.segments.size(), 2u);
  EXPECT_EQ(v.segments[1].t0, 4);
  EXPECT_TRUE(v.segments[1].lat_flip);
  EXPECT_FALSE(v.segments[0].lat_flip);
  EXPECT_EQ(iso8601(v.times[4]), "2000-01-02T00:00:00Z");
  std::vector<float> out(8 * 7 * 10);
  EXPECT_EQ(ds.read(ds.resolve("t2m"), 0, 8, out.data()), 0);
  for (int64_t t = 0; t < 8; ++t)
    for (int64_t i = 0; i < 7; ++i)
      for (int64_t j = 0; j < 10; ++j)
        ASSERT_EQ(out[(t * 7 + i) * 10 + j], static_cast<float>(f(t % 4, v.lat[i], v.lon[j])))
            << t << " " << i << " " << j;
  EXPECT_HAS(error_of([&] {
               ZarrDataset({store("part1.zarr"), store("part4.zarr")});
             }),
             "time step 2000-01-02T00:00:00Z is missing");
}

TEST_F(Zarr, OpenGridSourceTellsStoresFromNetcdf) {
  const std::string nc = store("x.nc");
  std::ofstream(nc) << "not read";
  const std::string e = error_of([&] { open_grid_source({store("wb2.zarr"), nc}); });
  EXPECT_HAS(e, "wb2.zarr");
  EXPECT_HAS(e, "x.nc");
  EXPECT_HAS(e, "mix a Zarr store");
  EXPECT_HAS(error_of([&] { ZarrDataset({nc}); }), "not a Zarr v2 store");
}

TEST_F(Zarr, BadMetadataIsOneClearError) {
  auto open = [&](const std::string& name) {
    return error_of([&] { open_grid_source({store(name)}); });
  };
  std::string e = open("bad_codec.zarr");
  EXPECT_HAS(e, "unknown codec 'lzma'");
  EXPECT_HAS(e, "supported: blosc, zstd, zlib, gzip and none");
  EXPECT_HAS(e, "t2m/.zarray");
  e = open("bad_filter.zarr");
  EXPECT_HAS(e, "filter 'delta' is not supported");
  EXPECT_HAS(e, "array 't2m'");
  EXPECT_HAS(open("bad_order.zarr"), "key 'order': 'F' (column-major) is not supported");
  EXPECT_HAS(open("bad_dtype.zarr"), "dtype': '<f2' is not supported");
  EXPECT_HAS(open("bad_chunks.zarr"), "key 'chunks': has 2 entries but shape has 3");
  e = open("bad_dims.zarr");
  EXPECT_HAS(e, "_ARRAY_DIMENSIONS': names 2 dimensions but the shape has 3");
  EXPECT_HAS(e, "bad_dims.zarr/.zmetadata");
  e = open("bad_stale.zarr");
  EXPECT_HAS(e,
             "bad_stale.zarr/.zmetadata: key 'chunks' of array 't2m' is [2,3,4] there but "
             "[1,3,4] in");
  EXPECT_HAS(e, "bad_stale.zarr/t2m/.zarray");
  e = open("bad_absent.zarr");
  EXPECT_HAS(e, "bad_absent.zarr/.zmetadata: key 'z/.zarray' names array 'z', but");
  EXPECT_HAS(e, "bad_absent.zarr/z/.zarray does not exist; the store is incomplete");
  e = open("bad_json.zarr");
  EXPECT_HAS(e, "bad_json.zarr/.zmetadata: not valid JSON");
}

TEST_F(Zarr, BadChunksAreErrorsNamingTheChunk) {
  auto read_t = [&](const std::string& name, int64_t t) {
    return error_of([&] {
      const auto src = open_grid_source({store(name)});
      std::vector<float> out(7 * 10);
      src->read(src->resolve("t2m"), t, out.data());
    });
  };
  // Chunk 1.2.0 holds time steps 2.. and rows 6..: step 0 reads, step 2 does not.
  EXPECT_EQ(read_t("bad_missing.zarr", 0), "(no error)");
  std::string e = read_t("bad_missing.zarr", 2);
  EXPECT_HAS(e, "array 't2m': chunk '1.2.0' is missing");
  EXPECT_HAS(e, "bad_missing.zarr");
  EXPECT_HAS(e, "Zarr would read it as the fill value (nan)");
  EXPECT_HAS(e, "seqvit refuses incomplete stores");
  // Each chunk of t2m is 2 x 3 x 4 float32: 96 bytes decoded.
  e = read_t("bad_zlib.zarr", 0);
  EXPECT_HAS(e, "bad_zlib.zarr/t2m/0.1.0: corrupt chunk of array 't2m': zlib decoding failed");
  EXPECT_HAS(e, "96 bytes expected decoded: 24 elements of <f4");
  e = read_t("bad_zstd.zarr", 0);
  EXPECT_HAS(e, "bad_zstd.zarr/t2m/0.1.0: corrupt chunk of array 't2m': zstd decoding failed");
  EXPECT_HAS(e, "96 bytes expected decoded");
  e = read_t("bad_blosc.zarr", 0);
  EXPECT_HAS(e,
             "bad_blosc.zarr/t2m/0.1.0: corrupt chunk of array 't2m': blosc (lz4) decoding "
             "failed");
  e = read_t("bad_none.zarr", 2);
  EXPECT_HAS(e,
             "bad_none.zarr/t2m/1.0.1: corrupt chunk of array 't2m': none decoding failed: "
             "the file holds 92 bytes");
}

// docs/data.md "Unusual files": the CF rules of cf_grid.h on Zarr as on NetCDF (NetcdfReaderTest).
TEST_F(Zarr, ExtraAxesOfLengthOneAreDropped) {
  // t2m (number, time, latitude, longitude); z (number, time, level, zlev, latitude, longitude).
  ZarrDataset ds({store("odd_axes.zarr")});
  EXPECT_EQ(ds.variables(), (std::vector<std::string>{"t2m", "z"}));
  EXPECT_EQ(ds.variable("t2m").dropped_axes, std::vector<std::string>{"number"});
  EXPECT_EQ(ds.variable("z").dropped_axes, (std::vector<std::string>{"number", "zlev"}));
  EXPECT_EQ(ds.variable("z").levels_hpa, (std::vector<double>{500, 850}));
  for (const auto& [name, lev] : std::vector<std::pair<std::string, double>>{
           {"t2m", 0}, {"z_500", 500}, {"z_850", 850}}) {
    const auto ref = ds.resolve(name);
    const auto& v = ds.variable(ref.variable);
    ASSERT_EQ(v.T(), 3);
    std::vector<float> out(3 * v.H() * v.W());
    EXPECT_EQ(ds.read(ref, 0, 3, out.data()), 0);
    for (int64_t t = 0; t < 3; ++t)
      for (int64_t i = 0; i < v.H(); ++i)
        for (int64_t j = 0; j < v.W(); ++j)
          ASSERT_EQ(out[(t * v.H() + i) * v.W() + j],
                    static_cast<float>(f(t, v.lat[i], v.lon[j], lev)))
              << name << " " << t << " " << i << " " << j;
  }
  const std::string e = error_of([&] { ZarrDataset({store("odd_members.zarr")}); });
  EXPECT_HAS(e, "odd_members.zarr: no array with dims (time, [level], lat, lon)");
  EXPECT_HAS(e, "variable 't2m' has dims (number, time, latitude, longitude)");
  EXPECT_HAS(e, "its axis 'number' has length 3");
  EXPECT_HAS(e, ".isel(number=0)");
}

TEST_F(Zarr, ATimeAxisWithoutAnEpoch) {
  ZarrDataset raw({store("odd_days.zarr")});
  const auto& v = raw.variable("t2m");
  EXPECT_FALSE(v.time_has_epoch);
  EXPECT_EQ(v.time_units, "days");
  EXPECT_EQ(v.times, (std::vector<double>{0, 1, 2, 3}));
  ZarrDataset dated({store("odd_days.zarr")}, SourceOptions{"1979-01-01"});
  const auto& w = dated.variable("t2m");
  EXPECT_TRUE(w.time_has_epoch);
  EXPECT_EQ(iso8601(w.times[3]), "1979-01-04T00:00:00Z");
  std::vector<float> out(w.H() * w.W());
  EXPECT_EQ(dated.read(dated.resolve("t2m"), 3, out.data()), 0);
  EXPECT_EQ(out[2 * w.W() + 5], static_cast<float>(f(3, w.lat[2], w.lon[5])));
}

TEST_F(Zarr, ACurvilinearGridIsRefused) {
  const std::string e = error_of([&] { ZarrDataset({store("odd_curvilinear.zarr")}); });
  EXPECT_HAS(e, "odd_curvilinear.zarr: no array with dims (time, [level], lat, lon)");
  EXPECT_HAS(e, "variable 'tas' has dims (time, y, x)");
  EXPECT_HAS(e, "its latitudes and longitudes are 2-D (");  // in the coordinates attribute's order
  EXPECT_HAS(e, "lat (y, x)");
  EXPECT_HAS(e, "lon (y, x)");
  EXPECT_HAS(e, "): a curvilinear grid; seqvit reads regular latitude-longitude grids only");
  EXPECT_HAS(e, "cdo remapbil,r64x32");
}
