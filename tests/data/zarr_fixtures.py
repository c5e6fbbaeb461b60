#!/usr/bin/python3
"""Writes the Zarr v2 test stores of tests/data/ZarrStoreTest.cpp and tests/cli/ZarrCliTest.cpp
with Debian's python3-zarr / xarray / numcodecs, and what xarray decodes from each.

    zarr_fixtures.py OUT     (OUT is replaced; ctest runs it as the zarr_fixtures setup test)

OUT/<name>.zarr      the stores (good ones, then bad_*.zarr with one defect each)
OUT/expected.json    one entry per field of every good single store: the canonical grid
                     (latitude north to south, longitude [0, 360) ascending), times in hours since
                     1970, and the file of the values xarray decodes ([T, H, W] float64, NaN =
                     missing), which the C++ reader must reproduce.
Values encode their coordinates, 100 k + lat + lon / 1000 (+ level), so orientation errors show.
"""
import json
import os
import shutil
import sys

import numcodecs
import numpy as np
import pandas as pd
import xarray as xr
import zarr

OUT = sys.argv[1]
shutil.rmtree(OUT, ignore_errors=True)  # xarray refuses to overwrite a store
os.makedirs(OUT)
expected = []


def field(times, lat, lon, levels=None):
    k = np.arange(len(times))[:, None, None]
    v = 100.0 * k + lat[None, :, None] + (np.mod(lon, 360.0) / 1000.0)[None, None, :]
    if levels is None:
        return v
    return v[:, None, :, :] + np.asarray(levels, dtype=float)[None, :, None, None]


def dataset(lat, lon, nt=3, levels=(500, 850), start="2000-01-01", t2m_nan=False):
    times = pd.date_range(start, periods=nt, freq="6H")
    t2m = field(times, lat, lon).astype("f4")
    if t2m_nan:
        t2m[0, 1, 2] = np.nan
        t2m[nt - 1, -1, -1] = np.nan
    ds = xr.Dataset(
        {
            "t2m": (("time", "latitude", "longitude"), t2m, {"units": "K"}),
            "z": (("time", "level", "latitude", "longitude"),
                  field(times, lat, lon, levels), {"units": "m**2 s**-2"}),
        },
        coords={"time": times, "level": ("level", np.array(levels, dtype="i8"), {"units": "hPa"}),
                "latitude": ("latitude", lat, {"units": "degrees_north"}),
                "longitude": ("longitude", lon, {"units": "degrees_east"})})
    return ds


def record(name, consolidated=True):
    """What xarray decodes from store `name`, in the canonical orientation."""
    ds = xr.open_zarr(os.path.join(OUT, name), consolidated=consolidated)
    for var in ds.data_vars:
        da = ds[var]
        dims = da.dims
        lat = [d for d in dims if d in ("latitude", "lat")][0]
        lon = [d for d in dims if d in ("longitude", "lon")][0]
        da = da.assign_coords({lon: np.mod(da[lon].values.astype(float), 360.0)})
        da = da.sortby(lon).sortby(lat, ascending=False)
        # Canonical dims: a store laid out (..., longitude, latitude) is transposed.
        da = da.transpose(*[d for d in dims if d not in (lat, lon)], lat, lon)
        levels = [None]
        if "level" in dims:
            levels = list(da["level"].values)
        for lev in levels:
            sel = da if lev is None else da.sel(level=lev)
            vals = np.asarray(sel.values, dtype="f8")
            fname = f"{name}.{var}.{'' if lev is None else int(lev)}.f64"
            vals.tofile(os.path.join(OUT, fname))
            e = {"store": name, "field": var if lev is None else f"{var}_{int(lev)}",
                 "variable": var, "file": fname, "shape": list(vals.shape),
                 "lat": [float(x) for x in da[lat].values],
                 "lon": [float(x) for x in da[lon].values],
                 "missing": int(np.isnan(vals).sum())}
            if "time" in dims:
                e["times"] = [float((t - np.datetime64("1970-01-01")) / np.timedelta64(1, "h"))
                              for t in da["time"].values]
            expected.append(e)


lat_desc = np.linspace(60.0, -60.0, 7)  # 7 rows: chunks of 3 leave a partial edge chunk
lon_0_360 = np.arange(10) * 36.0
lon_pm180 = np.arange(10) * 36.0 - 180.0

