#!/usr/bin/python3
"""GRIB fixtures for tests/data/GribReaderTest.cpp and tests/cli/GribCliTest.cpp, written with
ecCodes' Python module (Debian's python3-eccodes) from its own sample messages.

    grib_fixtures.py OUTDIR

Every value encodes where and when it is: f = 100 k + lat + lon / 10 + level (lon in [0, 360),
k the time step of 6 hours from 2000-01-01 00 UTC, level in hPa or 0), packed with 24 bits per
value, so the reader's decoded values, orientation and times can be checked by formula. The
reduced Gaussian file comes with its expansion by numpy (reduced_expected.f64), the reference
for the reader's linear interpolation in longitude.
"""
import os
import shutil
import sys

import eccodes as ec
import numpy as np

OUT = sys.argv[1]
SAMPLES = ec.codes_samples_path() if hasattr(ec, "codes_samples_path") else \
    "/usr/share/eccodes/samples"


def f(k, lat, lon, lev=0.0):
    return 100.0 * k + lat + np.mod(lon, 360.0) / 10.0 + lev


def new(sample, short_name, type_of_level=None, level=None, pdt=None):
    h = ec.codes_grib_new_from_samples(sample)
    if pdt is not None:
        ec.codes_set(h, "productDefinitionTemplateNumber", pdt)
    if type_of_level:
        ec.codes_set(h, "typeOfLevel", type_of_level)
    ec.codes_set(h, "shortName", short_name)
    if type_of_level:
        ec.codes_set(h, "typeOfLevel", type_of_level)
    if level is not None:
        ec.codes_set(h, "level", level)
    return h


def set_ll(h, lat0, lat1, lon0, lon1, nj, ni):
    """A regular lat-lon grid from (lat0, lon0) to (lat1, lon1), scanning as the signs say."""
    ec.codes_set(h, "iScansNegatively", 1 if lon1 < lon0 else 0)
    ec.codes_set(h, "jScansPositively", 1 if lat1 > lat0 else 0)
    ec.codes_set(h, "Ni", ni)
    ec.codes_set(h, "Nj", nj)
    ec.codes_set(h, "latitudeOfFirstGridPointInDegrees", lat0)
    ec.codes_set(h, "latitudeOfLastGridPointInDegrees", lat1)
    ec.codes_set(h, "longitudeOfFirstGridPointInDegrees", lon0)
    ec.codes_set(h, "longitudeOfLastGridPointInDegrees", lon1)
    ec.codes_set(h, "iDirectionIncrementInDegrees", abs(lon1 - lon0) / (ni - 1))
    ec.codes_set(h, "jDirectionIncrementInDegrees", abs(lat1 - lat0) / (nj - 1))


