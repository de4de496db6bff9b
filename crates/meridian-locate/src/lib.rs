//! Image parameters of transit windows and their sky positions (ICD §5).
//!
//! - [`fit`]: the maximum-likelihood centroid, flux and background of a window
//!   under Poisson plus read noise, with Fisher-information errors and the flags
//!   `saturated`, `truncated`, `background_fixed`, `fit_failed`; and the
//!   Cramér–Rao bound it reaches (tested per magnitude from G = 8 to 20.7).
//! - [`attitude`]: slerp between bracketing attitude samples within 2 s.
//! - [`geometry`]: the `observation` of a window and the `transit` of a transit's
//!   windows, with honest along- and across-scan uncertainties.
//! - [`pipeline`]: the stage over an ordered folder, incremental and
//!   deterministic; its module docs fix the **output folder contract** read by
//!   xmatch and health (`DIR/observation/<start_obt_ns:020>.mprod`,
//!   `DIR/transit/<start_obt_ns:020>.mprod`, `DIR/locate-state.json`).
//!
//! Interpretations of the ICD made here:
//! - A transit's `n_windows` counts the windows received for it, whether or not
//!   they have a position; `mag` comes from the mean flux of the windows with a
//!   valid fit (saturated ones included: their flux is fitted from the wings).
//! - A transit is flagged `saturated` when any of its windows is; `no_position`
//!   when none has a position (its `t_obs_ns` is then the mean over all windows).
//! - An observation whose strip, row, fov or ac lie outside ICD §4.1 gets null
//!   ra/dec and the flag `no_position`.
//! - The manifest's chunk status is not consulted: provisional chunks are
//!   processed like complete ones and redone when their version or checksum
//!   changes.
//! - The windows of one transit are assumed to lie within 60 s of its earliest
//!   window (38.8 s nominal); see [`pipeline`].
//!
//! Measured on the 2-core development machine (shared, load ≈ 7): the fit takes
//! ≈ 0.42 µs of CPU per window for a G 13–20.7 mix (`examples/iters.rs`, 2.1
//! steps per window; 0.57 µs and 2.4 steps before the peak start and the
//! contraction stop); the criterion bench `benches/fit.rs` compares it with a
//! centre-of-mass centroid over the same windows, `benches/locate.rs` times a
//! whole run. On the 1 % benchmark day's ordered folder (9.17 M windows) the
//! stage runs ≈ 9 600 instructions per window (callgrind; 13 500 before this
//! round of work), about half of them in the fit and a quarter reading and
//! writing products. `examples/convergence.rs` checks the fit's early stop over
//! an ordered folder; `examples/compare_located.rs` diffs two output folders.
//!
//! Output products: observation files are written at zstd level −20
//! ([`pipeline::OBSERVATION_ZSTD_LEVEL`]): their float records barely compress
//! and the default level cost ~8 % of the stage.

pub mod attitude;
pub mod fit;
pub mod geometry;
pub mod lsf;
pub mod pipeline;

pub use attitude::AttitudeSeries;
pub use fit::{ImageParams, cramer_rao_bound, fit_window};
pub use geometry::{Located, locate_window, transit_record};
pub use pipeline::{LocateError, LocateSummary, Plan, plan};
