//! Image parameters of transit windows and their sky positions (ICD §5).

pub mod attitude;
pub mod fit;
pub mod geometry;
pub mod lsf;

pub use attitude::AttitudeSeries;
pub use fit::{ImageParams, cramer_rao_bound, fit_window};
pub use geometry::{Located, locate_window, transit_record};