def set_time(h, k):
    hours = 6 * k
    ec.codes_set(h, "dataDate", 20000101 + hours // 24)
    ec.codes_set(h, "dataTime", (hours % 24) * 100)
    if ec.codes_get(h, "productDefinitionTemplateNumber") == 8:  # an accumulation: step 0-0
        ec.codes_set(h, "endStep", 0)


def fill(h, k, lev=0.0, missing=None):
    """Values by formula at the message's own point coordinates (scanning order)."""
    ec.codes_set(h, "bitsPerValue", 24)
    if ec.codes_get(h, "gridType").startswith("reduced"):
        n = int(np.sum(ec.codes_get_array(h, "pl")))
    else:
        n = ec.codes_get(h, "Ni") * ec.codes_get(h, "Nj")
    ec.codes_set_values(h, np.zeros(n))  # the point iterator needs values of the right size
    lat = np.asarray(ec.codes_get_array(h, "latitudes"))
    lon = np.asarray(ec.codes_get_array(h, "longitudes"))
    v = f(k, lat, lon, lev)
    if missing is not None:
        ec.codes_set(h, "bitmapPresent", 1)
        ec.codes_set(h, "missingValue", 9999.0)
        v = np.where(missing(np.arange(v.size)), 9999.0, v)
    ec.codes_set_values(h, v)
    return v


def write(name, msgs):
    with open(os.path.join(OUT, name), "wb") as out:
        for h in msgs:
            ec.codes_write(h, out)
            ec.codes_release(h)


def ll(sample, short, tol, level, k, lev_value=0.0, grid=(60, -60, 0, 315, 5, 8), **kw):
    h = new(sample, short, tol, level, **kw)
    set_ll(h, grid[0], grid[1], grid[2], grid[3], grid[4], grid[5])
    set_time(h, k)
    fill(h, k, lev_value)
    return h


G2, G1 = "regular_ll_sfc_grib2", "GRIB1"

# Several variables, levels and times, messages out of order; GRIB 2 and GRIB 1 files together.
msgs = []
for k in (2, 0, 1):
    msgs.append(ll(G2, "2t", "heightAboveGround", 2, k))
    for lev in (850, 500):
        msgs.append(ll(G2, "z", "isobaricInhPa", lev, k, lev))
msgs.append(ll(G2, "z", "surface", 0, 0))
msgs.append(ll(G2, "lsm", "surface", 0, 0))
write("multi.grib2", msgs)
write("multi.grib1", [ll(G1, "u", "isobaricInhPa", lev, k, lev) for k in (1, 0, 2)
                      for lev in (500, 850)])

# Pressure levels in Pa (GRIB 2 isobaricInPa: 5000 Pa = 50 hPa) beside levels in hPa: one z.
write("pascal.grib2", [ll(G2, "z", "isobaricInhPa", 500, 0, 500),
                       ll(G2, "z", "isobaricInPa", 5000, 0, 50)])

# Scanning directions and longitudes -180..180 (GRIB 1 stores signed longitudes).
write("south_north.grib2", [ll(G2, "2t", "heightAboveGround", 2, k, grid=(-60, 60, 0, 315, 5, 8))
                            for k in range(3)])
write("east_west.grib2", [ll(G2, "2t", "heightAboveGround", 2, k, grid=(60, -60, 315, 0, 5, 8))
                          for k in range(3)])
write("west180.grib1", [ll(G1, "2t", "surface", 0, k, grid=(60, -60, -180, 135, 5, 8))
                        for k in range(3)])

# Columns stored one after the other (jPointsAreConsecutive = 1).
h = new(G2, "2t", "heightAboveGround", 2)
ec.codes_set(h, "jPointsAreConsecutive", 1)
set_ll(h, 60, -60, 0, 315, 5, 8)
set_time(h, 0)
fill(h, 0)
write("columns.grib2", [h])

# Regular Gaussian N32 (128 x 64), latitudes as the grid defines them.
msgs = []
for k in range(2):
    h = new("regular_gg_pl_grib2", "t", "isobaricInhPa", 500)
    set_time(h, k)
    fill(h, k, 500)
    msgs.append(h)
write("gauss.grib2", msgs)
h = ec.codes_grib_new_from_samples("regular_gg_pl_grib2")
np.sort(ec.codes_get_array(h, "distinctLatitudes"))[::-1].astype("<f8").tofile(
    os.path.join(OUT, "gauss_lat.f64"))
ec.codes_release(h)

# Reduced Gaussian N32 (pl = 20 .. 128 points per row) and its expansion to 128 x 64 by numpy:
# per row, linear interpolation in longitude with wrap (period 360), as CDO setgridtype,regular.
h = new("reduced_gg_pl_32_grib2", "t", "isobaricInhPa", 850)
set_time(h, 0)
v = fill(h, 0, 850)
pl = np.asarray(ec.codes_get_array(h, "pl"))
lat = np.asarray(ec.codes_get_array(h, "latitudes"))
write("reduced.grib2", [h])
target = np.arange(128) * 360.0 / 128
rows, at = [], 0
for n in pl:
    src_lon = np.arange(n) * 360.0 / n
    rows.append(np.interp(target, src_lon, v[at:at + n], period=360.0))
    at += n
np.asarray(rows).astype("<f8").tofile(os.path.join(OUT, "reduced_expected.f64"))

# A bitmap: every 7th point (in scanning order) missing, in GRIB 2 and GRIB 1.
for sample, name in ((G2, "bitmap.grib2"), (G1, "bitmap.grib1")):
    h = new(sample, "2t", "heightAboveGround" if sample == G2 else "surface",
            2 if sample == G2 else 0)
    set_ll(h, 60, -60, 0, 315, 5, 8)
    set_time(h, 0)
    fill(h, 0, missing=lambda i: i % 7 == 3)
    write(name, [h])

# Every name of the names table, in GRIB shortNames (tp and tisr are accumulations: template 8).
msgs = []
for k in range(2):
    for short, tol, level in (("2t", "heightAboveGround", 2), ("10u", "heightAboveGround", 10),
                              ("10v", "heightAboveGround", 10), ("lsm", "surface", 0),
                              ("z", "surface", 0)):
        msgs.append(ll(G2, short, tol, level, k))
    for short in ("tp", "tisr"):
        msgs.append(ll(G2, short, None, None, k, pdt=8))
    for short in ("z", "u", "v", "t", "r", "q"):
        for lev in (500, 850):
            msgs.append(ll(G2, short, "isobaricInhPa", lev, k, lev))
write("names.grib2", msgs)

# Bad inputs.
write("gap.grib2", [ll(G2, "2t", "heightAboveGround", 2, k) for k in (0, 1, 3)])
write("duplicate.grib2", [ll(G2, "2t", "heightAboveGround", 2, k) for k in (0, 1, 1)])
write("inconsistent.grib2", [ll(G2, "2t", "heightAboveGround", 2, 0),
                             ll(G2, "2t", "heightAboveGround", 2, 1, grid=(60, -60, 0, 315, 3, 8))])
write("levels_missing.grib2", [ll(G2, "z", "isobaricInhPa", 500, 0, 500),
                               ll(G2, "z", "isobaricInhPa", 850, 0, 850),
                               ll(G2, "z", "isobaricInhPa", 500, 1, 500)])
for sample in ("polar_stereographic_sfc_grib2", "sh_sfc_grib2"):
    shutil.copy(os.path.join(SAMPLES, sample + ".tmpl"), os.path.join(OUT, sample + ".grib2"))

# A small training set (tests/cli/GribCliTest.cpp): 8 x 16, 6-hourly for 4 days, ERA5 GRIB
# names (2t, z on pressure levels, lsm and z on the surface as constants).
msgs = []
grid = (70, -70, 0, 337.5, 8, 16)
for k in range(16):
    msgs.append(ll(G2, "2t", "heightAboveGround", 2, k, grid=grid))
    for lev in (500, 850):
        msgs.append(ll(G2, "z", "isobaricInhPa", lev, k, lev, grid=grid))
msgs.append(ll(G2, "lsm", "surface", 0, 0, grid=grid))
msgs.append(ll(G2, "z", "surface", 0, 0, grid=grid))
write("train.grib2", msgs)
