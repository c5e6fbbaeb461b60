// Forced shallow-water model on the rotating sphere with a temperature tracer: the physical core
// of the synthetic ERA5-like data (docs/synthetic_data.md has the equations and numerics).
//
// Grid: H x W cell centres, latitude north to south (row 0 nearest the North Pole), longitude
// 0..360 eastward; unstaggered (A grid). Prognostic fields, all [H, W] row-major:
//   u, v   eastward / northward velocity (m s-1)
//   phi    layer thickness as geopotential g h (m2 s-2); its area integral is the conserved
//          mass; the free surface is phi + topo_factor * orography
//   T      near-surface temperature tracer (K)
// Numerics: second-order centred differences in flux form for mass (so mass is conserved to
// round-off), vector-invariant momentum, SSP-RK3 in time, a Fourier polar filter poleward of
// 60 degrees and del^4 hyperdiffusion. Forcing: relaxation of phi and T to a seasonal + diurnal
// equilibrium, Rayleigh drag, and red-noise random-phase forcing (streamfunction and T) at many
// scales. Deterministic: one seeded Rng, fixed loop order, no threads. All memory is allocated
// by the constructor; step() allocates nothing.
#pragma once

#include <complex>
#include <cstdint>
#include <vector>

#include "core/rng.h"

namespace seqvit::data::synth {

struct ShallowWaterParams {
  int H = 32, W = 64;
  double dt = 0;               // s; 0: chosen from the grid (1200 s at 64 columns, scaled)
  double phi0 = 1.0e4;         // mean layer geopotential (m2 s-2): gravity waves sqrt(phi0)
  double dphi_eq = 6400;       // equator-to-pole contrast of the equilibrium geopotential
  double tau_phi_days = 10;    // relaxation time of phi
  double tau_drag_days = 5;    // Rayleigh drag (sea); land drags twice as fast
  double tau_T_days = 4;       // relaxation of T over sea; land 1.5 days
  double force_u = 2.5e-5;     // random forcing of the wind (m s-2, per unit spectral weight)
  double force_T = 5.0e-6;     // random forcing of T (K s-1)
  double hyper_tau_hours = 3;  // e-folding time of the grid-scale wave under del^4
  double filter_lat_deg = 60;  // polar filter poleward of this latitude
  bool forcing = true;         // false: free, frictionless, undamped run (conservation tests)
  double topo_factor = 0.05;   // fraction of surface geopotential felt by the layer
};

class ShallowWater {
 public:
  // lsm [H, W] in 0..1 and surface geopotential orog [H, W] (m2 s-2) shape the forcing.
  ShallowWater(const ShallowWaterParams& p, const std::vector<double>& lsm,
               const std::vector<double>& orog, uint64_t seed);

  // Start from the equilibrium state at time t (seconds since 1 Jan 00 UTC of any year).
  void init(double t_seconds);
  // One SSP-RK3 step of dt; the model clock advances.
  void step();

  double dt() const { return dt_; }
  double time() const { return t_; }
  // Area integral of phi over the sphere (m2 s-2 * m2): conserved by the unforced dynamics.
  double mass() const;

  const std::vector<double>& u() const { return u_; }
  const std::vector<double>& v() const { return v_; }
  const std::vector<double>& phi() const { return phi_; }
  const std::vector<double>& T() const { return T_; }
  const std::vector<double>& lat() const { return lat_; }  // [H] radians

 private:
  struct State {
    std::vector<double> u, v, phi, T;  // [H, W] each
  };
  void tendency(const State& s, State& d);
  void update_forcing();
  void polar_filter(std::vector<double>& x);
  void laplacian(const std::vector<double>& x, std::vector<double>& out) const;

  ShallowWaterParams p_;
  int H_, W_;
  double dt_, t_ = 0;
  Rng rng_;
  std::vector<double> lat_, coslat_, sinlat_, tanlat_, f_;  // [H]
  std::vector<double> cos_face_, area_;   // cos at row faces [H+1] (0 at poles); area [H] / W
  std::vector<double> cos_diff_;          // cos used by the zonal diffusion (clipped) [H]
  std::vector<double> lsm_, orog_;        // [H, W]
  std::vector<double> u_, v_, phi_, T_;   // [H, W] prognostic
  State s1_, s2_, d_;                     // RK stages and tendency
  std::vector<double> zeta_, ke_, w1_, w2_;  // [H, W] scratch
  std::vector<double> phi_eq_, T_eq_, fu_, fv_, fT_;  // [H, W] forcing, refreshed hourly
  int force_every_ = 1;
  int64_t nstep_ = 0;
  // Random forcing modes: zonal m, meridional n, AR(1) complex amplitudes for psi and T.
  std::vector<int> fm_, fn_;
  std::vector<double> famp_;                       // [K] spectral weight
  std::vector<std::complex<double>> cpsi_, cT_;    // [K]
  std::vector<double> cos_m_, sin_m_;              // [W] cos, sin(m lambda) of one mode
  // Polar filter: per row the highest zonal wave number kept (W/2 keeps all).
  std::vector<int> keep_m_;
  std::vector<std::complex<double>> fft_buf_, twiddle_;
  std::vector<int> bitrev_;
};

}  // namespace seqvit::data::synth