# ---- Every compressor, on (2, 3, 4) / (1, 1, 4, 6) chunks with partial edge chunks ----------
B = numcodecs.Blosc
codecs = {
    "blosc_lz4_shuffle": B(cname="lz4", clevel=5, shuffle=B.SHUFFLE),
    "blosc_lz4_bitshuffle": B(cname="lz4", clevel=5, shuffle=B.BITSHUFFLE),
    "blosc_lz4hc": B(cname="lz4hc", clevel=5, shuffle=B.SHUFFLE),
    "blosc_zstd_shuffle": B(cname="zstd", clevel=3, shuffle=B.SHUFFLE),
    "blosc_zstd_bitshuffle": B(cname="zstd", clevel=3, shuffle=B.BITSHUFFLE),
    "blosc_zlib_noshuffle": B(cname="zlib", clevel=5, shuffle=B.NOSHUFFLE),
    "blosc_blosclz": B(cname="blosclz", clevel=5, shuffle=B.SHUFFLE),
    "zstd": numcodecs.Zstd(level=3),
    "zlib": numcodecs.Zlib(level=5),
    "gzip": numcodecs.GZip(level=5),
    "none": None,
}
for i, (tag, comp) in enumerate(codecs.items()):
    lat = lat_desc[::-1] if i % 2 == 0 else lat_desc  # both latitude orders
    lon = lon_pm180 if i % 3 == 0 else lon_0_360  # and both longitude conventions
    ds = dataset(lat, lon, t2m_nan=(i % 2 == 1))
    enc = {"t2m": {"compressor": comp, "chunks": (2, 3, 4)},
           "z": {"compressor": comp, "chunks": (1, 1, 4, 6)}}
    ds.to_zarr(os.path.join(OUT, f"codec_{tag}.zarr"), encoding=enc, consolidated=True)
    record(f"codec_{tag}.zarr")

# ---- Packed int16 with scale/offset and _FillValue (NaN -> fill), float NaN, a constant -----
ds = dataset(lat_desc[::-1], lon_pm180, nt=4)
vals = ds["t2m"].values.astype("f8") + 200.0
vals[1, 2, 3] = np.nan
vals[3, 0, :] = np.nan
ds["t2m"] = (("time", "latitude", "longitude"), vals, {"units": "K"})
sst = ds["t2m"].values.astype("f4").copy()
sst[:, 3, 4] = np.nan
ds["sst"] = (("time", "latitude", "longitude"), sst, {"units": "K"})
ds["lsm"] = (("latitude", "longitude"), (np.arange(70).reshape(7, 10) % 3 / 2.0).astype("f4"))
enc = {"t2m": {"dtype": "i2", "scale_factor": 0.01, "add_offset": 300.0, "_FillValue": -32767,
               "chunks": (3, 4, 4)},
       "sst": {"chunks": (1, 7, 10)},
       "time": {"units": "hours since 1970-01-01 00:00:00", "dtype": "i8"}}
ds.to_zarr(os.path.join(OUT, "packed.zarr"), encoding=enc, consolidated=True)
record("packed.zarr")

# ---- Other dtypes: big-endian floats and packed big-endian shorts, bytes, int32 / int64 -------
ds = dataset(lat_desc, lon_0_360, nt=3)
base = ds["t2m"].values.astype("f8")
ds["u8"] = (("time", "latitude", "longitude"), base, {"units": "1"})
ds["i4"] = (("time", "latitude", "longitude"), base * 1000.0, {"units": "1"})
ds["i8"] = (("time", "latitude", "longitude"), base * 10.0, {"units": "1"})
inf_fill = ds["t2m"].values.copy()
inf_fill[1, 1:3, 2] = np.nan  # written as the fill value, Infinity
ds["inf_fill"] = (("time", "latitude", "longitude"), inf_fill, {"units": "K", "note": np.nan})
ds.to_zarr(os.path.join(OUT, "dtypes.zarr"), consolidated=True, encoding={
    "t2m": {"dtype": ">f4", "chunks": (2, 4, 4)},
    "z": {"dtype": ">i2", "scale_factor": 0.1, "add_offset": 600.0, "_FillValue": -32768},
    "u8": {"dtype": "u1", "scale_factor": 2.0, "add_offset": -100.0, "_FillValue": 255},
    "i4": {"dtype": "<i4", "scale_factor": 0.001},
    "i8": {"dtype": ">i8", "scale_factor": 0.1},
    "inf_fill": {"_FillValue": np.inf, "chunks": (1, 5, 5)}})
record("dtypes.zarr")

# ---- Arrays that are no grid variable (a string label, bounds) beside one that is -----------
ds = dataset(lat_desc, lon_0_360, nt=2).drop_vars("z")
ds["label"] = (("longitude",), np.array([f"m{i}" for i in range(10)]))
ds["time_bnds"] = (("time", "nv"), np.zeros((2, 2)))
ds.to_zarr(os.path.join(OUT, "extras.zarr"), consolidated=True)

