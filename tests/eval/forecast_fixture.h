// A small synthetic ERA5-like dataset and an (untrained, freshly initialised) forecast
// checkpoint on it, for the tests of evaluation, prediction and training on data. Built once per
// test program in a temporary directory that is removed at exit.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "data/forecast_dataset.h"
#include "data/synth/era5_synth.h"
#include "model/climax.h"
#include "eval/forecast_checkpoint.h"

namespace seqvit::testing {

struct ForecastFixture {
  std::string dir;         // the dataset (WeatherBench layout, 32x64, 8 days from 1979-01-01)
  std::string checkpoint;  // dir + "/fixture_model.safetensors"
  model::ModelConfig model;
  data::ForecastConfig data;

  // The model: 16x32 grid (coarsen 2), patch 4, D 32, 2 heads, depth 1.
  static const ForecastFixture& get() {
    static ForecastFixture f = make();
    // Destroyed before f (reverse order of construction): removes the data at exit.
    static const struct Cleanup {
      std::string dir;
      ~Cleanup() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
      }
    } cleanup{f.dir};
    return f;
  }

 private:
  static ForecastFixture make() {
    namespace fs = std::filesystem;
    ForecastFixture f;
    f.dir = (fs::temp_directory_path() / ("seqvit_forecast_fixture_" + std::to_string(::getpid())))
                .string();
    fs::remove_all(f.dir);
    data::SynthSpec s;
    s.out_dir = f.dir;
    s.days = 8;
    s.spinup_days = 2;
    data::synthesize(s);
    f.data.paths = {f.dir};
    f.data.inputs = {"t2m", "u10", "v10", "z_500", "t_850", "lsm", "orography"};
    f.data.outputs = {"t2m", "z_500", "t_850"};
    f.data.lead_hours = {6, 12};
    f.data.train = {"1979-01-01", "1979-01-05"};
    f.data.val = {"1979-01-05", "1979-01-07"};
    f.data.test = {"1979-01-07", "1979-01-09"};
    f.data.coarsen = 2;
    f.data.batch_size = 4;
    f.model.img_h = 16;
    f.model.img_w = 32;
    f.model.patch_size = 4;
    f.model.embed_dim = 32;
    f.model.num_heads = 2;
    f.model.depth = 1;
    f.model.decoder_depth = 1;
    f.model.variables = f.data.inputs;
    f.model.out_variables = f.data.outputs;
    model::ClimaX m(f.model);
    std::vector<float> params(m.params().total());
    m.init(params.data(), 7);
    data::ForecastDataset ds(f.data, data::Split::train);
    f.checkpoint = f.dir + "/fixture_model.safetensors";
    eval::save_forecast_model(f.checkpoint, f.model, f.data, eval::normalisation_of(ds),
                              eval::climatology_of(ds), m.params(), params.data());
    return f;
  }
};

}  // namespace seqvit::testing
