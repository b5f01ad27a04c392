//! Training: the configuration, the model, the paper's protocol, one step, the parallel engine
//! and the run folder.
//!
//! | file | what |
//! | --- | --- |
//! | [`config`] | `TrainConfig`: every setting of a run, its validation and TOML form |
//! | [`model`] | `Model`: forward weights, feedback, optimiser state, drawn from the seed |
//! | [`protocol`] | the paper's epoch loop, errors, schedule, stopping rule, divergence |
//! | [`trainer`] | `Trainer`: a run in memory (data, buffers, engine) |
//! | [`step`] | one step: dropout masks, forward, output error, the rule, the updates |
//! | [`adversarial`] | the fast gradient sign method's two passes |
//! | [`metrics`] | one epoch's line of `metrics.jsonl` |
//! | [`alignment`] | angles between each rule's directions and back-propagation's |
//! | [`parallel`] | the engine: thread pool, layer-parallel updates, overlap, pipelining |
//! | [`record`] | run folders, checkpoints, open-or-resume |

pub mod adversarial;
pub mod alignment;
pub mod config;
pub mod infer;
pub mod metrics;
pub mod model;
pub mod parallel;
pub mod protocol;
pub mod record;
pub mod step;
pub mod trainer;

pub use adversarial::fast_gradient_sign;
pub use config::resolve_threads;
pub use metrics::{EpochMetrics, FollowedSchedule};
pub use model::Model;
pub use protocol::{EXPLODING_LOSS_FACTOR, Progress, StopReason, Trainer};
pub use step::draw_mask;
pub use trainer::apply_subsets;
