// Zarr v2 array layer; see zarr_store.h for what is supported and docs/data.md "Zarr stores".
#include "data/zarr_store.h"

#include <blosc.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/check.h"

namespace seqvit::data {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Python's json (which zarr and xarray write with) emits NaN, Infinity and -Infinity for such
// floats, which is not JSON: turn them into the strings the Zarr spec uses for fill values.
std::string quote_python_floats(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size())
        out += text[++i];
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    bool replaced = false;
    for (const char* token : {"-Infinity", "Infinity", "NaN"}) {
      const size_t n = std::strlen(token);
      if (text.compare(i, n, token) == 0) {
        out += '"' + std::string(token) + '"';
        i += n - 1;
        replaced = true;
        break;
      }
    }
    if (!replaced) out += c;
  }
  return out;
}

json parse_json_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) fail("{}: cannot open the file for reading", file.string());
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return json::parse(quote_python_floats(ss.str()));
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", file.string(), e.what());
  }
}

// "NaN", "Infinity", "-Infinity" (as the Zarr spec and Python write them) or a number.
bool json_number(const json& j, double* x) {
  if (j.is_number()) return *x = j.get<double>(), true;
  if (!j.is_string()) return false;
  const auto& s = j.get_ref<const std::string&>();
  if (s == "NaN") return *x = NAN, true;
  if (s == "Infinity") return *x = INFINITY, true;
  if (s == "-Infinity") return *x = -INFINITY, true;
  return false;
}

