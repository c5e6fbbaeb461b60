// The ClimaX model configuration (docs/model.md) and its validation. The JSON form is the one
// stored in checkpoints under __metadata__["seqvit.config"].
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace seqvit::model {

enum class Tokenization { Aggregate, PerVariable };

std::string to_string(Tokenization t);
Tokenization parse_tokenization(const std::string& s);  // "aggregate" | "per_variable"

// The kernel of the transformer blocks' self-attention: flash (tiled, O(N) memory) or dense
// (standard attention that keeps the B*H*N*N probabilities of every block for backward, for
// comparison; not under sequence parallelism). The variable aggregation always uses flash.
enum class AttentionKernel { Flash, Dense };

std::string to_string(AttentionKernel k);
AttentionKernel parse_attention_kernel(const std::string& s);  // "flash" | "dense"

struct ModelConfig {
  int64_t img_h = 32, img_w = 64;  // H x W grid
  int64_t patch_size = 4;          // p
  int64_t embed_dim = 128;         // D
  int64_t depth = 4;               // L blocks
  int64_t decoder_depth = 2;       // (Linear D->D, GELU) pairs in the head
  int64_t num_heads = 4;           // Hh
  double mlp_ratio = 4.0;
  std::vector<std::string> variables{"t2m", "u10", "v10", "z_500", "t_850"};
  std::vector<std::string> out_variables{"t2m", "u10", "v10", "z_500", "t_850"};
  Tokenization tokenization = Tokenization::Aggregate;
  // How attention is computed, not what the model is: not part of the JSON form (checkpoints
  // are the same either way).
  AttentionKernel attention = AttentionKernel::Flash;

  // Derived sizes.
  int64_t V() const { return static_cast<int64_t>(variables.size()); }
  int64_t Vo() const { return static_cast<int64_t>(out_variables.size()); }
  int64_t grid_h() const { return img_h / patch_size; }
  int64_t grid_w() const { return img_w / patch_size; }
  int64_t Lp() const { return grid_h() * grid_w(); }  // patches
  int64_t N() const { return tokenization == Tokenization::Aggregate ? Lp() : V() * Lp(); }
  int64_t head_dim() const { return embed_dim / num_heads; }  // d
  int64_t hidden() const;  // MLP hidden width, round(D * mlp_ratio)
  int64_t pp() const { return patch_size * patch_size; }
  // Index of each out variable in `variables`.
  std::vector<int64_t> out_index() const;

  // Throws seqvit::Error naming the value and the valid choices.
  void validate() const;

  std::string to_json() const;
  static ModelConfig from_json(const std::string& json, const std::string& where);
};

}  // namespace seqvit::model
