//! Training: the configuration, the model, the paper's protocol and the run folder.

pub mod alignment;
pub mod config;
pub mod protocol;
pub mod record;