// A .zarray (meta) and .zattrs (attrs) into a ZarrArray; `where` names the file(s) in errors.
ZarrArray parse_array(const std::string& name, const json& meta, const json& attrs,
                      const std::string& where) {
  ZarrArray a;
  a.name = name;
  // Inconsistent metadata is an error at once; an encoding seqvit cannot decode (dtype, order,
  // codec, filter, fill value) only when the array is read, so that a store whose other arrays
  // (string labels, bounds ...) are of no use here still opens.
  auto bad = [&](const char* key, const std::string& why) -> void {
    fail("{}: array '{}': key '{}': {}", where, name, key, why);
  };
  auto unsupported = [&](const char* key, const std::string& why) {
    if (a.unsupported.empty())
      a.unsupported = fmt::format("{}: array '{}': key '{}': {}", where, name, key, why);
  };
  if (!meta.is_object()) fail("{}: array '{}': the .zarray is not a JSON object", where, name);
  if (!meta.contains("zarr_format") || meta["zarr_format"] != 2)
    bad("zarr_format",
        fmt::format("is {}; only Zarr v2 stores are supported",
                    meta.contains("zarr_format") ? meta["zarr_format"].dump() : "absent"));
  for (const char* key : {"shape", "chunks"}) {
    if (!meta.contains(key) || !meta[key].is_array()) bad(key, "absent or not a list");
    for (const auto& x : meta[key]) {
      if (!x.is_number_integer() || x.get<int64_t>() < (key[0] == 's' ? 0 : 1))
        bad(key, fmt::format("holds {}; expected {} integers", x.dump(),
                             key[0] == 's' ? "non-negative" : "positive"));
      (key[0] == 's' ? a.shape : a.chunks).push_back(x.get<int64_t>());
    }
  }
  if (a.chunks.size() != a.shape.size())
    bad("chunks", fmt::format("has {} entries but shape has {}; expected one chunk length per "
                              "dimension",
                              a.chunks.size(), a.shape.size()));

  // dtype: byte order, kind, size ("<f4"); a structured dtype is a list.
  if (!meta.contains("dtype")) bad("dtype", "absent; expected a type such as \"<f4\"");
  a.dtype = meta["dtype"].is_string() ? meta["dtype"].get<std::string>() : meta["dtype"].dump();
  const std::string& dt = a.dtype;
  const bool ok_form = dt.size() == 3 && std::string("<>|").find(dt[0]) != std::string::npos &&
                       std::string("fiu").find(dt[1]) != std::string::npos &&
                       std::isdigit(static_cast<unsigned char>(dt[2]));
  a.kind = ok_form ? dt[1] : '?';
  a.itemsize = ok_form ? dt[2] - '0' : 0;
  const bool ok_size =
      a.kind == 'f' ? (a.itemsize == 4 || a.itemsize == 8)
                    : (a.itemsize == 1 || a.itemsize == 2 || a.itemsize == 4 || a.itemsize == 8);
  if (!ok_form || !ok_size)
    unsupported("dtype", fmt::format("'{}' is not supported; supported: float32/64 ('<f4', "
                                     "'<f8') and integers ('|i1', '<i2', '<i4', '<i8', '|u1', "
                                     "'<u2' ...), '<' or '>' byte order",
                                     dt));
  a.big_endian = !dt.empty() && dt[0] == '>';

  const std::string order = meta.value("order", std::string("C"));
  if (order != "C")
    unsupported("order",
                fmt::format("'{}' (column-major) is not supported; only C (row-major) order "
                            "is; rewrite the store with order='C'",
                            order));

  // compressor
  const json comp = meta.value("compressor", json());
  if (comp.is_null()) {
    a.codec = ZarrCodec::None, a.codec_name = "none";
  } else {
    const std::string id = comp.is_object() ? comp.value("id", std::string()) : comp.dump();
    if (id == "blosc") {
      a.codec = ZarrCodec::Blosc;
      a.codec_name = fmt::format("blosc ({})", comp.value("cname", std::string("?")));
    } else if (id == "zstd") {
      a.codec = ZarrCodec::Zstd, a.codec_name = "zstd";
    } else if (id == "zlib") {
      a.codec = ZarrCodec::Zlib, a.codec_name = "zlib";
    } else if (id == "gzip") {
      a.codec = ZarrCodec::Gzip, a.codec_name = "gzip";
    } else {
      unsupported("compressor",
                  fmt::format("unknown codec '{}'; supported: blosc, zstd, zlib, gzip and "
                              "none (null)",
                              id));
    }
  }
  const json filters = meta.value("filters", json());
  if (!filters.is_null() && !(filters.is_array() && filters.empty())) {
    const json& f0 = filters.is_array() ? filters[0] : filters;
    unsupported("filters", fmt::format("filter '{}' is not supported; seqvit reads arrays without "
                                       "filters (null)",
                                       f0.is_object() ? f0.value("id", f0.dump()) : f0.dump()));
  }
  const json fill = meta.value("fill_value", json());
  if (!fill.is_null()) {
    a.has_fill = true;
    if (!json_number(fill, &a.fill))
      unsupported("fill_value", fmt::format("is {}; expected a number, \"NaN\", \"Infinity\", "
                                            "\"-Infinity\" or null",
                                            fill.dump()));
  }
  const std::string sep = meta.value("dimension_separator", std::string("."));
  if (sep != "." && sep != "/")
    bad("dimension_separator", fmt::format("is '{}'; expected '.' or '/'", sep));
  a.separator = sep[0];

  // attributes
  if (!attrs.is_null() && !attrs.is_object())
    fail("{}: array '{}': the .zattrs is not a JSON object", where, name);
  if (attrs.is_object())
    for (const auto& [key, value] : attrs.items()) {
      if (key == "_ARRAY_DIMENSIONS") {
        if (!value.is_array()) bad("_ARRAY_DIMENSIONS", "is not a list of names");
        for (const auto& d : value) {
          if (!d.is_string()) bad("_ARRAY_DIMENSIONS", fmt::format("holds {}", d.dump()));
          a.dims.push_back(d.get<std::string>());
        }
        if (a.dims.size() != a.shape.size())
          bad("_ARRAY_DIMENSIONS", fmt::format("names {} dimensions but the shape has {}",
                                               a.dims.size(), a.shape.size()));
        continue;
      }
      double x;
      if (value.is_string()) a.text_attrs[key] = value.get<std::string>();
      if (json_number(value, &x)) {
        a.num_attrs[key] = {x};
      } else if (value.is_array()) {
        std::vector<double> v;
        for (const auto& e : value)
          if (json_number(e, &x)) v.push_back(x);
        if (v.size() == value.size() && !v.empty()) a.num_attrs[key] = v;
      }
    }
  return a;
}

// Reads a chunk file whole; false if it does not exist.
bool read_file(const std::string& path, std::vector<unsigned char>& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!fs::exists(path, ec)) return false;
    fail("{}: cannot open the chunk file for reading (permissions?)", path);
  }
  in.seekg(0, std::ios::end);
  const auto size = static_cast<size_t>(in.tellg());
  in.seekg(0);
  out.resize(size);
  if (size && !in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(size)))
    fail("{}: cannot read the chunk file", path);
  return true;
}

