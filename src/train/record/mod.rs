//! Run records: the folder a training run leaves behind, and how it resumes.
//!
//! ```text
//! RUN/config.toml              the fully resolved configuration (loadable by `dfa train --config`)
//! RUN/meta.json                crate version, seed, threads, data files with SHA-256, warnings
//! RUN/metrics.jsonl            one JSON object per epoch (EpochMetrics)
//! RUN/checkpoint.safetensors   weights, feedback, optimiser state, RNG and schedule state
//! RUN/summary.json             written when the run ends: why it stopped and its final numbers
//! ```
//!
//! Every file except `metrics.jsonl` is written atomically (temporary file, then rename); the
//! checkpoint is saved *before* the epoch's metrics line is appended, and a resumed run drops any
//! metrics line newer than its checkpoint, so a run killed at any moment resumes to exactly the
//! numbers of an uninterrupted one.
//!
//! | file | what |
//! | --- | --- |
//! | [`run_dir`] | the folder: its files, `Meta`, `Summary` |
//! | [`checkpoint`] | the safetensors checkpoint: tensors, progress, continuing another run |
//! | [`run`] | open-or-resume, the epoch loop with its observer, evaluation of a saved run |

pub mod checkpoint;
pub mod run;
pub mod run_dir;

pub use checkpoint::{checkpoint_bytes, continue_from, load_checkpoint_bytes, weight_shape};
pub use run::*;
pub use run_dir::*;
