// Named-tensor table over one flat allocation (see tensor_table.h).
#include "core/tensor_table.h"

#include "core/check.h"

namespace seqvit {

int64_t shape_numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

int TensorTable::add(const std::string& name, std::vector<int64_t> shape) {
  SEQVIT_CHECK(!index_.count(name), "tensor '{}' added twice", name);
  TensorEntry e;
  e.name = name;
  e.numel = shape_numel(shape);
  e.shape = std::move(shape);
  e.offset = total_;
  total_ += (e.numel + 15) / 16 * 16;
  index_[name] = static_cast<int>(entries_.size());
  entries_.push_back(std::move(e));
  return static_cast<int>(entries_.size()) - 1;
}

int64_t TensorTable::count() const {
  int64_t n = 0;
  for (const auto& e : entries_) n += e.numel;
  return n;
}

int TensorTable::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? -1 : it->second;
}

const TensorEntry& TensorTable::get(const std::string& name) const {
  int i = find(name);
  if (i < 0) fail("no tensor named '{}'", name);
  return entries_[i];
}

}  // namespace seqvit