// zlib (window bits 15) or gzip (31) data into out[out.size()]; "" or why it failed.
std::string inflate_into(const std::vector<unsigned char>& in, std::vector<unsigned char>& out,
                         int window_bits) {
  z_stream z{};
  if (inflateInit2(&z, window_bits) != Z_OK) return "inflateInit2 failed";
  z.next_in = const_cast<unsigned char*>(in.data());
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  const int st = inflate(&z, Z_FINISH);
  const std::string msg = z.msg ? z.msg : "";
  const size_t produced = z.total_out;
  inflateEnd(&z);
  if (st == Z_STREAM_END)
    return produced == out.size() ? "" : fmt::format("decoded {} bytes", produced);
  if (st == Z_BUF_ERROR && z.avail_out == 0) return "decodes to more bytes than the chunk holds";
  return fmt::format("zlib error {}{}", st, msg.empty() ? "" : " (" + msg + ")");
}

template <typename Raw>
Raw load_raw(const unsigned char* p, bool swap) {
  Raw v;
  std::memcpy(&v, p, sizeof v);
  if (swap) {
    unsigned char b[sizeof v];
    std::memcpy(b, &v, sizeof v);
    std::reverse(b, b + sizeof v);
    std::memcpy(&v, b, sizeof v);
  }
  return v;
}

// n stored elements of a's dtype at p into out[n].
template <typename T>
void convert(const ZarrArray& a, const unsigned char* p, int64_t n, T* out) {
  const bool swap = a.big_endian && a.itemsize > 1;
  const int s = a.itemsize;
  auto each = [&](auto tag) {
    using Raw = decltype(tag);
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<T>(load_raw<Raw>(p + i * s, swap));
  };
  // clang-format off
  switch (a.kind == 'f' ? 100 + s : a.kind == 'i' ? 200 + s : 300 + s) {
    case 104: return each(float{});    case 108: return each(double{});
    case 201: return each(int8_t{});   case 202: return each(int16_t{});
    case 204: return each(int32_t{});  case 208: return each(int64_t{});
    case 301: return each(uint8_t{});  case 302: return each(uint16_t{});
    case 304: return each(uint32_t{}); case 308: return each(uint64_t{});
  }
  // clang-format on
  fail("array '{}': dtype '{}' has no conversion", a.name, a.dtype);
}

}  // namespace

int64_t ZarrArray::chunk_elements() const {
  int64_t n = 1;
  for (int64_t c : chunks) n *= c;
  return n;
}

std::string ZarrArray::text_attr(const std::string& key) const {
  const auto it = text_attrs.find(key);
  return it == text_attrs.end() ? std::string() : it->second;
}

bool is_zarr_store(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) && (fs::exists(fs::path(path) / ".zmetadata", ec) ||
                                        fs::exists(fs::path(path) / ".zgroup", ec));
}

std::string zarr_metadata_file(const std::string& path) {
  std::error_code ec;
  const fs::path zmeta = fs::path(path) / ".zmetadata";
  return (fs::exists(zmeta, ec) ? zmeta : fs::path(path) / ".zgroup").string();
}

