//! Errors of the ordering stage; every variant names the file it is about.

use crate::manifest::ManifestError;
use meridian_core::ProductError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error(transparent)]
    Product(#[from] ProductError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: corrupted ordering state: {detail}")]
    State { path: PathBuf, detail: String },
    #[error("{path}: another meridian-order run is using this folder")]
    Locked { path: PathBuf },
    #[error("{0}")]
    Config(String),
}

impl OrderError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        OrderError::Io {
            path: path.into(),
            source,
        }
    }
}
