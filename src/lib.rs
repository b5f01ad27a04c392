//! `dfa`: train neural networks with Direct Feedback Alignment and its relatives
//! (back-propagation, feedback alignment, indirect feedback alignment), after Nøkland,
//! "Direct Feedback Alignment Provides Learning in Deep Neural Networks" (NIPS 2016).
//!
//! The modules follow the paper's nouns: [`data`] (MNIST-format data sets), [`network`] (dense
//! layers, forward pass, output error), [`rules`] (how BP, FA, DFA and IFA produce each hidden
//! layer's update direction), [`optimiser`] (RMSprop, SGD), [`training`] (the paper's protocol)
//! and [`record`] (run folders, checkpoints, resume).

pub mod activation;
pub mod alignment;
pub mod bench;
pub mod config;
pub mod conv;
pub mod data;
pub mod error;
pub mod experiments;
pub mod features;
pub mod linalg;
pub mod network;
pub mod optimiser;
pub mod plots;
pub mod record;
pub mod reports;
pub mod rng;
pub mod rules;
pub mod simd;
pub mod training;

pub use activation::Activation;
pub use config::TrainConfig;
pub use error::{Error, Result};
pub use rules::Rule;
