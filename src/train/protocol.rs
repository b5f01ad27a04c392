//! The training protocol of the paper (SPEC §2): shuffled mini-batches, the rule's update, the
//! optimiser, the epoch's errors, the learning-rate schedule, the stopping rule and divergence.
//!
//! After every epoch the training and test errors are measured in a separate pass over the whole
//! split with the updated network (as the reference implementation does); the stopping rule and
//! the schedule read that training error. The schedule owns the learning rate
//! ([`Progress::learning_rate`]); every step passes it to the optimiser. A step itself is in
//! [`crate::train::step`], the threads that run it in [`crate::train::parallel`].

use crate::base::rng::{DfaRng, RngState, Stream};
use crate::data::Split;
use crate::layers::Workspace;
use crate::rules::RuleSet;
use crate::train::alignment::{AlignmentRecord, Scratch};
use crate::train::config::{ScheduleOn, TrainConfig};
use crate::train::metrics::EpochMetrics;
use crate::train::model::Model;
use crate::train::parallel::Engine;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;

/// A training run in memory.
pub struct Trainer {
    pub config: TrainConfig,
    pub model: Model,
    pub progress: Progress,
    pub(super) train: Arc<Split>,
    pub(super) test: Arc<Split>,
    pub(super) validation: Option<Arc<Split>>,
    /// Alignment measurement: its buffers (when enabled), the batch to measure next, the records.
    pub(super) align: Option<Scratch>,
    pub(super) measure_batch: Option<usize>,
    pub(super) alignment_log: Vec<AlignmentRecord>,
    pub(super) ws: Workspace,
    pub(super) eval_ws: Workspace,
    pub(super) shuffle: DfaRng,
    pub(super) dropout_rng: DfaRng,
    /// The stream of feedback refreshes (rules whose feedback follows the weights).
    pub(super) refresh_rng: DfaRng,
    /// The adversarial inputs of the current batch (adversarial training only).
    pub(super) x_adv: Vec<f32>,
    pub(super) order: Vec<u32>,
    pub(super) x: Vec<f32>,
    pub(super) y: Vec<u8>,
    /// The rule of every hidden layer.
    pub(super) rules: RuleSet,
    pub(super) engine: Engine,
}

/// A loss this many times the untrained network's loss counts as divergence.
pub const EXPLODING_LOSS_FACTOR: f64 = 10.0;

/// Why a run stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// Training error at or below `stop_train_error`.
    Converged,
    /// The learning rate was halved `max_halvings` times and the error still did not improve.
    ScheduleEnded,
    /// `max_epochs` reached.
    MaxEpochs,
    /// The loss became NaN/inf or exceeded [`EXPLODING_LOSS_FACTOR`] × the initial loss.
    Diverged,
}

impl StopReason {
    /// The name `summary.json` records (`schedule-ended`).
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Converged => "converged",
            StopReason::ScheduleEnded => "schedule-ended",
            StopReason::MaxEpochs => "max-epochs",
            StopReason::Diverged => "diverged",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            StopReason::Converged => "training error reached the target",
            StopReason::ScheduleEnded => "learning rate halved the maximum number of times",
            StopReason::MaxEpochs => "maximum number of epochs reached",
            StopReason::Diverged => "DIVERGED: the loss became non-finite or exploded",
        }
    }
}

/// Where a run stands between epochs; saved in every checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Completed epochs (counting those of the `init_from` run this one continues).
    pub epoch: usize,
    /// The epochs that came from the `init_from` run (0 for a fresh run).
    #[serde(default)]
    pub first_epoch: usize,
    pub learning_rate: f32,
    pub halvings: usize,
    /// Running mean of the training error that the schedule compares against.
    pub error_mean: Option<f64>,
    /// The best watched error so far and the epochs since it (the plateau rule, `patience > 0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_error: Option<f64>,
    #[serde(default)]
    pub epochs_since_best: usize,
    /// Loss of the untrained network on the first mini-batch (the divergence yardstick).
    pub initial_loss: Option<f64>,
    pub shuffle_rng: RngState,
    /// The dropout masks' stream (runs with dropout only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropout_rng: Option<RngState>,
    /// The feedback refreshes' stream (rules whose feedback follows the weights only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_rng: Option<RngState>,
    pub stop: Option<StopReason>,
}

impl Progress {
    /// The progress of a run that has not trained yet (after `first_epoch` epochs of the run it
    /// continues, if any).
    pub fn start(config: &TrainConfig, first_epoch: usize) -> Self {
        Progress {
            epoch: first_epoch,
            first_epoch,
            learning_rate: config.learning_rate,
            halvings: 0,
            error_mean: config.schedule_start,
            best_error: None,
            epochs_since_best: 0,
            initial_loss: None,
            shuffle_rng: DfaRng::new(config.seed, Stream::Shuffle).state(),
            dropout_rng: config.dropout().then(|| DfaRng::new(config.seed, Stream::Dropout).state()),
            refresh_rng: config
                .rule_set()
                .refreshes_feedback()
                .then(|| DfaRng::new(config.seed, Stream::Refresh).state()),
            stop: None,
        }
    }

