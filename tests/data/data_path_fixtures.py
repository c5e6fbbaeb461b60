#!/usr/bin/python3
"""The downloads of tests/cli/DataPathTest.cpp ("From a download to a forecast", docs/data.md):
one small data set written three ways, as the archives deliver it.

    data_path_fixtures.py OUT     (OUT is replaced)

OUT/netcdf/   ERA5 from the new CDS: era5_single_levels.nc (t2m) and era5_pressure_levels.nc
              (z and t on pressure_level 850, 500), time axis `valid_time` (int64 seconds since
              1970), latitude 90 .. -90 descending with both poles (33 rows: odd, as 721 is),
              longitude 0 .. 354.375 (64 columns), a scalar `number` as the CDS writes it.
OUT/grib/     the same fields as GRIB 2 (ecCodes' regular_ll samples): 2t at 2 m, z and t on
              isobaricInhPa, first point 90 N 0 E scanning southwards, one file per variable.
OUT/wb2.zarr  WeatherBench2 style (xarray to_zarr): long names (2m_temperature, geopotential,
              temperature), `time` in hours since 1959, `level`, latitude ascending on a
              32 x 64 equiangular grid without poles (as the 64x32_equiangular_conservative store).
Four days, 6-hourly, from 1979-01-01. Values are smooth in latitude and move eastwards in time,
with magnitudes of the real fields.
"""
import os
import shutil
import sys

import eccodes as ec
import netCDF4
import numpy as np
import pandas as pd
import xarray as xr

OUT = sys.argv[1]
shutil.rmtree(OUT, ignore_errors=True)
os.makedirs(os.path.join(OUT, "netcdf"))
os.makedirs(os.path.join(OUT, "grib"))

NT = 16  # 4 days, 6-hourly
times = pd.date_range("1979-01-01", periods=NT, freq="6h")
LEVELS = [850, 500]


def field(name, k, lat, lon, level=None):
    """[H, W] at time step k on the grid (lat, lon) in degrees."""
    la = np.radians(lat)[:, None]
    lo = np.radians(lon)[None, :]
    wave = np.sin(2 * lo - 0.3 * k) * np.cos(la)
    if name == "t2m":
        return 250.0 + 40.0 * np.cos(la) + 5.0 * wave + 0.0 * lo
    if name == "z":
        return 9.81 * (5500.0 if level == 500 else 1450.0) + 2000.0 * np.cos(la) ** 2 + 400.0 * wave
    if name == "t":
        return (255.0 if level == 500 else 275.0) + 25.0 * np.cos(la) + 3.0 * wave
    raise ValueError(name)


# ---- ERA5 NetCDF as the new CDS writes it ------------------------------------------------------
lat = np.linspace(90.0, -90.0, 33)
lon = np.arange(64) * 5.625
seconds = (times - pd.Timestamp("1970-01-01")).total_seconds().astype("i8")


def cds_file(path, variables, levels=None):
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("valid_time", NT)
        if levels:
            nc.createDimension("pressure_level", len(levels))
        nc.createDimension("latitude", len(lat))
        nc.createDimension("longitude", len(lon))
        num = nc.createVariable("number", "i8")
        num.long_name = "ensemble member numerical id"
        num.assignValue(0)
        t = nc.createVariable("valid_time", "i8", ("valid_time",))
        t.units = "seconds since 1970-01-01"
        t.calendar = "proleptic_gregorian"
        t.standard_name = "time"
        t[:] = seconds
        if levels:
            p = nc.createVariable("pressure_level", "f8", ("pressure_level",))
            p.units = "hPa"
            p.long_name = "pressure"
            p[:] = levels
        y = nc.createVariable("latitude", "f8", ("latitude",))
        y.units = "degrees_north"
        y[:] = lat
        x = nc.createVariable("longitude", "f8", ("longitude",))
        x.units = "degrees_east"
        x[:] = lon
        for name, units in variables:
            dims = ("valid_time",) + (("pressure_level",) if levels else ()) + ("latitude",
                                                                                  "longitude")
            v = nc.createVariable(name, "f4", dims, zlib=True, fill_value=np.float32(np.nan))
            v.units = units
            for k in range(NT):
                if levels:
                    for li, lev in enumerate(levels):
                        v[k, li] = field(name, k, lat, lon, lev)
                else:
                    v[k] = field(name, k, lat, lon)


