//! Run records: the folder a training run leaves behind, and how it resumes.
//!
//! ```text
//! RUN/config.toml              the fully resolved configuration (loadable by `dfa train --config`)
//! RUN/meta.json                crate version, seed, threads, data files with SHA-256, warnings,
//!                              the configuration the run started with
//! RUN/metrics.jsonl            one JSON object per epoch (EpochMetrics)
//! RUN/checkpoint.safetensors   weights, feedback, optimiser state, RNG and schedule state
//! RUN/summary.json             written when the run ends: why it stopped and its final numbers
//! ```
//!
//! RUN/.lock                    the lock of the folder's one writer (holds its PID)
//!
//! One process writes a run folder: it holds an OS lock on `.lock` (released by the kernel
//! when the process ends, however it ends), and a second writer stops at once naming the PID.
//! Every file except `metrics.jsonl` is written atomically (temporary file, then rename). The
//! epoch's metrics line is appended *before* its checkpoint is renamed into place, and a resumed
//! run drops every metrics line newer than its checkpoint (keeping the others byte for byte),
//! so a run killed at any instruction loses at most the epoch in progress and resumes to exactly
//! the numbers of an uninterrupted one; `summary.json` is written last. A resume or an
//! evaluation compares `config.toml` with the configuration the run started with (`meta.json`)
//! and the data files' SHA-256 with those it was trained on.
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