ZarrStore::ZarrStore(const std::string& dir) : dir_(dir) {
  const fs::path root(dir);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) fail("{}: not a directory; a Zarr v2 store is one", dir);
  const fs::path zmeta = root / ".zmetadata";
  consolidated_ = fs::exists(zmeta, ec);
  if (consolidated_) {
    const json j = parse_json_file(zmeta);
    if (!j.is_object() || !j.contains("metadata") || !j["metadata"].is_object())
      fail("{}: key 'metadata': absent or not an object; expected consolidated Zarr v2 metadata",
           zmeta.string());
    const json& md = j["metadata"];
    if (md.contains(".zgroup") && md[".zgroup"].value("zarr_format", 0) != 2)
      fail("{}: key '.zgroup': zarr_format is {}; only Zarr v2 stores are supported",
           zmeta.string(), md[".zgroup"].value("zarr_format", json()).dump());
    for (const auto& [key, meta] : md.items()) {
      const std::string suffix = "/.zarray";
      if (key.size() <= suffix.size() ||
          key.compare(key.size() - suffix.size(), suffix.size(), suffix))
        continue;
      const std::string name = key.substr(0, key.size() - suffix.size());
      const std::string attrs_key = name + "/.zattrs";
      const json attrs = md.contains(attrs_key) ? md[attrs_key] : json();
      arrays_.push_back(
          parse_array(name, meta, attrs, fmt::format("{} (key '{}')", zmeta.string(), key)));
      // The array's own .zarray must say the same as the consolidated copy.
      const fs::path own = root / name / ".zarray";
      if (!fs::exists(own, ec))
        fail(
            "{}: key '{}' names array '{}', but {} does not exist; the store is incomplete (an "
            "interrupted download?)",
            zmeta.string(), key, name, own.string());
      const json mine = parse_json_file(own);
      for (const auto& [k, v] : meta.items())
        if (!mine.contains(k) || mine[k] != v)
          fail(
              "{}: key '{}' of array '{}' is {} there but {} in {}; the consolidated metadata "
              "is stale (re-run zarr.consolidate_metadata)",
              zmeta.string(), k, name, v.dump(), mine.contains(k) ? mine[k].dump() : "absent",
              own.string());
    }
  } else {
    const fs::path zgroup = root / ".zgroup";
    if (!fs::exists(zgroup, ec))
      fail("{}: neither .zmetadata nor .zgroup; not a Zarr v2 store", dir);
    const json g = parse_json_file(zgroup);
    if (!g.is_object() || g.value("zarr_format", 0) != 2)
      fail("{}: key 'zarr_format': expected 2 (only Zarr v2 stores are supported)",
           zgroup.string());
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(root, ec))
      if (e.is_directory() && fs::exists(e.path() / ".zarray"))
        names.push_back(e.path().filename().string());
    if (ec) fail("{}: cannot list the directory: {}", dir, ec.message());
    std::sort(names.begin(), names.end());
    for (const auto& name : names) {
      const fs::path za = root / name / ".zarray", zat = root / name / ".zattrs";
      const json attrs = fs::exists(zat, ec) ? parse_json_file(zat) : json();
      arrays_.push_back(parse_array(name, parse_json_file(za), attrs, za.string()));
    }
  }
  if (arrays_.empty()) fail("{}: the Zarr store holds no arrays", dir);
}

const ZarrArray* ZarrStore::find(const std::string& name) const {
  for (const auto& a : arrays_)
    if (a.name == name) return &a;
  return nullptr;
}

std::string ZarrStore::chunk_path(const ZarrArray& a, const std::vector<int64_t>& idx) const {
  std::string key;
  for (size_t d = 0; d < idx.size(); ++d)
    key += (d ? std::string(1, a.separator) : "") + std::to_string(idx[d]);
  if (idx.empty()) key = "0";  // a 0-d array is one chunk
  return (fs::path(dir_) / a.name / key).string();
}

void ZarrStore::load_chunk(const ZarrArray& a, const std::vector<int64_t>& idx) const {
  const std::string path = chunk_path(a, idx);
  if (path == decoded_key_) return;
  decoded_key_.clear();
  if (!read_file(path, compressed_)) {
    std::string key = path.substr(path.find_last_of('/') + 1);
    if (a.separator == '/') key = fs::relative(path, fs::path(dir_) / a.name).string();
    fail(
        "{}: array '{}': chunk '{}' is missing ({}); Zarr would read it as the fill value "
        "({}), but seqvit refuses incomplete stores (an interrupted download?): fetch the "
        "chunk again",
        dir_, a.name, key, path, a.has_fill ? fmt::format("{}", a.fill) : "null");
  }
  const size_t expected = static_cast<size_t>(a.chunk_elements() * a.itemsize);
  decoded_.resize(expected);
  const size_t n = compressed_.size();
  auto corrupt = [&](const std::string& why) {
    fail(
        "{}: corrupt chunk of array '{}': {} decoding failed: {} ({} bytes stored, {} bytes "
        "expected decoded: {} elements of {})",
        path, a.name, a.codec_name, why, n, expected, a.chunk_elements(), a.dtype);
  };
  switch (a.codec) {
    case ZarrCodec::None:
      if (n != expected) corrupt(fmt::format("the file holds {} bytes", n));
      decoded_.swap(compressed_);
      break;
    case ZarrCodec::Blosc: {
      size_t nbytes = 0;
      if (n < BLOSC_MIN_HEADER_LENGTH || blosc_cbuffer_validate(compressed_.data(), n, &nbytes) < 0)
        corrupt("not a valid blosc buffer (header or size)");
      if (nbytes != expected) corrupt(fmt::format("the blosc header says {} bytes", nbytes));
      const int got = blosc_decompress_ctx(compressed_.data(), decoded_.data(), expected, 1);
      if (got < 0 || static_cast<size_t>(got) != expected)
        corrupt(
            fmt::format("blosc_decompress returned {} (compressor '{}' in this buffer; the "
                        "library has {})",
                        got, blosc_cbuffer_complib(compressed_.data()), blosc_list_compressors()));
      break;
    }
    case ZarrCodec::Zstd: {
      const size_t got = ZSTD_decompress(decoded_.data(), expected, compressed_.data(), n);
      if (ZSTD_isError(got)) corrupt(ZSTD_getErrorName(got));
      if (got != expected) corrupt(fmt::format("decoded {} bytes", got));
      break;
    }
    case ZarrCodec::Zlib:
    case ZarrCodec::Gzip:
      if (const std::string why =
              inflate_into(compressed_, decoded_, a.codec == ZarrCodec::Gzip ? 31 : 15);
          !why.empty())
        corrupt(why);
      break;
  }
  decoded_key_ = path;
}

