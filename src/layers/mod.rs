//! Layers and networks: dense layers and convolutional blocks, the forward pass, the loss and
//! the output error (SPEC §1). Which rule produced an update direction is the business of
//! [`crate::rules`]; layers only know how to go forward and how to turn a direction into
//! gradients.

pub mod activation;
pub mod conv;
pub mod dense;
pub mod forward;
pub mod geometry;
pub mod network;
pub mod spec;
pub mod winograd;
pub mod workspace;

pub use dense::{Dense, Gradients};
pub use network::{Init, Network, argmax, output_error};
pub use workspace::{Workspace, apply_mask};