cds_file(os.path.join(OUT, "netcdf/era5_single_levels.nc"), [("t2m", "K")])
cds_file(os.path.join(OUT, "netcdf/era5_pressure_levels.nc"),
         [("z", "m**2 s**-2"), ("t", "K")], LEVELS)

# ---- The same as GRIB 2 ----------------------------------------------------------------------


def grib_message(short, type_of_level, level, k, values):
    h = ec.codes_grib_new_from_samples("regular_ll_sfc_grib2")
    ec.codes_set(h, "shortName", short)
    ec.codes_set(h, "typeOfLevel", type_of_level)
    ec.codes_set(h, "level", level)
    ec.codes_set(h, "iScansNegatively", 0)
    ec.codes_set(h, "jScansPositively", 0)
    ec.codes_set(h, "Ni", len(lon))
    ec.codes_set(h, "Nj", len(lat))
    ec.codes_set(h, "latitudeOfFirstGridPointInDegrees", 90.0)
    ec.codes_set(h, "latitudeOfLastGridPointInDegrees", -90.0)
    ec.codes_set(h, "longitudeOfFirstGridPointInDegrees", 0.0)
    ec.codes_set(h, "longitudeOfLastGridPointInDegrees", float(lon[-1]))
    ec.codes_set(h, "iDirectionIncrementInDegrees", 5.625)
    ec.codes_set(h, "jDirectionIncrementInDegrees", 5.625)
    hours = 6 * k
    ec.codes_set(h, "dataDate", int((pd.Timestamp("1979-01-01") + pd.Timedelta(hours=hours))
                                    .strftime("%Y%m%d")))
    ec.codes_set(h, "dataTime", (hours % 24) * 100)
    ec.codes_set(h, "bitsPerValue", 24)
    ec.codes_set_values(h, values.ravel())  # row by row from 90 N, as the grid scans
    return h


def grib_file(name, msgs):
    with open(os.path.join(OUT, "grib", name), "wb") as out:
        for h in msgs:
            ec.codes_write(h, out)
            ec.codes_release(h)


grib_file("era5_2t.grib2", [grib_message("2t", "heightAboveGround", 2, k, field("t2m", k, lat, lon))
                            for k in range(NT)])
for short in ("z", "t"):
    grib_file(f"era5_{short}.grib2",
              [grib_message(short, "isobaricInhPa", lev, k, field(short, k, lat, lon, lev))
               for k in range(NT) for lev in LEVELS])

# ---- WeatherBench2-style Zarr ------------------------------------------------------------------
wlat = -90.0 + 180.0 / 32 * (np.arange(32) + 0.5)  # ascending, no poles
wlon = np.arange(64) * 5.625
levels = np.array([500, 850], dtype="i8")


def stack(name):
    return np.stack([np.stack([field(name, k, wlat, wlon, lev) for lev in levels])
                     for k in range(NT)]).astype("f4")


wb = xr.Dataset(
    {"2m_temperature": (("time", "latitude", "longitude"),
                        np.stack([field("t2m", k, wlat, wlon) for k in range(NT)]).astype("f4"),
                        {"units": "K"}),
     "geopotential": (("time", "level", "latitude", "longitude"), stack("z"),
                      {"units": "m**2 s**-2"}),
     "temperature": (("time", "level", "latitude", "longitude"), stack("t"), {"units": "K"})},
    coords={"time": times, "level": ("level", levels), "latitude": wlat, "longitude": wlon})
wb.to_zarr(os.path.join(OUT, "wb2.zarr"), consolidated=True,
           encoding={"time": {"units": "hours since 1959-01-01", "dtype": "i8"}})
print("wrote", OUT)
