// ModelConfig validation and JSON (see config.h).
#include "model/config.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "core/check.h"

namespace seqvit::model {

std::string to_string(Tokenization t) {
  return t == Tokenization::Aggregate ? "aggregate" : "per_variable";
}

Tokenization parse_tokenization(const std::string& s) {
  if (s == "aggregate") return Tokenization::Aggregate;
  if (s == "per_variable") return Tokenization::PerVariable;
  fail("unknown tokenization '{}': valid values are 'aggregate' and 'per_variable'", s);
}

std::string to_string(AttentionKernel k) { return k == AttentionKernel::Flash ? "flash" : "dense"; }

AttentionKernel parse_attention_kernel(const std::string& s) {
  if (s == "flash") return AttentionKernel::Flash;
  if (s == "dense") return AttentionKernel::Dense;
  fail("unknown attention kernel '{}': valid values are 'flash' and 'dense'", s);
}

int64_t ModelConfig::hidden() const {
  return static_cast<int64_t>(std::llround(static_cast<double>(embed_dim) * mlp_ratio));
}

std::vector<int64_t> ModelConfig::out_index() const {
  std::vector<int64_t> idx;
  for (const auto& o : out_variables) {
    int64_t found = -1;
    for (size_t i = 0; i < variables.size(); ++i)
      if (variables[i] == o) found = static_cast<int64_t>(i);
    if (found < 0) fail("output variable '{}' is not one of the input variables", o);
    idx.push_back(found);
  }
  return idx;
}

namespace {
std::string divisors_of(int64_t n) {
  std::string s;
  for (int64_t k = 1; k <= n; ++k)
    if (n % k == 0) s += (s.empty() ? "" : ", ") + std::to_string(k);
  return s;
}
}  // namespace

void ModelConfig::validate() const {
  if (img_h <= 0 || img_w <= 0) fail("img_size must be positive, got {}x{}", img_h, img_w);
  if (patch_size <= 0) fail("patch_size must be positive, got {}", patch_size);
  if (img_h % patch_size != 0 || img_w % patch_size != 0)
    fail("image {}x{} is not divisible by patch_size {}; patch sizes that divide both: {}", img_h,
         img_w, patch_size, divisors_of(std::gcd(img_h, img_w)));
  if (embed_dim <= 0) fail("embed_dim must be positive, got {}", embed_dim);
  if (num_heads <= 0) fail("num_heads must be positive, got {}", num_heads);
  if (embed_dim % num_heads != 0)
    fail("embed_dim {} is not divisible by num_heads {}; head counts that divide it: {}",
         embed_dim, num_heads, divisors_of(embed_dim));
  if (depth < 0) fail("depth must be >= 0, got {}", depth);
  if (decoder_depth < 0) fail("decoder_depth must be >= 0, got {}", decoder_depth);
  if (!(mlp_ratio > 0) || hidden() < 1) fail("mlp_ratio must be positive, got {}", mlp_ratio);
  if (variables.empty()) fail("variables must not be empty");
  if (out_variables.empty()) fail("out_variables must not be empty");
  std::set<std::string> seen;
  for (const auto& v : variables)
    if (!seen.insert(v).second) fail("variable '{}' is listed twice in variables", v);
  std::set<std::string> seen_out;
  for (const auto& v : out_variables)
    if (!seen_out.insert(v).second) fail("variable '{}' is listed twice in out_variables", v);
  for (const auto& o : out_variables)
    if (!seen.count(o)) fail("output variable '{}' is not one of the input variables", o);
}

std::string ModelConfig::to_json() const {
  nlohmann::json j;
  j["img_size"] = {img_h, img_w};
  j["patch_size"] = patch_size;
  j["embed_dim"] = embed_dim;
  j["depth"] = depth;
  j["decoder_depth"] = decoder_depth;
  j["num_heads"] = num_heads;
  j["mlp_ratio"] = mlp_ratio;
  j["variables"] = variables;
  j["out_variables"] = out_variables;
  j["tokenization"] = to_string(tokenization);
  return j.dump();
}

ModelConfig ModelConfig::from_json(const std::string& text, const std::string& where) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    fail("{}: model configuration is not valid JSON: {}", where, e.what());
  }
  if (!j.is_object()) fail("{}: model configuration must be a JSON object", where);
  static const std::set<std::string> known{"img_size",  "patch_size",    "embed_dim",
                                           "depth",     "decoder_depth", "num_heads",
                                           "mlp_ratio", "variables",     "out_variables",
                                           "tokenization"};
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!known.count(it.key()))
      fail("{}: unknown model configuration key '{}'", where, it.key());
  ModelConfig c;
  auto need = [&](const char* key) -> const nlohmann::json& {
    if (!j.contains(key)) fail("{}: model configuration lacks '{}'", where, key);
    return j.at(key);
  };
  try {
    const auto& img = need("img_size");
    if (!img.is_array() || img.size() != 2)
      fail("{}: img_size must be [H, W], got {}", where, img.dump());
    c.img_h = img[0].get<int64_t>();
    c.img_w = img[1].get<int64_t>();
    c.patch_size = need("patch_size").get<int64_t>();
    c.embed_dim = need("embed_dim").get<int64_t>();
    c.depth = need("depth").get<int64_t>();
    c.decoder_depth = need("decoder_depth").get<int64_t>();
    c.num_heads = need("num_heads").get<int64_t>();
    c.mlp_ratio = j.value("mlp_ratio", 4.0);
    c.variables = need("variables").get<std::vector<std::string>>();
    c.out_variables = j.contains("out_variables")
                          ? j.at("out_variables").get<std::vector<std::string>>()
                          : c.variables;
    c.tokenization = parse_tokenization(j.value("tokenization", std::string("aggregate")));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: model configuration has a value of the wrong type: {}", where, e.what());
  }
  try {
    c.validate();
  } catch (const Error& e) {
    fail("{}: {}", where, e.what());
  }
  return c;
}

}  // namespace seqvit::model
