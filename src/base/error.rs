//! Library errors. Every message names the file, field or flag at fault and what was expected.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The I/O error is part of the message, not a `source` (which `{:#}` would print again).
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },

    #[error(
        "{dataset} data not found in {dir}: missing {missing}; fetch it with `dfa data download {dataset} --data-dir {dir}`, or point --data-dir / DFA_DATA at a folder that holds a `{dataset}/` directory"
    )]
    MissingData { dataset: String, dir: PathBuf, missing: String },

    #[error(
        "{path}: not a valid gzip stream ({message}); the file is corrupt or truncated, delete it and download it again"
    )]
    Gzip { path: PathBuf, message: String },

    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },

    #[error(
        "{images} holds {n_images} images but {labels} holds {n_labels} labels; the two files must belong together"
    )]
    CountMismatch { images: PathBuf, labels: PathBuf, n_images: usize, n_labels: usize },

    #[error("{what}: SHA-256 of the content is {actual}, expected {expected}")]
    Checksum { what: String, expected: String, actual: String },

    #[error("download of {url} failed: {message}")]
    Download { url: String, message: String },

    #[error("invalid {field}: {message}")]
    Config { field: String, message: String },

    /// A request that names its flags in its own words.
    #[error("{0}")]
    Usage(String),

    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), error: source }
    }

    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Format { path: path.into(), message: message.into() }
    }

    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config { field: field.into(), message: message.into() }
    }

    pub fn checkpoint(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Checkpoint { path: path.into(), message: message.into() }
    }
}