# ---- "/" dimension separator ----------------------------------------------------------------
store = zarr.DirectoryStore(os.path.join(OUT, "slash.zarr"), dimension_separator="/")
dataset(lat_desc, lon_0_360).to_zarr(
    store, encoding={"t2m": {"chunks": (2, 3, 4)}, "z": {"chunks": (1, 1, 4, 6)}},
    consolidated=True)
record("slash.zarr")

# ---- Without consolidated metadata (.zgroup and per-array .zarray / .zattrs) -----------------
dataset(lat_desc, lon_pm180).to_zarr(os.path.join(OUT, "plain.zarr"), consolidated=False)
record("plain.zarr", consolidated=False)

# ---- WeatherBench2-like: long names, int64 "hours since" time, ascending latitude, levels ----
times = pd.date_range("1979-01-01", periods=12, freq="6H")
lat = np.linspace(-84.375, 84.375, 16)
lon = np.arange(32) * 11.25
levels = [50, 500, 850]
wb = xr.Dataset(
    {"2m_temperature": (("time", "latitude", "longitude"),
                        (250.0 + field(times, lat, lon)).astype("f4"), {"units": "K"}),
     "geopotential": (("time", "level", "latitude", "longitude"),
                      (1000.0 * field(times, lat, lon, levels)).astype("f4"),
                      {"units": "m**2 s**-2"})},
    coords={"time": times, "level": ("level", np.array(levels, dtype="i8")),
            "latitude": lat, "longitude": lon})
wb.to_zarr(os.path.join(OUT, "wb2.zarr"), consolidated=True,
           encoding={"time": {"units": "hours since 1959-01-01", "dtype": "i8"},
                     "2m_temperature": {"chunks": (1, 16, 32)},
                     "geopotential": {"chunks": (1, 3, 16, 32)}})
record("wb2.zarr")

# ---- WeatherBench2 as published: (time, longitude, latitude), (time, level, longitude, latitude)
# The same values as wb2.zarr, stored with longitude before latitude; chunks that split both
# horizontal axes (partial edge chunks) so the transposed hyperslab crosses chunks.
wb.transpose("time", "level", "longitude", "latitude").to_zarr(
    os.path.join(OUT, "wb2_lonlat.zarr"), consolidated=True,
    encoding={"time": {"units": "hours since 1959-01-01", "dtype": "i8"},
              "2m_temperature": {"chunks": (1, 12, 10)},
              "geopotential": {"chunks": (1, 3, 32, 16)}})
record("wb2_lonlat.zarr")

# ---- WeatherBench 1: one level per variable, a scalar level coordinate -> z_500 --------------
wb1 = dataset(lat_desc, lon_0_360, levels=(500,)).isel(level=0).drop_vars("t2m")
wb1.to_zarr(os.path.join(OUT, "wb1.zarr"), consolidated=True)

# ---- One variable over two stores (one per period), the second with ascending latitude ------
a = dataset(lat_desc, lon_0_360, nt=4)
b = dataset(lat_desc[::-1], lon_0_360, nt=4, start="2000-01-02")
a.to_zarr(os.path.join(OUT, "part1.zarr"), consolidated=True)
b.to_zarr(os.path.join(OUT, "part2.zarr"), consolidated=True)
gap = dataset(lat_desc, lon_0_360, nt=2, start="2000-01-03")
gap.to_zarr(os.path.join(OUT, "part4.zarr"), consolidated=True)

# ---- Unusual stores (docs/data.md "Unusual files") -------------------------------------------
# An ensemble axis `number` of length 1 before time, and a depth `zlev` of length 1 between the
# level and the grid: both dropped. (The values are those of dataset(), f of k, lat, lon, level.)
odd = dataset(lat_desc, lon_0_360).expand_dims(number=[0])
odd["z"] = odd["z"].expand_dims(zlev=[10.0], axis=3)
odd["zlev"].attrs["units"] = "m"
odd.to_zarr(os.path.join(OUT, "odd_axes.zarr"), consolidated=True,
            encoding={"t2m": {"chunks": (1, 2, 3, 4)}})
# Three members: not a grid variable; its error names the axis and its length.
dataset(lat_desc, lon_0_360).drop_vars("z").expand_dims(number=[0, 1, 2]).to_zarr(
    os.path.join(OUT, "odd_members.zarr"), consolidated=True)
