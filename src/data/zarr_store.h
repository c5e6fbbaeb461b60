// The array layer of Zarr v2 stores (docs/data.md "Zarr stores"), as WeatherBench2 publishes
// them: a directory with consolidated metadata (.zmetadata; else .zgroup and each array's
// .zarray / .zattrs), one sub-directory per array, one file per chunk. Own reader: libnetcdf's
// NCZarr has no filter plugins on Debian and returns garbage for compressed chunks.
//
// Supported: dtypes <f4 <f8 <i1..<i8 <u1..<u8 (and '>' / '|' byte orders), order "C",
// compressors blosc (any cname the library has; shuffle / bitshuffle undone by blosc itself),
// zstd, zlib, gzip and none, no filters, fill_value (number, "NaN", "Infinity", "-Infinity",
// null), dimension_separator "." or "/", xarray's _ARRAY_DIMENSIONS. Anything else is an error
// naming it, when the array is read (or, for a grid variable or its coordinates, when the
// store is opened); inconsistent metadata fails at once. A missing chunk file is an error (Zarr
// would read it as the fill value; a partial download must not train on fill values), as is a chunk
// that does not decompress to its size.
//
// Memory: a read decodes one chunk at a time into one buffer (plus one for the compressed
// bytes), and keeps the last decoded chunk for the next read (sequential reads of time steps
// that share a chunk decode it once). One ZarrStore is not for concurrent use; separate objects
// are independent (blosc_decompress_ctx keeps no global state).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace seqvit::data {

enum class ZarrCodec { None, Blosc, Zstd, Zlib, Gzip };

// One array's metadata (.zarray) and attributes (.zattrs).
struct ZarrArray {
  std::string name;                    // path in the store: "t2m"
  std::vector<int64_t> shape, chunks;  // [ndim]
  std::string dtype;                   // as written: "<f4"
  char kind = 'f';                     // 'f', 'i' or 'u'
  int itemsize = 4;                    // bytes
  bool big_endian = false;
  ZarrCodec codec = ZarrCodec::None;
  std::string codec_name;                         // for messages: "blosc (lz4)", "zstd", "none"
  bool has_fill = false;                          // fill_value not null
  double fill = 0;                                // may be NaN or infinite
  char separator = '.';                           // between chunk indices in a chunk key
  std::vector<std::string> dims;                  // _ARRAY_DIMENSIONS, [ndim] or empty
  std::map<std::string, std::string> text_attrs;  // string-valued attributes
  std::map<std::string, std::vector<double>> num_attrs;  // numeric (and numeric list) ones
  std::string unsupported;  // why seqvit cannot decode this array ("" if it can): read() says it
  int64_t ndim() const { return static_cast<int64_t>(shape.size()); }
  int64_t chunk_elements() const;
  std::string text_attr(const std::string& key) const;  // "" when absent
};

class ZarrStore {
 public:
  // Reads the store's metadata (consolidated when .zmetadata exists) and checks it.
  explicit ZarrStore(const std::string& dir);
  const std::string& path() const { return dir_; }
  bool consolidated() const { return consolidated_; }
  const std::vector<ZarrArray>& arrays() const { return arrays_; }
  // The array of that name, or nullptr.
  const ZarrArray* find(const std::string& name) const;

  // The hyperslab [start, start + count) of `a` (one entry per dim), into out[prod(count)] in C
  // order, converted to double / float. Reads chunk by chunk.
  void read(const ZarrArray& a, const std::vector<int64_t>& start,
            const std::vector<int64_t>& count, double* out) const;
  void read(const ZarrArray& a, const std::vector<int64_t>& start,
            const std::vector<int64_t>& count, float* out) const;
  // The whole array (coordinates).
  std::vector<double> read_all(const ZarrArray& a) const;

  // The file of one chunk: "<store>/t2m/0.1.2" (or ".../0/1/2").
  std::string chunk_path(const ZarrArray& a, const std::vector<int64_t>& chunk_index) const;

 private:
  template <typename T>
  void read_into(const ZarrArray& a, const std::vector<int64_t>& start,
                 const std::vector<int64_t>& count, T* out) const;
  // Decodes chunk `idx` of `a` into decoded_ (unless it is the one held already).
  void load_chunk(const ZarrArray& a, const std::vector<int64_t>& idx) const;

  std::string dir_;
  bool consolidated_ = false;
  std::vector<ZarrArray> arrays_;
  mutable std::vector<unsigned char> compressed_;  // [file size] one chunk as stored
  mutable std::vector<unsigned char> decoded_;     // [chunk_elements * itemsize] one chunk
  mutable std::string decoded_key_;                // chunk_path of what decoded_ holds
};

// Whether `path` is a directory holding .zmetadata or .zgroup (a Zarr v2 store).
bool is_zarr_store(const std::string& path);
// The store's top metadata file: <path>/.zmetadata if there is one, else <path>/.zgroup.
std::string zarr_metadata_file(const std::string& path);

}  // namespace seqvit::data
