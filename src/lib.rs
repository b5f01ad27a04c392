//! `dfa`: train neural networks with Direct Feedback Alignment and its relatives
//! (back-propagation, feedback alignment, indirect feedback alignment), after Nøkland,
//! "Direct Feedback Alignment Provides Learning in Deep Neural Networks" (NIPS 2016).
//!
//! The modules, from the bottom up (each imports only those before it; `docs/architecture.md`):
//! [`base`] (errors, random streams, matrix products, files) · [`data`] (MNIST and CIFAR) ·
//! [`layers`] (dense layers, conv blocks, the forward pass, the loss) · [`rules`] (how each
//! learning rule produces the hidden layers' update directions) · [`optim`] (RMSprop, SGD) ·
//! [`train`] (configuration, the paper's protocol, run folders; `train::parallel` the engine) ·
//! [`report`] (plots, features, t-SNE) · [`experiments`] (the paper's tables, benchmarks).

pub mod base;
pub mod data;
pub mod experiments;
pub mod layers;
pub mod optim;
pub mod report;
pub mod rules;
pub mod train;

pub use base::error::{Error, Result};
pub use layers::activation::Activation;
pub use rules::Rule;
pub use train::config::TrainConfig;
