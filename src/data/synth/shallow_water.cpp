// Forced shallow-water model on the sphere (see shallow_water.h and docs/synthetic_data.md).
#include "data/synth/shallow_water.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "core/check.h"

namespace seqvit::data::synth {

namespace {
constexpr double kRadius = 6.371e6;   // m
constexpr double kOmega = 7.292e-5;   // s-1
constexpr double kPi = 3.14159265358979323846;
constexpr double kDay = 86400.0;
constexpr double kObliquity = 23.44 * kPi / 180.0;
}  // namespace

ShallowWater::ShallowWater(const ShallowWaterParams& p, const std::vector<double>& lsm,
                           const std::vector<double>& orog, uint64_t seed)
    : p_(p), H_(p.H), W_(p.W), rng_(seed ^ 0x5eedc0ffee123457ull), lsm_(lsm), orog_(orog) {
  SEQVIT_CHECK(H_ >= 4 && W_ == 2 * H_ && (W_ & (W_ - 1)) == 0,
               "the shallow-water grid must be H x 2H with W a power of two (32x64, 64x128, "
               "128x256), got {}x{}",
               H_, W_);
  const size_t n = static_cast<size_t>(H_) * W_;
  SEQVIT_CHECK(lsm_.size() == n && orog_.size() == n, "lsm/orography must be [{}, {}]", H_, W_);
  // 1200 s at 64 columns (Courant number about 0.5 for 140 m s-1 at the filter latitude),
  // rounded so that a whole number of steps makes 6 hours.
  const double dt_guess = p.dt > 0 ? p.dt : 1200.0 * 64.0 / W_;
  dt_ = 21600.0 / std::ceil(21600.0 / dt_guess - 1e-9);

  const double dphi = kPi / H_;
  lat_.resize(H_), coslat_.resize(H_), sinlat_.resize(H_), tanlat_.resize(H_), f_.resize(H_);
  cos_face_.resize(H_ + 1), area_.resize(H_), cos_diff_.resize(H_);
  const double cos_c = std::cos(p.filter_lat_deg * kPi / 180.0);
  for (int j = 0; j <= H_; ++j) cos_face_[j] = std::sin(j * dphi);  // cos(90 - j dphi)
  cos_face_[0] = cos_face_[H_] = 0.0;                                // exactly: no flux at poles
  for (int j = 0; j < H_; ++j) {
    lat_[j] = kPi / 2 - (j + 0.5) * dphi;
    coslat_[j] = std::cos(lat_[j]);
    sinlat_[j] = std::sin(lat_[j]);
    tanlat_[j] = std::tan(lat_[j]);
    f_[j] = 2 * kOmega * sinlat_[j];
    // (sin of the north face - sin of the south face): the cell area / (a^2 dlambda).
    area_[j] = std::cos(j * dphi) - std::cos((j + 1) * dphi);
    cos_diff_[j] = std::max(coslat_[j], cos_c);
  }
  keep_m_.assign(H_, W_ / 2);
  for (int j = 0; j < H_; ++j)
    if (coslat_[j] < cos_c)
      keep_m_[j] = std::max(1, static_cast<int>(std::floor(W_ / 2 * coslat_[j] / cos_c)));
  // FFT tables (radix 2).
  twiddle_.resize(W_ / 2);
  for (int k = 0; k < W_ / 2; ++k) twiddle_[k] = std::polar(1.0, -2 * kPi * k / W_);
  bitrev_.resize(W_);
  int bits = 0;
  while ((1 << bits) < W_) ++bits;
  for (int i = 0; i < W_; ++i) {
    int r = 0;
    for (int b = 0; b < bits; ++b)
      if (i & (1 << b)) r |= 1 << (bits - 1 - b);
    bitrev_[i] = r;
  }
  fft_buf_.resize(W_);

  for (auto* x : {&u_, &v_, &phi_, &T_, &zeta_, &ke_, &w1_, &w2_, &phi_eq_, &T_eq_, &fu_, &fv_,
                  &fT_})
    x->assign(n, 0.0);
  cos_m_.assign(W_, 0.0);
  sin_m_.assign(W_, 0.0);
  for (State* s : {&s1_, &s2_, &d_})
    for (auto* x : {&s->u, &s->v, &s->phi, &s->T}) x->assign(n, 0.0);
  force_every_ = std::max(1, static_cast<int>(std::lround(3600.0 / dt_)));

  // Random forcing modes: log-uniform zonal (1..W/4) and meridional (1..H/2) wave numbers, so
  // every octave of scales down to four grid lengths is forced; more modes on finer grids.
  const int K = 48 * W_ / 64;
  for (int k = 0; k < K; ++k) {
    const int m = std::min(W_ / 4, static_cast<int>(std::exp(rng_.uniform() * std::log(W_ / 4 + 1.0))));
    const int nn = std::min(H_ / 2, static_cast<int>(std::exp(rng_.uniform() * std::log(H_ / 2 + 1.0))));
    fm_.push_back(std::max(1, m));
    fn_.push_back(std::max(1, nn));
    const double kk = std::sqrt(double(fm_.back()) * fm_.back() + double(fn_.back()) * fn_.back());
    famp_.push_back(std::pow(kk / 4.0, -1.0 / 3.0) / std::sqrt(K / 48.0));
    cpsi_.emplace_back(rng_.normal(), rng_.normal());
    cT_.emplace_back(rng_.normal(), rng_.normal());
  }
}

void ShallowWater::init(double t_seconds) {
  t_ = t_seconds;
  nstep_ = 0;
  update_forcing();
  std::fill(u_.begin(), u_.end(), 0.0);
  std::fill(v_.begin(), v_.end(), 0.0);
  phi_ = phi_eq_;
  T_ = T_eq_;
  // Start in gradient-wind balance with the zonal-mean equilibrium height (u from the
  // meridional geopotential gradient), so spin-up has fewer gravity waves to shed.
  const double dphi = kPi / H_;
  for (int j = 1; j + 1 < H_; ++j) {
    if (std::abs(lat_[j]) < 10 * kPi / 180) continue;
    double zn = 0, zs = 0;
    for (int i = 0; i < W_; ++i) zn += phi_eq_[(j - 1) * W_ + i], zs += phi_eq_[(j + 1) * W_ + i];
    const double ug = -(zn - zs) / W_ / (2 * dphi * kRadius) / f_[j];
    for (int i = 0; i < W_; ++i) u_[j * W_ + i] = std::clamp(ug, -40.0, 40.0);
  }
  for (auto* x : {&u_, &v_, &phi_, &T_}) polar_filter(*x);
}

void ShallowWater::update_forcing() {
  const double day = t_ / kDay;
  const double decl = kObliquity * std::sin(2 * kPi * (day - 80.0) / 365.2422);
  const double season = std::sin(decl) / std::sin(kObliquity);  // -1 (NH winter) .. 1
  const double utc = 2 * kPi * std::fmod(t_, kDay) / kDay;
  const double dlam = 2 * kPi / W_;
  for (int j = 0; j < H_; ++j) {
    const double s2 = sinlat_[j] * sinlat_[j];
    for (int i = 0; i < W_; ++i) {
      const size_t ix = static_cast<size_t>(j) * W_ + i;
      const double land = lsm_[ix];
      const double hour_angle = utc + i * dlam - kPi;   // 0 at local noon
      const double diurnal = coslat_[j] * std::cos(decl) * std::cos(hour_angle - 0.5);  // 2 h lag
      phi_eq_[ix] = p_.phi0 + p_.dphi_eq * (1.0 / 3.0 - s2) +
                    0.2 * p_.dphi_eq * sinlat_[j] * season * (1.0 + 0.5 * land) +
                    300.0 * land * diurnal -
                    p_.topo_factor * orog_[ix];  // relax the free surface, not the thickness
      T_eq_[ix] = 287.0 + 40.0 * (1.0 / 3.0 - s2) + sinlat_[j] * season * (8.0 + 18.0 * land) +
                  5.0 * land * diurnal - 3.0 * land;
    }
  }
  // Red-noise amplitudes: AR(1) with a decorrelation time of about 2 days at wave number 4,
  // shorter for smaller scales.
  const double dtf = force_every_ * dt_;
  std::fill(fu_.begin(), fu_.end(), 0.0);
  std::fill(fv_.begin(), fv_.end(), 0.0);
  std::fill(fT_.begin(), fT_.end(), 0.0);
  if (!p_.forcing) return;
  std::vector<double>& cm = cos_m_;
  std::vector<double>& sm = sin_m_;
  for (size_t k = 0; k < fm_.size(); ++k) {
    const double kk = std::sqrt(double(fm_[k]) * fm_[k] + double(fn_[k]) * fn_[k]);
    const double tau = std::clamp(2.0 * std::pow(4.0 / kk, 2.0 / 3.0), 0.25, 3.0) * kDay;
    const double rho = std::exp(-dtf / tau), q = std::sqrt((1 - rho * rho) / 2);
    cpsi_[k] = rho * cpsi_[k] + q * std::complex<double>(rng_.normal(), rng_.normal());
    cT_[k] = rho * cT_[k] + q * std::complex<double>(rng_.normal(), rng_.normal());
    const int m = fm_[k], n = fn_[k];
    for (int i = 0; i < W_; ++i) cm[i] = std::cos(m * i * dlam), sm[i] = std::sin(m * i * dlam);
    // psi = A Re(c e^{i m lambda}) sin(n x), x = lat + pi/2 (vanishes at both poles);
    // u = -(1/a) dpsi/dlat, v = (1/(a cos lat)) dpsi/dlambda: non-divergent, no mass source.
    const double A = p_.force_u * famp_[k] / kk;  // velocity forcing ~ force_u * famp
    const double B = p_.force_T * famp_[k];
    const auto cp = cpsi_[k], ct = cT_[k];
    for (int j = 0; j < H_; ++j) {
      const double x = lat_[j] + kPi / 2;
      const double sn = std::sin(n * x), cn = std::cos(n * x);
      double* fu = &fu_[static_cast<size_t>(j) * W_];
      double* fv = &fv_[static_cast<size_t>(j) * W_];
      double* fT = &fT_[static_cast<size_t>(j) * W_];
      for (int i = 0; i < W_; ++i) {
        const double re = cp.real() * cm[i] - cp.imag() * sm[i];
        const double im = cp.real() * sm[i] + cp.imag() * cm[i];
        fu[i] += -A * re * n * cn;
        fv[i] += -A * m * im * sn / coslat_[j];
        fT[i] += B * (ct.real() * cm[i] - ct.imag() * sm[i]) * sn;
      }
    }
  }
}

// out = del^2 x, conservative: the meridional part is a difference of face fluxes with zero
// flux through the poles; the zonal part uses cos(lat) clipped at the filter latitude (the
// polar filter removes the scales it would otherwise resolve there), which keeps the explicit
// del^4 stable with one coefficient everywhere.
void ShallowWater::laplacian(const std::vector<double>& x, std::vector<double>& out) const {
  const double dphi = kPi / H_, dlam = 2 * kPi / W_, a2 = kRadius * kRadius;
  for (int j = 0; j < H_; ++j) {
    const double cz = 1.0 / (a2 * cos_diff_[j] * cos_diff_[j] * dlam * dlam);
    const double cm = 1.0 / (a2 * dphi * area_[j]);
    const double* r = &x[static_cast<size_t>(j) * W_];
    const double* rn = j > 0 ? r - W_ : r;
    const double* rs = j + 1 < H_ ? r + W_ : r;
    for (int i = 0; i < W_; ++i) {
      const int ie = i + 1 == W_ ? 0 : i + 1, iw = i == 0 ? W_ - 1 : i - 1;
      out[static_cast<size_t>(j) * W_ + i] =
          (r[ie] - 2 * r[i] + r[iw]) * cz +
          (cos_face_[j] * (rn[i] - r[i]) - cos_face_[j + 1] * (r[i] - rs[i])) * cm;
    }
  }
}

void ShallowWater::tendency(const State& s, State& d) {
  const double dphi = kPi / H_, dlam = 2 * kPi / W_, a = kRadius;
  const int half = W_ / 2;
  // Value of field x at (row j + dj, column i), across the pole where the row runs off the
  // grid: same latitude, longitude + 180, vector components change sign.
  auto at = [&](const std::vector<double>& x, int j, int i, double sign) {
    if (j < 0) return sign * x[(i + half) % W_];
    if (j >= H_) return sign * x[static_cast<size_t>(H_ - 1) * W_ + (i + half) % W_];
    return x[static_cast<size_t>(j) * W_ + i];
  };
  // Relative vorticity (circulation form, zero u cos(lat) at the poles) and kinetic energy.
  for (int j = 0; j < H_; ++j) {
    for (int i = 0; i < W_; ++i) {
      const int ie = (i + 1) % W_, iw = (i + W_ - 1) % W_;
      const size_t ix = static_cast<size_t>(j) * W_ + i;
      const double uc_n = cos_face_[j] * 0.5 * (s.u[ix] + at(s.u, j - 1, i, -1));
      const double uc_s = cos_face_[j + 1] * 0.5 * (s.u[ix] + at(s.u, j + 1, i, -1));
      zeta_[ix] = (s.v[j * W_ + ie] - s.v[j * W_ + iw]) / (2 * dlam * a * coslat_[j]) -
                  (uc_n - uc_s) / (a * area_[j]);
      ke_[ix] = 0.5 * (s.u[ix] * s.u[ix] + s.v[ix] * s.v[ix]) +
                p_.topo_factor * orog_[ix] + s.phi[ix];  // Bernoulli function
    }
  }
  const double drag = p_.forcing ? 1.0 / (p_.tau_drag_days * kDay) : 0.0;
  const double rphi = p_.forcing ? 1.0 / (p_.tau_phi_days * kDay) : 0.0;
  const double rT_sea = p_.forcing ? 1.0 / (p_.tau_T_days * kDay) : 0.0;
  const double rT_land = p_.forcing ? 1.0 / (1.5 * kDay) : 0.0;
  for (int j = 0; j < H_; ++j) {
    const double ac = a * coslat_[j];
    for (int i = 0; i < W_; ++i) {
      const int ie = (i + 1) % W_, iw = (i + W_ - 1) % W_;
      const size_t ix = static_cast<size_t>(j) * W_ + i;
      const size_t xe = static_cast<size_t>(j) * W_ + ie, xw = static_cast<size_t>(j) * W_ + iw;
      // Mass: flux form, face fluxes cos(face) * mean(phi v), none through the poles.
      const double pv = s.phi[ix] * s.v[ix];
      const double pv_n = at(s.phi, j - 1, i, 1) * at(s.v, j - 1, i, -1);
      const double pv_s = at(s.phi, j + 1, i, 1) * at(s.v, j + 1, i, -1);
      const double flux_n = cos_face_[j] * 0.5 * (pv + pv_n);
      const double flux_s = cos_face_[j + 1] * 0.5 * (pv + pv_s);
      const double div = (s.phi[xe] * s.u[xe] - s.phi[xw] * s.u[xw]) / (2 * dlam * ac) +
                         (flux_n - flux_s) / (a * area_[j]);
      const double land = lsm_[ix];
      d.phi[ix] = -div + rphi * (phi_eq_[ix] - s.phi[ix]);
      // Momentum, vector-invariant: du/dt = (zeta + f) v - dB/dx, dv/dt = -(zeta + f) u - dB/dy.
      const double absv = zeta_[ix] + f_[j];
      const double dBdx = (ke_[xe] - ke_[xw]) / (2 * dlam * ac);
      const double dBdy = (at(ke_, j - 1, i, 1) - at(ke_, j + 1, i, 1)) / (2 * dphi * a);
      const double r = drag * (1.0 + land);
      d.u[ix] = absv * s.v[ix] - dBdx - r * s.u[ix] + fu_[ix];
      d.v[ix] = -absv * s.u[ix] - dBdy - r * s.v[ix] + fv_[ix];
      // Tracer, advective form.
      const double dTdx = (s.T[xe] - s.T[xw]) / (2 * dlam * ac);
      const double dTdy = (at(s.T, j - 1, i, 1) - at(s.T, j + 1, i, 1)) / (2 * dphi * a);
      const double rT = rT_sea + land * (rT_land - rT_sea);
      d.T[ix] = -s.u[ix] * dTdx - s.v[ix] * dTdy + rT * (T_eq_[ix] - s.T[ix]) + fT_[ix];
    }
  }
  // del^4 hyperdiffusion: the checkerboard at the equator e-folds in hyper_tau_hours.
  const double delta = a * dlam;
  const double nu4 = delta * delta * delta * delta / (64.0 * p_.hyper_tau_hours * 3600.0);
  const std::pair<const std::vector<double>*, std::vector<double>*> fields[] = {
      {&s.u, &d.u}, {&s.v, &d.v}, {&s.phi, &d.phi}, {&s.T, &d.T}};
  for (auto [x, dx] : fields) {
    laplacian(*x, w1_);
    laplacian(w1_, w2_);
    for (size_t k = 0; k < dx->size(); ++k) (*dx)[k] -= nu4 * w2_[k];
    polar_filter(*dx);
  }
}

// Remove zonal wave numbers above keep_m_[j] on rows poleward of the filter latitude, so the
// shortest resolved zonal length there matches the one at the filter latitude (the usual
// remedy for the converging meridians). The zonal mean (m = 0) is untouched: mass is kept.
void ShallowWater::polar_filter(std::vector<double>& x) {
  const int W = W_;
  auto fft = [&](bool inverse) {
    auto& b = fft_buf_;
    for (int i = 0; i < W; ++i)
      if (i < bitrev_[i]) std::swap(b[i], b[bitrev_[i]]);
    for (int len = 2; len <= W; len <<= 1) {
      const int step = W / len;
      for (int s = 0; s < W; s += len)
        for (int k = 0; k < len / 2; ++k) {
          auto w = twiddle_[k * step];
          if (inverse) w = std::conj(w);
          const auto t = w * b[s + k + len / 2];
          b[s + k + len / 2] = b[s + k] - t;
          b[s + k] += t;
        }
    }
  };
  for (int j = 0; j < H_; ++j) {
    const int keep = keep_m_[j];
    if (keep >= W / 2) continue;
    double* row = &x[static_cast<size_t>(j) * W];
    for (int i = 0; i < W; ++i) fft_buf_[i] = row[i];
    fft(false);
    for (int m = keep + 1; m <= W - keep - 1; ++m) fft_buf_[m] = 0.0;
    fft(true);
    for (int i = 0; i < W; ++i) row[i] = fft_buf_[i].real() / W;
  }
}

void ShallowWater::step() {
  if (nstep_ % force_every_ == 0) update_forcing();
  const size_t n = u_.size();
  // SSP-RK3 (Shu-Osher): s1 = y + dt F(y); s2 = 3/4 y + 1/4 (s1 + dt F(s1));
  // y <- 1/3 y + 2/3 (s2 + dt F(s2)).
  State y{std::move(u_), std::move(v_), std::move(phi_), std::move(T_)};
  auto fields = [](State& s) {
    return std::array<std::vector<double>*, 4>{&s.u, &s.v, &s.phi, &s.T};
  };
  tendency(y, d_);
  {
    auto fy = fields(y), f1 = fields(s1_), fd = fields(d_);
    for (int q = 0; q < 4; ++q)
      for (size_t k = 0; k < n; ++k) (*f1[q])[k] = (*fy[q])[k] + dt_ * (*fd[q])[k];
  }
  tendency(s1_, d_);
  {
    auto fy = fields(y), f1 = fields(s1_), f2 = fields(s2_), fd = fields(d_);
    for (int q = 0; q < 4; ++q)
      for (size_t k = 0; k < n; ++k)
        (*f2[q])[k] = 0.75 * (*fy[q])[k] + 0.25 * ((*f1[q])[k] + dt_ * (*fd[q])[k]);
  }
  tendency(s2_, d_);
  {
    auto fy = fields(y), f2 = fields(s2_), fd = fields(d_);
    for (int q = 0; q < 4; ++q)
      for (size_t k = 0; k < n; ++k)
        (*fy[q])[k] = (1.0 / 3.0) * (*fy[q])[k] + (2.0 / 3.0) * ((*f2[q])[k] + dt_ * (*fd[q])[k]);
  }
  u_ = std::move(y.u), v_ = std::move(y.v), phi_ = std::move(y.phi), T_ = std::move(y.T);
  t_ += dt_;
  ++nstep_;
}

double ShallowWater::mass() const {
  const double dlam = 2 * kPi / W_;
  double total = 0;
  for (int j = 0; j < H_; ++j) {
    double row = 0;
    for (int i = 0; i < W_; ++i) row += phi_[static_cast<size_t>(j) * W_ + i];
    total += row * area_[j];
  }
  return total * kRadius * kRadius * dlam;
}

}  // namespace seqvit::data::synth
