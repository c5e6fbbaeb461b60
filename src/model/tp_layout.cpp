// Tensor-parallel parameter layout (see tp_layout.h).
#include "model/tp_layout.h"

#include "core/check.h"

namespace seqvit::model {

namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

TpSplit tp_split(const std::string& name) {
  if (ends_with(name, "attn.qkv.weight") || ends_with(name, "attn.qkv.bias") ||
      name == "var_agg.in_proj_weight" || name == "var_agg.in_proj_bias")
    return TpSplit::HeadRows;
  if (ends_with(name, "mlp.fc1.weight") || ends_with(name, "mlp.fc1.bias")) return TpSplit::Rows;
  if (ends_with(name, "attn.proj.weight") || ends_with(name, "mlp.fc2.weight") ||
      name == "var_agg.out_proj.weight")
    return TpSplit::Columns;
  return TpSplit::Replicated;
}

void append_tp_runs(TpSplit split, const std::vector<int64_t>& shape, int T, int t,
                    int64_t local_offset, int64_t logical_offset, std::vector<LogicalRun>& runs) {
  const int64_t n = shape_numel(shape);
  const int64_t rows = shape.empty() ? 1 : shape[0];
  const int64_t width = rows > 0 ? n / rows : 0;  // floats per row (1 for a bias)
  switch (split) {
    case TpSplit::Replicated:
      runs.push_back({local_offset, logical_offset, n});
      return;
    case TpSplit::HeadRows: {  // q, k, v blocks of rows/3 rows each; rank t holds a slice of each
      SEQVIT_CHECK(rows % (3 * T) == 0, "tensor of {} rows cannot be split into q, k, v x tp {}",
                   rows, T);
      const int64_t block = rows / 3, mine = block / T;
      for (int64_t j = 0; j < 3; ++j)
        runs.push_back({local_offset + j * mine * width,
                        logical_offset + (j * block + t * mine) * width, mine * width});
      return;
    }
    case TpSplit::Rows: {
      SEQVIT_CHECK(rows % T == 0, "tensor of {} rows cannot be split over tp {}", rows, T);
      const int64_t mine = rows / T;
      runs.push_back({local_offset, logical_offset + t * mine * width, mine * width});
      return;
    }
    case TpSplit::Columns: {
      SEQVIT_CHECK(width % T == 0, "tensor of {} columns cannot be split over tp {}", width, T);
      const int64_t mine = width / T;
      for (int64_t r = 0; r < rows; ++r)
        runs.push_back({local_offset + r * mine, logical_offset + r * width + t * mine, mine});
      return;
    }
  }
}

}  // namespace seqvit::model
