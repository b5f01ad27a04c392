//! What every other part stands on and that knows nothing of networks: errors, the random
//! streams, the run-time SIMD dispatch, the matrix products and file helpers.

pub mod choice;
pub mod error;
pub mod failpoint;
pub mod io;
pub mod linalg;
pub mod memory;
pub mod rng;
pub mod shape;
pub mod simd;
pub mod subnormal;