    /// The schedule's verdict on an epoch whose watched error is `watched`: true when the rate
    /// should be halved (or the run end). With `patience == 0` the paper's rule: not below the
    /// running mean of the earlier epochs (`0.75·mean + 0.25·new`, updated here). With
    /// `patience = N`: N epochs in a row without a new best (the count restarts after a verdict).
    pub fn no_progress(&mut self, watched: f64, patience: usize) -> bool {
        let verdict = if patience > 0 {
            if self.best_error.is_none_or(|best| watched < best) {
                self.best_error = Some(watched);
                self.epochs_since_best = 0;
            } else {
                self.epochs_since_best += 1;
            }
            let stalled = self.epochs_since_best >= patience;
            if stalled {
                self.epochs_since_best = 0;
            }
            stalled
        } else {
            self.error_mean.is_some_and(|mean| watched >= mean)
        };
        self.error_mean = Some(self.error_mean.map_or(watched, |mean| 0.75 * mean + 0.25 * watched));
        verdict
    }
}

impl Trainer {
    /// Runs one epoch, calls `on_batch(done, total)` after every mini-batch, measures the errors
    /// and applies the schedule and stopping rule. Returns the epoch's metrics; afterwards
    /// `self.progress.stop` says whether the run is over.
    pub fn run_epoch(&mut self, on_batch: &mut (dyn FnMut(usize, usize) + Send)) -> EpochMetrics {
        self.run_epoch_until(&mut |done, total| {
            on_batch(done, total);
            true
        })
        .expect("an epoch that is never asked to stop finishes")
    }

    /// [`Trainer::run_epoch`], with a callback that may stop the epoch after any mini-batch by
    /// returning `false` (Ctrl-C in Python): then `None`, and the trainer is left in the middle
    /// of the epoch (its weights updated by the batches done, its progress that of the epoch
    /// before); the caller goes back to a copy of the model and progress taken before.
    pub fn run_epoch_until(&mut self, on_batch: &mut (dyn FnMut(usize, usize) -> bool + Send)) -> Option<EpochMetrics> {
        let n = self.train.len();
        let batch = self.config.batch_size;
        let batches = n.div_ceil(batch);
        let start = Instant::now();
        let (mut loss_sum, mut errors, mut seen) = (0.0f64, 0usize, 0usize);
        let mut finite = true;
        let mut stopped = false;
        let mut first_loss = None;
        self.in_pool(|t| {
            for (i, v) in t.order.iter_mut().enumerate() {
                *v = i as u32;
            }
            t.shuffle.shuffle(&mut t.order);
            let order = std::mem::take(&mut t.order);
            t.train_batches(order.chunks(batch), &mut |b, rows, loss, err| {
                first_loss.get_or_insert(loss / rows as f64);
                loss_sum += loss;
                errors += err;
                seen += rows;
                stopped = !on_batch(b + 1, batches);
                finite = loss.is_finite();
                finite && !stopped
            });
            t.order = order;
        });
        if stopped {
            return None;
        }
        if self.progress.initial_loss.is_none() {
            self.progress.initial_loss = first_loss;
        }
        let seconds = start.elapsed().as_secs_f64();
        let eval_start = Instant::now();
        let (train_error, test_error) = if finite { self.evaluate() } else { (100.0, 100.0) };
        let validation_error = match (&self.validation, finite) {
            (Some(v), true) => Some(self.error_rate(&v.clone())),
            (Some(_), false) => Some(100.0),
            (None, _) => None,
        };
        let metrics = EpochMetrics {
            epoch: self.progress.epoch + 1,
            loss: loss_sum / seen.max(1) as f64,
            train_error,
            test_error,
            validation_error,
            alignment: std::mem::take(&mut self.alignment_log)
                .into_iter()
                .map(|r| AlignmentRecord { batches, ..r })
                .collect(),
            batch_error: 100.0 * errors as f64 / seen.max(1) as f64,
            learning_rate: self.progress.learning_rate,
            seconds,
            eval_seconds: eval_start.elapsed().as_secs_f64(),
            samples_per_s: seen as f64 / seconds,
        };
        self.finish_epoch(&metrics);
        Some(metrics)
    }

    /// The stopping rule and the paper's learning-rate schedule, after an epoch.
    fn finish_epoch(&mut self, m: &EpochMetrics) {
        let p = &mut self.progress;
        let c = &self.config;
        p.epoch = m.epoch;
        p.shuffle_rng = self.shuffle.state();
        if self.config.dropout() {
            p.dropout_rng = Some(self.dropout_rng.state());
        }
        if self.rules.refreshes_feedback() {
            p.refresh_rng = Some(self.refresh_rng.state());
        }
        let initial = p.initial_loss.unwrap_or(f64::INFINITY);
        p.stop = if !m.loss.is_finite() || m.loss > EXPLODING_LOSS_FACTOR * initial {
            Some(StopReason::Diverged)
        } else if c.early_stop && m.stopping_error(c.full_pass) <= c.stop_train_error {
            Some(StopReason::Converged)
        } else {
            None
        };
        let watched = match c.schedule_on {
            ScheduleOn::Train => m.train_error,
            ScheduleOn::Batch => m.batch_error,
            ScheduleOn::Validation => m.validation_error.unwrap_or(m.stopping_error(c.full_pass)),
        };
        if !c.halve_at.is_empty() {
            if p.stop.is_none() && c.halve_at.contains(&(m.epoch - p.first_epoch)) {
                p.halvings += 1;
                p.learning_rate *= 0.5;
            }
        } else if p.stop.is_none() && c.lr_schedule && p.no_progress(watched, c.patience) {
            if p.halvings >= c.max_halvings {
                p.stop = Some(StopReason::ScheduleEnded);
            } else {
                p.halvings += 1;
                p.learning_rate *= 0.5;
            }
        }
        if p.stop.is_none() && p.epoch - p.first_epoch >= c.max_epochs {
            p.stop = Some(StopReason::MaxEpochs);
        }
    }
}
