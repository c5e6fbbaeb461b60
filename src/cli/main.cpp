// seqvit: train ClimaX Vision Transformers on ultra-long token sequences.
// User errors are seqvit::Error exceptions, caught once here.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/config_file.h"
#include "core/check.h"

int main(int argc, char** argv) {
  CLI::App app{"seqvit: ClimaX Vision Transformers on ultra-long token sequences"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "seqvit 0.1.0");
  seqvit::cli::add_train(app);
  seqvit::cli::add_grad(app);
  seqvit::cli::add_evaluate(app);
  seqvit::cli::add_predict(app);
  seqvit::cli::add_data(app);
  seqvit::cli::add_plan(app);
  try {
    // `--config FILE` becomes flags before the command line's own (config_file.h)
    const auto args = seqvit::cli::expand_config_file(
        std::vector<std::string>(argv, argv + argc), app);
    std::vector<char*> cargs;
    for (const auto& a : args) cargs.push_back(const_cast<char*>(a.c_str()));
    app.parse(static_cast<int>(cargs.size()), cargs.data());
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const seqvit::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "\nseqvit: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "\nseqvit: error: out of memory (reduce --batch or the model size)\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "\nseqvit: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}
