//! What an epoch measured: one line of `metrics.jsonl`.

use crate::train::alignment::AlignmentRecord;
use serde::{Deserialize, Serialize};

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    /// Mean binary cross-entropy over the epoch's mini-batches (before each update).
    pub loss: f64,
    /// Training error (%) of the network after the epoch, over the whole training split (NaN,
    /// written `null`, when the run skips that pass: `full_pass = false`).
    #[serde(deserialize_with = "crate::base::io::f64_or_null")]
    pub train_error: f64,
    /// Test error (%) after the epoch (NaN, written `null`, without a test set).
    #[serde(deserialize_with = "crate::base::io::f64_or_null")]
    pub test_error: f64,
    /// Alignment diagnostics of the measured mini-batches (`--align-every`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alignment: Vec<AlignmentRecord>,
    /// Validation error (%) after the epoch, when a validation set is held out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_error: Option<f64>,
    /// Error (%) on the mini-batches as they were trained on (before each update).
    pub batch_error: f64,
    /// Learning rate used during this epoch.
    pub learning_rate: f32,
    /// Seconds of training (forward, update, optimiser), without the evaluation passes.
    pub seconds: f64,
    pub eval_seconds: f64,
    /// Training samples per second.
    pub samples_per_s: f64,
}

impl EpochMetrics {
    /// The training error the stopping rule watches: the full pass's, or without it
    /// (`full_pass = false`) the error counted on the mini-batches.
    pub fn stopping_error(&self, full_pass: bool) -> f64 {
        if full_pass { self.train_error } else { self.batch_error }
    }
}

/// The learning-rate schedule a run followed, read off its epochs: the rate of its first epoch,
/// the epochs after which the rate went down (`halve_at`) and how many epochs it trained. A run
/// trained on a validation split gives the decay and training time to retrain on all the data
/// with (`dfa train --schedule-from`).
#[derive(Clone, Debug, PartialEq)]
pub struct FollowedSchedule {
    pub learning_rate: f32,
    pub halve_at: Vec<usize>,
    pub epochs: usize,
}

impl FollowedSchedule {
    /// `None` for a run without epochs. A rate that falls by other than a half is still one
    /// step: the fixed schedule halves. Epochs count from the run's own start (a run that
    /// continues another numbers its epochs after that run's, as `halve_at` and `max_epochs` do not).
    pub fn of(metrics: &[EpochMetrics]) -> Option<Self> {
        let first = metrics.first()?;
        let before = first.epoch - 1;
        let halve_at = metrics
            .windows(2)
            .filter(|w| w[1].learning_rate < w[0].learning_rate)
            .map(|w| w[0].epoch - before)
            .collect();
        Some(FollowedSchedule { learning_rate: first.learning_rate, halve_at, epochs: metrics.last()?.epoch - before })
    }

    /// Makes `config` follow this schedule: its first rate and its halvings, and nothing else
    /// lowers the rate (no halving at all when the followed run never lowered it, rather than the
    /// adaptive rule). The length is the caller's: `epochs`, or less.
    pub fn apply(&self, config: &mut crate::train::config::TrainConfig) {
        config.learning_rate = self.learning_rate;
        config.halve_at = self.halve_at.clone();
        config.lr_schedule = !self.halve_at.is_empty();
    }
}
