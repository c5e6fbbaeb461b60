// CF-convention time: "UNITS since DATE" decoding into one common representation (hours since
// 1970-01-01 00:00:00 UTC, as double) and ISO 8601 output. Proleptic Gregorian calendar, which
// is what CF calls "standard"/"gregorian" for every date after 1582-10-15 (all reanalysis data).
#pragma once

#include <string>

namespace seqvit::data {

// A parsed "UNITS since DATE": time value v means epoch_seconds + v * unit_seconds (seconds
// since 1970-01-01 UTC). Units: days, hours, minutes, seconds (and their CF abbreviations),
// and the milli-, micro- and nanoseconds xarray writes for sub-second steps.
struct CfTimeUnits {
  double unit_seconds = 3600.0;
  double epoch_seconds = 0.0;
  double to_hours(double v) const { return (epoch_seconds + v * unit_seconds) / 3600.0; }
};

// Parses e.g. "hours since 1900-01-01 00:00:00.0", "days since 1979-1-1",
// "minutes since 2000-01-01T00:00:00Z", "seconds since 1970-01-01 00:00:00 UTC".
// Throws seqvit::Error naming the string and the accepted forms.
CfTimeUnits parse_cf_time_units(const std::string& units);

// Seconds since 1970-01-01 UTC of a date "Y-M-D[( |T)h[:m[:s[.f]]]][Z| UTC|+hh:mm|-hh:mm]".
double parse_iso_datetime(const std::string& date);

// Days from 1970-01-01 to year-month-day in the proleptic Gregorian calendar.
int64_t days_from_civil(int64_t year, int64_t month, int64_t day);

// "1979-01-01T06:00:00Z" (rounded to the nearest second) for hours since 1970-01-01.
std::string iso8601(double hours_since_1970);

}  // namespace seqvit::data
