// TOML configuration files for subcommands (see config_file.h).
#include "cli/config_file.h"

#include <fmt/core.h>
#include <fmt/ranges.h>

#include <fstream>
#include <set>

#include "core/check.h"

namespace seqvit::cli {

namespace {

// The long name an argument uses ("--steps" and "--steps=5" -> "steps"), or "".
std::string flag_name(const std::string& a) {
  if (a.size() < 3 || a.compare(0, 2, "--") != 0) return "";
  return a.substr(2, a.find('=') == std::string::npos ? std::string::npos : a.find('=') - 2);
}

}  // namespace

std::vector<std::string> expand_config_file(const std::vector<std::string>& args,
                                            const CLI::App& app) {
  if (args.size() < 2) return args;
  const CLI::App* sub = nullptr;
  for (const auto* s : app.get_subcommands([](const CLI::App*) { return true; }))
    if (s->get_name() == args[1]) sub = s;
  if (sub == nullptr || sub->get_option_no_throw("--config") == nullptr) return args;

  std::string path;
  std::vector<std::string> rest;  // args without --config
  std::set<std::string> given;    // long names on the command line
  for (size_t i = 2; i < args.size(); ++i) {
    if (args[i] == "--config") {
      if (i + 1 >= args.size()) fail("--config needs a file name");
      path = args[++i];
      continue;
    }
    if (args[i].rfind("--config=", 0) == 0) {
      path = args[i].substr(9);
      continue;
    }
    if (const auto n = flag_name(args[i]); !n.empty()) given.insert(n);
    rest.push_back(args[i]);
  }
  if (path.empty()) return args;

  std::ifstream in(path);
  if (!in) fail("configuration file '{}' cannot be read (does it exist?)", path);
  std::vector<CLI::ConfigItem> items;
  try {
    items = CLI::ConfigTOML().from_config(in);
  } catch (const std::exception& e) {
    fail("configuration file '{}' is not valid TOML: {}", path, e.what());
  }
  std::vector<std::string> valid;
  for (const auto* o : sub->get_options())
    if (!o->get_lnames().empty() && o->get_lnames()[0] != "config" && o->get_lnames()[0] != "help")
      valid.push_back(o->get_lnames()[0]);

  std::vector<std::string> out = {args[0], args[1]};
  for (const auto& it : items) {
    if (it.name == "++" || it.name == "--") continue;  // table markers
    if (!(it.parents.empty() || (it.parents.size() == 1 && it.parents[0] == sub->get_name())))
      fail("configuration file '{}': table [{}] is not valid; put the keys at the top or under "
           "[{}]",
           path, fmt::join(it.parents, "."), sub->get_name());
    std::string key = it.name;
    for (auto& c : key)
      if (c == '_') c = '-';
    const CLI::Option* opt = sub->get_option_no_throw("--" + key);
    if (key == "config" || key == "help" || opt == nullptr)
      fail("configuration file '{}': unknown key '{}'; valid keys: {}", path, it.name,
           fmt::join(valid, ", "));
    if (given.count(key)) continue;  // the command line wins
    const std::string flag = "--" + key;
    if (opt->get_items_expected_max() == 0) {  // a switch
      if (it.inputs.size() != 1 || (it.inputs[0] != "true" && it.inputs[0] != "false"))
        fail("configuration file '{}': key '{}' is a switch: use true or false", path, it.name);
      if (it.inputs[0] == "true") out.push_back(flag);
      continue;
    }
    if (it.inputs.empty() || (it.inputs.size() == 1 && it.inputs[0].empty()))
      fail("configuration file '{}': key '{}' has no value", path, it.name);
    if (opt->get_items_expected_max() > 1) {  // repeatable: one flag per value
      for (const auto& v : it.inputs) out.insert(out.end(), {flag, v});
    } else {
      out.push_back(flag + "=" + fmt::format("{}", fmt::join(it.inputs, ",")));
    }
  }
  out.insert(out.end(), rest.begin(), rest.end());
  return out;
}

}  // namespace seqvit::cli