# A time axis in plain "days" (no epoch), as some climate files store it.
raw = dataset(lat_desc, lon_0_360, nt=4).drop_vars("z")
raw = raw.assign_coords(time=("time", np.array([0.0, 1.0, 2.0, 3.0]), {"units": "days"}))
raw.to_zarr(os.path.join(OUT, "odd_days.zarr"), consolidated=True)
# A curvilinear grid: 2-D latitude and longitude over (y, x).
yy, xx = np.meshgrid(np.arange(3.0), np.arange(4.0), indexing="ij")
xr.Dataset({"tas": (("time", "y", "x"), np.zeros((2, 3, 4), "f4"), {"units": "K"})},
           coords={"time": pd.date_range("2000-01-01", periods=2, freq="6H"),
                   "lat": (("y", "x"), 10.0 * yy + xx, {"units": "degrees_north"}),
                   "lon": (("y", "x"), 20.0 * xx + yy, {"units": "degrees_east"})}).to_zarr(
    os.path.join(OUT, "odd_curvilinear.zarr"), consolidated=True)

# ---- Bad stores, one defect each --------------------------------------------------------------
def bad(name, comp=numcodecs.Zlib(level=1), **kw):
    path = os.path.join(OUT, name)
    dataset(lat_desc, lon_0_360).to_zarr(
        path, consolidated=True,
        encoding={"t2m": {"compressor": comp, "chunks": (2, 3, 4), **kw}})
    return path


def edit(path, key, fn, own=True, consolidated=True):
    """Applies fn to the JSON of key ('t2m/.zarray') in the array's file and/or .zmetadata."""
    if own:
        f = os.path.join(path, key)
        j = json.load(open(f))
        fn(j)
        json.dump(j, open(f, "w"), indent=4)
    if consolidated:
        f = os.path.join(path, ".zmetadata")
        j = json.load(open(f))
        fn(j["metadata"][key])
        json.dump(j, open(f, "w"), indent=4)


p = bad("bad_codec.zarr")
edit(p, "t2m/.zarray", lambda j: j["compressor"].update(id="lzma"))
bad("bad_filter.zarr", filters=[numcodecs.Delta(dtype="<f4")])
p = bad("bad_order.zarr")
edit(p, "t2m/.zarray", lambda j: j.update(order="F"))
p = bad("bad_dtype.zarr")
edit(p, "t2m/.zarray", lambda j: j.update(dtype="<f2"))
p = bad("bad_chunks.zarr")
edit(p, "t2m/.zarray", lambda j: j.update(chunks=[2, 3]))
p = bad("bad_dims.zarr")
edit(p, "t2m/.zattrs", lambda j: j.update(_ARRAY_DIMENSIONS=["latitude", "longitude"]))
p = bad("bad_stale.zarr")  # .zmetadata disagrees with the array's own .zarray
edit(p, "t2m/.zarray", lambda j: j.update(chunks=[1, 3, 4]), consolidated=False)
p = bad("bad_absent.zarr")  # .zmetadata names an array the store lacks
shutil.rmtree(os.path.join(p, "z"))
p = bad("bad_json.zarr")
with open(os.path.join(p, ".zmetadata"), "w") as f:
    f.write('{"metadata": {"t2m/.zarray": {"chunks": [2, 3, 4],,}}')
p = bad("bad_missing.zarr")
os.remove(os.path.join(p, "t2m", "1.2.0"))
p = bad("bad_zlib.zarr")  # zlib header bytes overwritten
with open(os.path.join(p, "t2m", "0.1.0"), "r+b") as f:
    f.write(b"\x00\x00\x00\x00")
p = bad("bad_zstd.zarr", comp=numcodecs.Zstd(level=1))  # zstd magic number overwritten
with open(os.path.join(p, "t2m", "0.1.0"), "r+b") as f:
    f.write(b"\x00\x00\x00\x00")
p = bad("bad_blosc.zarr", comp=numcodecs.Blosc(cname="lz4"))  # truncated chunk
chunk = os.path.join(p, "t2m", "0.1.0")
with open(chunk, "r+b") as f:
    f.truncate(os.path.getsize(chunk) // 2)
p = bad("bad_none.zarr", comp=None)  # an uncompressed chunk with bytes missing
chunk = os.path.join(p, "t2m", "1.0.1")
with open(chunk, "r+b") as f:
    f.truncate(os.path.getsize(chunk) - 4)

# Last: its presence marks a complete set (tests/data/zarr_fixture.h).
with open(os.path.join(OUT, "expected.json.tmp"), "w") as f:
    json.dump(expected, f, indent=1)
os.rename(os.path.join(OUT, "expected.json.tmp"), os.path.join(OUT, "expected.json"))
