//! The parallel engine: how one training step uses the threads, without changing a bit of its
//! result. The protocol (`train::protocol`) asks it through [`Engine`]:
//!
//! | file | what |
//! | --- | --- |
//! | [`pool`] | the run's thread pool, its workers kept awake during a step |
//! | [`updates`] | the layer updates: each layer's gradient and optimiser step as one task, the oversized layer last and split |
//! | [`shares`] | the layers shared by the threads of a fused phase (the `unsafe` accessors) |
//! | [`overlap`] | BP/FA on two threads: the chain of directions beside the updates |
//! | [`pipeline`] | deep nets: each batch's updates beside the next batch's forward pass |
//!
//! Every schedule computes each product and update exactly as the plain one does (a GEMM's sums
//! do not depend on how it is split), so the bits are the same on any thread count and schedule;
//! `scripts/bits.py` checks it. The safety argument of each `unsafe` block is written beside it.

pub mod engine;
pub mod overlap;
pub mod pipeline;
pub mod plan;
pub mod pool;
pub mod shares;
pub mod updates;

pub use engine::Engine;
pub use pipeline::{Buffers, Loader};
pub use plan::Plan;
pub use pool::Pool;
pub use updates::{Batch, Learner, Mode};
