// CF time parsing; see cf_time.h. Days are counted with the civil-from-days algorithm
// (H. Hinnant), exact for any proleptic Gregorian date.
#include "data/cf_time.h"

#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "core/check.h"

namespace seqvit::data {

// H. Hinnant's algorithm.
int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

namespace {

void civil_from_days(int64_t z, int64_t& y, int64_t& m, int64_t& d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  d = doy - (153 * mp + 2) / 5 + 1;
  m = mp < 10 ? mp + 3 : mp - 9;
  y = yoe + era * 400 + (m <= 2);
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(const std::string& s) {
  size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return s.substr(a, b - a);
}

// Reads an unsigned integer at s[i]; false if none.
bool read_int(const std::string& s, size_t& i, int64_t& v) {
  const size_t start = i;
  v = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])))
    v = v * 10 + (s[i++] - '0');
  return i > start;
}

}  // namespace

double parse_iso_datetime(const std::string& date_in) {
  const std::string s = trim(date_in);
  auto bad = [&](const char* why) -> double {
    fail(
        "cannot parse the date '{}' ({}); expected Y-M-D[ h:m:s][Z], e.g. '1900-01-01 00:00:00' "
        "or '2000-01-01T00:00:00Z'",
        date_in, why);
  };
  size_t i = 0;
  int64_t y, mo, d, h = 0, mi = 0;
  double sec = 0;
  bool neg_year = false;
  if (i < s.size() && s[i] == '-') neg_year = true, ++i;
  if (!read_int(s, i, y) || i >= s.size() || s[i++] != '-') return bad("no year");
  if (neg_year) y = -y;
  if (!read_int(s, i, mo) || i >= s.size() || s[i++] != '-') return bad("no month");
  if (!read_int(s, i, d)) return bad("no day");
  if (mo < 1 || mo > 12 || d < 1 || d > 31) return bad("month or day out of range");
  if (i < s.size() && (s[i] == 'T' || s[i] == ' ')) {
    while (i < s.size() && (s[i] == 'T' || s[i] == ' ')) ++i;
    if (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
      read_int(s, i, h);
      if (i < s.size() && s[i] == ':') {
        ++i;
        if (!read_int(s, i, mi)) return bad("no minutes after ':'");
        if (i < s.size() && s[i] == ':') {
          ++i;
          const size_t start = i;
          while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.'))
            ++i;
          if (i == start) return bad("no seconds after ':'");
          sec = std::strtod(s.substr(start, i - start).c_str(), nullptr);
        }
      }
    }
  }
  if (h > 24 || mi > 59 || sec >= 61) return bad("time of day out of range");
  // Time zone: Z, UTC, GMT, or +hh[:mm] / -hh[:mm].
  double tz_seconds = 0;
  std::string rest = lower(trim(s.substr(i)));
  if (rest == "z" || rest == "utc" || rest == "gmt" || rest.empty()) {
  } else if (rest[0] == '+' || rest[0] == '-') {
    size_t j = 1;
    int64_t th = 0, tm = 0;
    if (!read_int(rest, j, th)) return bad("bad time zone");
    if (j < rest.size() && rest[j] == ':')
      ++j, read_int(rest, j, tm);
    else if (th >= 100)
      tm = th % 100, th /= 100;  // +0530
    if (j != rest.size()) return bad("bad time zone");
    tz_seconds = (rest[0] == '+' ? 1.0 : -1.0) * static_cast<double>(th * 3600 + tm * 60);
  } else {
    return bad("unexpected trailing text");
  }
  return static_cast<double>(days_from_civil(y, mo, d)) * 86400.0 +
         static_cast<double>(h * 3600 + mi * 60) + sec - tz_seconds;
}

CfTimeUnits parse_cf_time_units(const std::string& units) {
  const std::string u = lower(trim(units));
  const size_t at = u.find(" since ");
  if (at == std::string::npos)
    fail(
        "time units '{}' are not of the form 'UNITS since DATE' (e.g. 'hours since "
        "1900-01-01 00:00:00')",
        units);
  const std::string unit = trim(u.substr(0, at));
  CfTimeUnits r;
  if (unit == "seconds" || unit == "second" || unit == "secs" || unit == "sec" || unit == "s")
    r.unit_seconds = 1;
  else if (unit == "minutes" || unit == "minute" || unit == "mins" || unit == "min")
    r.unit_seconds = 60;
  else if (unit == "hours" || unit == "hour" || unit == "hrs" || unit == "hr" || unit == "h")
    r.unit_seconds = 3600;
  else if (unit == "days" || unit == "day" || unit == "d")
    r.unit_seconds = 86400;
  else if (unit == "milliseconds" || unit == "millisecond" || unit == "msec" || unit == "ms")
    r.unit_seconds = 1e-3;  // xarray picks these for sub-second steps
  else if (unit == "microseconds" || unit == "microsecond" || unit == "us")
    r.unit_seconds = 1e-6;
  else if (unit == "nanoseconds" || unit == "nanosecond" || unit == "ns")
    r.unit_seconds = 1e-9;
  else
    fail(
        "time units '{}': unknown unit '{}'; expected days, hours, minutes, seconds, "
        "milliseconds, microseconds or nanoseconds",
        units, unit);
  r.epoch_seconds = parse_iso_datetime(trim(units).substr(at + 7));
  return r;
}

std::string iso8601(double hours_since_1970) {
  if (!std::isfinite(hours_since_1970)) return "NaT";
  const auto total = static_cast<int64_t>(std::llround(hours_since_1970 * 3600.0));
  int64_t days = total / 86400, rem = total % 86400;
  if (rem < 0) rem += 86400, --days;
  int64_t y, m, d;
  civil_from_days(days, y, m, d);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04lld-%02lld-%02lldT%02lld:%02lld:%02lldZ",
                static_cast<long long>(y), static_cast<long long>(m), static_cast<long long>(d),
                static_cast<long long>(rem / 3600), static_cast<long long>(rem / 60 % 60),
                static_cast<long long>(rem % 60));
  return buf;
}

}  // namespace seqvit::data