template <typename T>
void ZarrStore::read_into(const ZarrArray& a, const std::vector<int64_t>& start,
                          const std::vector<int64_t>& count, T* out) const {
  if (!a.unsupported.empty()) fail("{}", a.unsupported);
  const int64_t nd = a.ndim();
  if (static_cast<int64_t>(start.size()) != nd || static_cast<int64_t>(count.size()) != nd)
    fail("{}: array '{}' has {} dims; a read gave {} starts and {} counts", dir_, a.name, nd,
         start.size(), count.size());
  for (int64_t d = 0; d < nd; ++d)
    if (start[d] < 0 || count[d] < 0 || start[d] + count[d] > a.shape[d])
      fail("{}: array '{}': dim {} range [{}, {}) outside its length {}", dir_, a.name, d, start[d],
           start[d] + count[d], a.shape[d]);
  if (nd == 0) {
    load_chunk(a, {});
    return convert(a, decoded_.data(), 1, out);
  }
  for (int64_t d = 0; d < nd; ++d)
    if (count[d] == 0) return;
  // Strides (elements) of a chunk and of the output, C order.
  std::vector<int64_t> cstride(nd, 1), ostride(nd, 1);
  for (int64_t d = nd - 2; d >= 0; --d) {
    cstride[d] = cstride[d + 1] * a.chunks[d + 1];
    ostride[d] = ostride[d + 1] * count[d + 1];
  }
  std::vector<int64_t> c_lo(nd), c_hi(nd);  // chunk index range per dim (inclusive)
  for (int64_t d = 0; d < nd; ++d) {
    c_lo[d] = start[d] / a.chunks[d];
    c_hi[d] = (start[d] + count[d] - 1) / a.chunks[d];
  }
  std::vector<int64_t> idx = c_lo, lo(nd), hi(nd), g(nd);
  while (true) {
    load_chunk(a, idx);
    for (int64_t d = 0; d < nd; ++d) {
      lo[d] = std::max(start[d], idx[d] * a.chunks[d]);
      hi[d] = std::min(start[d] + count[d], (idx[d] + 1) * a.chunks[d]);
    }
    // Every row (along the last dim) of the intersection of this chunk with the hyperslab.
    g = lo;
    const int64_t len = hi[nd - 1] - lo[nd - 1];
    while (true) {
      int64_t src = 0, dst = 0;
      for (int64_t d = 0; d < nd; ++d) {
        src += (g[d] - idx[d] * a.chunks[d]) * cstride[d];
        dst += (g[d] - start[d]) * ostride[d];
      }
      convert(a, decoded_.data() + src * a.itemsize, len, out + dst);
      int64_t d = nd - 2;
      for (; d >= 0; --d) {
        if (++g[d] < hi[d]) break;
        g[d] = lo[d];
      }
      if (d < 0) break;
    }
    int64_t d = nd - 1;
    for (; d >= 0; --d) {
      if (++idx[d] <= c_hi[d]) break;
      idx[d] = c_lo[d];
    }
    if (d < 0) break;
  }
}

void ZarrStore::read(const ZarrArray& a, const std::vector<int64_t>& start,
                     const std::vector<int64_t>& count, double* out) const {
  read_into(a, start, count, out);
}

void ZarrStore::read(const ZarrArray& a, const std::vector<int64_t>& start,
                     const std::vector<int64_t>& count, float* out) const {
  read_into(a, start, count, out);
}

std::vector<double> ZarrStore::read_all(const ZarrArray& a) const {
  int64_t n = 1;
  for (int64_t s : a.shape) n *= s;
  std::vector<double> v(static_cast<size_t>(n));
  read(a, std::vector<int64_t>(a.shape.size(), 0), a.shape, v.data());
  return v;
}

}  // namespace seqvit::data
