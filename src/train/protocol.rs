//! The training protocol of the paper (SPEC §2): shuffled mini-batches, the rule's update, the
//! optimiser, the epoch's errors, the learning-rate schedule and the stopping rule.
//!
//! After every epoch the training and test errors are measured in a separate pass over the whole
//! split with the updated network (as the reference implementation does); the stopping rule and
//! the schedule read that training error.

use crate::base::error::Result;
use crate::base::linalg::gemm_nn;
use crate::base::rng::{DfaRng, RngState, Stream};
use crate::data::{Dataset, Split};
use crate::layers::spec::parse_model;
use crate::layers::{Dense, Gradients, Network, Workspace, output_error};
use crate::optim::{Optimiser, UpdateRule};
use crate::rules::{self, Feedback, Flow, Rule, Source};
use crate::train::config::{ScheduleOn, TrainConfig};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

/// Samples per chunk in the evaluation passes (larger products run closer to the GEMM peak).
const EVAL_ROWS: usize = 500;

/// A loss this many times the untrained network's loss counts as divergence.
pub const EXPLODING_LOSS_FACTOR: f64 = 10.0;

/// Everything that learns or stays fixed: forward weights, feedback, optimiser state.
#[derive(Clone, Debug)]
pub struct Model {
    pub net: Network,
    pub feedback: Feedback,
    pub optimiser: Optimiser,
}

impl Model {
    /// A fresh model for `config` with `n_in` inputs and `n_out` classes, drawn from the seed.
    pub fn new(config: &TrainConfig, n_in: usize, n_out: usize) -> Result<Self> {
        let mut weights_rng = DfaRng::new(config.seed, Stream::Weights);
        let mut feedback_rng = DfaRng::new(config.seed, Stream::Feedback);
        if config.is_conv() {
            let shape = config.dataset.image_shape();
            if shape.len() != n_in {
                return Err(crate::base::error::Error::config(
                    "model",
                    format!(
                        "a convolutional net needs {}×{}×{} images, the data have {n_in} values",
                        shape.h, shape.w, shape.c
                    ),
                ));
            }
            let specs = crate::layers::spec::parse_layers(&config.model)?;
            let uniform = config.uniform_init();
            let mut net =
                Network::from_specs(shape, &specs, n_out, config.activation, uniform, config.bias, &mut weights_rng);
            for &k in &config.freeze {
                net.layers[k - 1].frozen = true;
            }
            let feedback =
                Feedback::for_network(&config.hidden_rules(), &net, config.feedback_bound, &mut feedback_rng);
            let optimiser =
                Optimiser::new(config.optimiser, config.learning_rate, config.rms_decay, config.rms_epsilon, &net);
            return Ok(Model { net, feedback, optimiser });
        }
        let mut sizes = vec![n_in];
        sizes.extend(parse_model(&config.model)?);
        sizes.push(n_out);
        let mut net = Network::new(&sizes, config.activation, config.uniform_init(), config.bias, &mut weights_rng);
        for &k in &config.freeze {
            net.layers[k - 1].frozen = true;
        }
        let (share, bound) = (config.shared_feedback, config.feedback_bound);
        let feedback = if config.layer_rules.is_empty() {
            Feedback::new(config.rule, &sizes, share, bound, &mut feedback_rng)
        } else {
            Feedback::per_layer(&config.layer_rules, &sizes, share, bound, &mut feedback_rng)
        };
        let optimiser =
            Optimiser::new(config.optimiser, config.learning_rate, config.rms_decay, config.rms_epsilon, &net);
        Ok(Model { net, feedback, optimiser })
    }
}

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
    pub stop: Option<StopReason>,
}

impl Progress {
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

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    /// Mean binary cross-entropy over the epoch's mini-batches (before each update).
    pub loss: f64,
    /// Training error (%) of the network after the epoch, over the whole training split.
    pub train_error: f64,
    /// Test error (%) after the epoch.
    pub test_error: f64,
    /// Alignment diagnostics of the measured mini-batches (`--align-every`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alignment: Vec<crate::train::alignment::AlignmentRecord>,
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

/// A training run in memory.
pub struct Trainer {
    pub config: TrainConfig,
    pub threads: usize,
    pub model: Model,
    pub progress: Progress,
    train: Arc<Split>,
    test: Arc<Split>,
    validation: Option<Arc<Split>>,
    /// Alignment measurement: its buffers (when enabled), the batch to measure next, the records.
    align: Option<crate::train::alignment::Scratch>,
    measure_batch: Option<usize>,
    alignment_log: Vec<crate::train::alignment::AlignmentRecord>,
    ws: Workspace,
    eval_ws: Workspace,
    shuffle: DfaRng,
    dropout_rng: DfaRng,
    /// The adversarial inputs of the current batch (adversarial training only).
    x_adv: Vec<f32>,
    order: Vec<u32>,
    x: Vec<f32>,
    y: Vec<u8>,
    /// The rule of every hidden layer (see `TrainConfig::hidden_rules`).
    hidden_rules: Vec<Rule>,
    pool: Arc<rayon::ThreadPool>,
    /// Pipelined steps ([`pipelines`]): the buffers of the next mini-batch.
    ahead: Option<Ahead>,
    /// Whether BP/FA run their chain beside the updates ([`overlaps_chain`]; fixed for a run).
    chain_overlap: bool,
}

/// The second set of buffers of a pipelined run: the next mini-batch's forward pass fills
/// them while the current one's updates run ([`update_beside_forward`]). Its workspace has no
/// gradients: the updates always use those of the trainer's workspace.
struct Ahead {
    ws: Workspace,
    x: Vec<f32>,
    y: Vec<u8>,
    /// Per layer, the number of the last fused phase whose update of that layer is done.
    updated: Vec<AtomicUsize>,
    phase: usize,
}

/// The thread count a configuration asks for (`0`: all cores).
pub fn resolve_threads(threads: usize) -> usize {
    if threads > 0 { threads } else { std::thread::available_parallelism().map_or(1, |n| n.get()) }
}

impl Trainer {
    /// A fresh run.
    pub fn new(config: TrainConfig, data: &Dataset) -> Result<Self> {
        config.validate()?;
        let mut model = Model::new(&config, data.train.dim, data.n_classes)?;
        let first_epoch = match &config.init_from {
            Some(source) => crate::train::record::continue_from(source, &mut model, data.train.dim, data.n_classes)?,
            None => 0,
        };
        let progress = Progress {
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
            stop: None,
        };
        Self::resume(config, data, model, progress)
    }

    /// A run continued from a saved model and progress.
    pub fn resume(config: TrainConfig, data: &Dataset, model: Model, progress: Progress) -> Result<Self> {
        config.validate()?;
        let threads = resolve_threads(config.threads);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| crate::base::error::Error::config("threads", e.to_string()))?;
        pool.broadcast(|_| crate::base::linalg::warm_up_thread());
        let shuffle = DfaRng::from_state(&progress.shuffle_rng)
            .ok_or_else(|| crate::base::error::Error::config("shuffle_rng", "unreadable RNG state"))?;
        let dropout_rng = match &progress.dropout_rng {
            Some(state) => DfaRng::from_state(state)
                .ok_or_else(|| crate::base::error::Error::config("dropout_rng", "unreadable RNG state"))?,
            None => DfaRng::new(config.seed, Stream::Dropout),
        };
        let rows = config.batch_size;
        if config.validation >= data.train.len() {
            return Err(crate::base::error::Error::config(
                "validation",
                format!(
                    "{} validation samples of {} training samples leave none to train on",
                    config.validation,
                    data.train.len()
                ),
            ));
        }
        // only a held-out validation set needs a copy of the training split
        let (train, validation) = if config.validation > 0 {
            let mut train = (*data.train).clone();
            let validation = train.split_off_last(config.validation);
            (Arc::new(train), Some(Arc::new(validation)))
        } else {
            (data.train.clone(), None)
        };
        let mut ws = Workspace::new(&model.net, rows).with_scratch(&model.net, threads);
        if config.dropout() {
            ws = ws.with_dropout(&model.net);
            ws.dropout_active = true;
        }
        let x_adv = if config.adversarial() { vec![0.0; rows * train.dim] } else { Vec::new() };
        let ahead = pipelines(&config, &model.net, threads).then(|| Ahead {
            // the next batch's forward pass needs no gradients: the one set (and the update
            // buffers) stay in `ws`
            ws: Workspace { grads: Vec::new(), ..Workspace::new(&model.net, rows) },
            x: vec![0.0; rows * train.dim],
            y: vec![0; rows],
            updated: (0..model.net.depth()).map(|_| AtomicUsize::new(0)).collect(),
            phase: 0,
        });
        let chain_overlap = overlaps_chain(&config, &model.net, threads);
        Ok(Trainer {
            ahead,
            chain_overlap,
            ws,
            dropout_rng,
            x_adv,
            eval_ws: Workspace::new(&model.net, EVAL_ROWS),
            order: (0..train.len() as u32).collect(),
            hidden_rules: config.hidden_rules(),
            x: vec![0.0; rows * train.dim],
            y: vec![0; rows],
            test: data.test.clone(),
            validation,
            align: None,
            measure_batch: None,
            alignment_log: Vec::new(),
            train,
            shuffle,
            threads,
            model,
            progress,
            config,
            pool: Arc::new(pool),
        })
    }

    /// Runs `f` on this run's thread pool (the pool of `config.threads` threads that the GEMMs
    /// and the concurrent layer updates use).
    ///
    /// With several threads the other workers spin for work while `f` runs instead of going to
    /// sleep between parallel sections (rayon parks an idle worker after a few dozen empty polls,
    /// and waking it costs more than most of a small net's GEMM halves); they execute the GEMM
    /// halves and layer updates that `f` hands out as soon as they appear.
    pub fn in_pool<R: Send>(&mut self, f: impl FnOnce(&mut Trainer) -> R + Send) -> R {
        let pool = self.pool.clone();
        let spin = self.threads > 1;
        pool.install(|| if spin { keep_workers_awake(|| f(self)) } else { f(self) })
    }

    /// One update on the training samples `indices` (at most `batch_size` of them). Returns the
    /// summed per-sample loss and the number of misclassified samples, both before the update.
    /// Allocates nothing. Call it inside [`Trainer::in_pool`] for the configured threads.
    pub fn train_batch(&mut self, indices: &[u32]) -> (f64, usize) {
        load_batch(&self.train, indices, self.config.batch_size, &mut self.x, &mut self.y);
        self.step(indices.len())
    }

    /// One update per mini-batch of `batches`, in order, until `record(b, rows, loss, errors)`
    /// (batch number, its size, its summed loss and misclassified samples before its update)
    /// returns `false`; that batch's update is still made. Measures the alignment on the batches
    /// `align_every` asks for. Call it inside [`Trainer::in_pool`].
    ///
    /// A deep dense net on several threads ([`pipelines`]) runs each batch's updates beside the
    /// next batch's forward pass; the numbers are those of one batch after the other, and when
    /// this returns every update is made.
    pub fn train_batches<'a>(
        &mut self,
        batches: impl Iterator<Item = &'a [u32]>,
        record: &mut dyn FnMut(usize, usize, f64, usize) -> bool,
    ) {
        if self.ahead.is_some() {
            self.train_pipelined(batches, record);
            return;
        }
        for (b, idx) in batches.enumerate() {
            let every = self.config.align_every;
            self.measure_batch = (every > 0 && b % every == 0).then_some(b);
            let (loss, err) = self.train_batch(idx);
            if !record(b, idx.len(), loss, err) {
                break;
            }
        }
    }

    /// [`Trainer::train_batches`] with each batch's updates beside the next batch's forward pass.
    fn train_pipelined<'a>(
        &mut self,
        mut batches: impl Iterator<Item = &'a [u32]>,
        record: &mut dyn FnMut(usize, usize, f64, usize) -> bool,
    ) {
        let Some(first) = batches.next() else { return };
        let Trainer { model, ws, x, y, threads, train, ahead, config, hidden_rules, .. } = self;
        let ahead = ahead.as_mut().expect("pipelined run");
        let threads = *threads;
        let net = &mut model.net;
        let (depth, n_out) = (net.depth(), net.n_outputs());
        let load = |idx: &[u32], x: &mut [f32], y: &mut [u8]| load_batch(train, idx, config.batch_size, x, y);
        load(first, x, y);
        let mut rows = first.len();
        // a plain DFA net computes each layer's direction inside its update; the other rules (and
        // per-layer rules) compute every direction first, from the weights before the update
        let direct = config.rule.flow() == Flow::Direct && config.layer_rules.is_empty();
        net.forward(x, rows, ws, threads);
        let (loss, err) = output_error(&ws.outputs[depth - 1], &y[..rows], n_out, &mut ws.deltas[depth - 1]);
        let mut more = record(0, rows, loss, err);
        for (b, idx) in batches.enumerate() {
            if !more {
                break;
            }
            load(idx, &mut ahead.x, &mut ahead.y);
            ahead.phase += 1;
            let next = Next { ws: &mut ahead.ws, x: &ahead.x, rows: idx.len() };
            if !direct {
                rule_deltas(config, hidden_rules, net, &model.feedback, ws, rows, threads);
            }
            update_beside_forward(
                net,
                &mut model.optimiser,
                &model.feedback,
                ws,
                x,
                rows,
                next,
                &ahead.updated,
                ahead.phase,
                direct,
                threads,
            );
            let (loss, err) = output_error(
                &ahead.ws.outputs[depth - 1],
                &ahead.y[..idx.len()],
                n_out,
                &mut ahead.ws.deltas[depth - 1],
            );
            std::mem::swap(ws, &mut ahead.ws);
            std::mem::swap(&mut ws.grads, &mut ahead.ws.grads);
            std::mem::swap(&mut ws.scratch, &mut ahead.ws.scratch);
            std::mem::swap(x, &mut ahead.x);
            std::mem::swap(y, &mut ahead.y);
            rows = idx.len();
            more = record(b + 1, rows, loss, err);
        }
        // the last batch's update
        if !direct {
            rule_deltas(config, hidden_rules, net, &model.feedback, ws, rows, threads);
        }
        update_layers(net, &mut model.optimiser, ws, x, rows, false, true, direct.then_some(&model.feedback), threads);
    }

    /// One update on the mini-batch in `self.x`/`self.y` (`rows` samples).
    ///
    /// With dropout, fresh masks are drawn for the batch; they gate the forward pass and every
    /// layer's update (see `rules::hidden_deltas`). With adversarial training (fast gradient sign,
    /// Goodfellow et al. 2015) the true input gradient `∂J/∂x` is back-propagated through the
    /// current network whatever the rule, `x_adv = clip(x + ε·sign(∂J/∂x), 0, 1)`, and the update
    /// is the rule's update of `α·J(x) + (1−α)·J(x_adv)`: the two passes' gradients, with `e`
    /// scaled by `α` and `1−α`, summed before one optimiser step.
    fn step(&mut self, rows: usize) -> (f64, usize) {
        let Trainer {
            model,
            ws,
            x,
            y,
            threads,
            config,
            dropout_rng,
            x_adv,
            align,
            measure_batch,
            alignment_log,
            hidden_rules,
            chain_overlap,
            ..
        } = self;
        let threads = *threads;
        let net = &mut model.net;
        let depth = net.depth();
        let n_out = net.n_outputs();
        let n_in = net.n_inputs();
        if ws.dropout_active {
            let p = |l: usize| {
                if l == 0 { config.dropout_input } else { config.dropout_hidden }
            };
            for (l, mask) in ws.masks.iter_mut().enumerate() {
                let width = if l == 0 { n_in } else { net.layers[l - 1].fan_out };
                draw_mask(&mut mask[..rows * width], p(l), dropout_rng);
            }
        }
        net.forward(x, rows, ws, threads);
        let (mut loss, errors) = output_error(&ws.outputs[depth - 1], &y[..rows], n_out, &mut ws.deltas[depth - 1]);
        if !config.adversarial() {
            // a plain DFA net computes each layer's direction inside its update task (the
            // alignment measurement needs them all first)
            let direct = config.rule.flow() == Flow::Direct
                && config.layer_rules.is_empty()
                && !net.has_blocks()
                && measure_batch.is_none();
            if direct {
                update_layers(net, &mut model.optimiser, ws, x, rows, false, true, Some(&model.feedback), threads);
                return (loss, errors);
            }
            if measure_batch.is_none() && *chain_overlap {
                chain_and_update(config.rule, net, &mut model.optimiser, &model.feedback, ws, x, rows);
                return (loss, errors);
            }
            rule_deltas(config, hidden_rules, net, &model.feedback, ws, rows, threads);
            if let Some(batch) = measure_batch.take() {
                let scratch = align.get_or_insert_with(|| crate::train::alignment::Scratch::new(net, ws));
                let rules = config.hidden_rules();
                let layers =
                    crate::train::alignment::measure(&rules, net, &model.feedback, ws, x, rows, scratch, threads);
                alignment_log.push(crate::train::alignment::AlignmentRecord { batch, batches: 0, layers });
            }
            update_layers(net, &mut model.optimiser, ws, x, rows, false, true, None, threads);
            return (loss, errors);
        }
        let (alpha, epsilon) = (config.adversarial_alpha, config.adversarial_epsilon);
        fast_gradient_sign(net, &model.feedback, ws, x, rows, epsilon, x_adv, threads);
        // the clean pass: the rule's gradients of α·J(x)
        ws.deltas[depth - 1][..rows * n_out].iter_mut().for_each(|e| *e *= alpha);
        rule_deltas(config, hidden_rules, net, &model.feedback, ws, rows, threads);
        update_layers(net, &mut model.optimiser, ws, x, rows, false, false, None, threads);
        // the adversarial pass: + the gradients of (1−α)·J(x_adv), then one update
        net.forward(x_adv, rows, ws, threads);
        let (loss_adv, _) = output_error(&ws.outputs[depth - 1], &y[..rows], n_out, &mut ws.deltas[depth - 1]);
        ws.deltas[depth - 1][..rows * n_out].iter_mut().for_each(|e| *e *= 1.0 - alpha);
        rule_deltas(config, hidden_rules, net, &model.feedback, ws, rows, threads);
        update_layers(net, &mut model.optimiser, ws, x_adv, rows, true, true, None, threads);
        loss = alpha as f64 * loss + (1.0 - alpha as f64) * loss_adv;
        (loss, errors)
    }

    /// Classification error (%) of the current network on a split.
    pub fn error_rate(&mut self, which: &Split) -> f64 {
        let (net, ws, threads) = (&self.model.net, &mut self.eval_ws, self.threads);
        let errors = self.pool.install(|| net.count_errors(&which.images, &which.labels, ws, threads));
        100.0 * errors as f64 / which.len().max(1) as f64
    }

    /// Training and test error (%) of the current network.
    pub fn evaluate(&mut self) -> (f64, f64) {
        let (train, test) = (self.train.clone(), self.test.clone());
        (self.error_rate(&train), self.error_rate(&test))
    }

    /// Runs one epoch, calls `on_batch(done, total)` after every mini-batch, measures the errors
    /// and applies the schedule and stopping rule. Returns the epoch's metrics; afterwards
    /// `self.progress.stop` says whether the run is over.
    pub fn run_epoch(&mut self, on_batch: &mut (dyn FnMut(usize, usize) + Send)) -> EpochMetrics {
        let n = self.train.len();
        let batch = self.config.batch_size;
        let batches = n.div_ceil(batch);
        self.model.optimiser.learning_rate = self.progress.learning_rate;
        let start = Instant::now();
        let (mut loss_sum, mut errors, mut seen) = (0.0f64, 0usize, 0usize);
        let mut finite = true;
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
                on_batch(b + 1, batches);
                finite = loss.is_finite();
                finite
            });
            t.order = order;
        });
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
                .map(|r| crate::train::alignment::AlignmentRecord { batches, ..r })
                .collect(),
            batch_error: 100.0 * errors as f64 / seen.max(1) as f64,
            learning_rate: self.progress.learning_rate,
            seconds,
            eval_seconds: eval_start.elapsed().as_secs_f64(),
            samples_per_s: seen as f64 / seconds,
        };
        self.finish_epoch(&metrics);
        metrics
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
        let initial = p.initial_loss.unwrap_or(f64::INFINITY);
        p.stop = if !m.loss.is_finite() || m.loss > EXPLODING_LOSS_FACTOR * initial {
            Some(StopReason::Diverged)
        } else if m.train_error <= c.stop_train_error {
            Some(StopReason::Converged)
        } else {
            None
        };
        let watched = match c.schedule_on {
            ScheduleOn::Train => m.train_error,
            ScheduleOn::Batch => m.batch_error,
            ScheduleOn::Validation => m.validation_error.unwrap_or(m.train_error),
        };
        if p.stop.is_none() && c.lr_schedule && p.no_progress(watched, c.patience) {
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

/// Copies the training samples `indices` (at most `batch_size`) into `x` and their labels into `y`.
fn load_batch(train: &Split, indices: &[u32], batch_size: usize, x: &mut [f32], y: &mut [u8]) {
    let (dim, rows) = (train.dim, indices.len());
    assert!(rows <= batch_size, "{rows} samples for a batch of {batch_size}");
    for (r, &i) in indices.iter().enumerate() {
        let i = i as usize;
        x[r * dim..(r + 1) * dim].copy_from_slice(&train.images[i * dim..(i + 1) * dim]);
        y[r] = train.labels[i];
    }
}

/// Runs `f` on the current rayon worker while every other worker of the pool polls for jobs
/// (`rayon::yield_now`) until `f` returns or panics.
pub(crate) fn keep_workers_awake<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    struct Release<'a>(&'a AtomicBool);
    impl Drop for Release<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    let done = AtomicBool::new(false);
    let me = rayon::current_thread_index();
    rayon::scope(|s| {
        let _release = Release(&done);
        s.spawn_broadcast(|_, ctx| {
            if Some(ctx.index()) == me {
                return;
            }
            while !done.load(Ordering::Acquire) {
                if rayon::yield_now() != Some(rayon::Yield::Executed) {
                    // hand the core to any other runnable thread (another run sharing the machine)
                    std::thread::yield_now();
                }
            }
        });
        f()
    })
}

/// The configured rule's hidden update directions (one rule, or a rule per layer; nets with
/// convolutional blocks always take the per-layer path). `hidden_rules`: the rule of every hidden
/// layer, computed once (no allocation per step).
fn rule_deltas(
    config: &TrainConfig,
    hidden_rules: &[Rule],
    net: &Network,
    feedback: &Feedback,
    ws: &mut Workspace,
    rows: usize,
    threads: usize,
) {
    if config.layer_rules.is_empty() && !net.has_blocks() {
        rules::hidden_deltas(config.rule, net, feedback, ws, rows, threads);
    } else {
        rules::hidden_deltas_per_layer(hidden_rules, net, feedback, ws, rows, threads);
    }
}

/// Weight gradients (added to the ones in `ws.grads` when `accumulate`) and, when `apply`, the
/// optimiser's update of every layer. With `direct` (a DFA net), each hidden layer's update
/// direction is computed first, inside its own task ([`rules::dfa_delta`]); otherwise the
/// directions are already in `ws.deltas`.
///
/// All update directions are known at this point (computed from the weights before this step),
/// so the layers are independent. With several threads each layer's gradient GEMM and update
/// run as one task on one thread, the tasks spread over the threads — unless one layer holds
/// so much of the work that the others cannot balance it (the 3072-wide first layer of the CIFAR
/// nets), in which case the layers go one after another with each GEMM split over the threads.
/// Either way the bits are the same: the GEMM's sums do not depend on how it is split.
#[allow(clippy::too_many_arguments)]
pub fn update_layers(
    net: &mut Network,
    optimiser: &mut Optimiser,
    ws: &mut Workspace,
    x: &[f32],
    rows: usize,
    accumulate: bool,
    apply: bool,
    direct: Option<&Feedback>,
    threads: usize,
) {
    let layer_parallel = threads > 1 && layers_balance(net, threads);
    // a layer too large for the others to balance goes last, split over the threads (decided
    // once per workspace and thread count)
    let last = match ws.split_last {
        Some((t, last)) if t == threads => last,
        _ => {
            let last = split_last(net, threads);
            ws.split_last = Some((threads, last));
            last
        }
    };
    let (rule, states) = optimiser.layer_states();
    // the gradient and delta buffers are taken out for the loop (moves, no allocation), so that
    // the layer inputs can be borrowed from the rest of the workspace
    let mut grads = std::mem::take(&mut ws.grads);
    let mut deltas = std::mem::take(&mut ws.deltas);
    let mut scratch = std::mem::take(&mut ws.scratch);
    let scratch_shared = (Shared(scratch.as_mut_ptr()), scratch.len());
    let depth = deltas.len();
    let (hidden, output) = deltas.split_at_mut(depth - 1);
    let e: &[f32] = &output[0];
    let shared: &Workspace = ws;
    let masks = shared.dropout_active.then_some(shared.masks.as_slice());
    let (activation, n_out) = (net.activation, net.n_outputs());
    let task = |l: usize,
                layer: &mut Dense,
                delta: Option<&mut Vec<f32>>,
                g: &mut Gradients,
                state: &mut Gradients,
                t: usize| {
        if layer.frozen {
            return;
        }
        let delta: &[f32] = match (delta, direct) {
            (Some(d), Some(fb)) => {
                rules::direct_delta(fb, (activation, &shared.outputs, masks), e, (n_out, rows), l, layer.fan_out, d);
                d
            }
            (Some(d), None) => d,
            (None, _) => e,
        };
        // SAFETY: each thread runs one update at a time (a task with `t` threads is the only one)
        let g = unsafe { gradient_buffer(&scratch_shared, g, apply && !accumulate) };
        update_layer(layer, delta, shared.gradient_input(x, l), rows, g, state, rule, accumulate, apply, t);
    };
    if layer_parallel {
        use rayon::prelude::*;
        net.layers
            .par_iter_mut()
            .zip(hidden.par_iter_mut().map(Some).chain(rayon::iter::once(None)))
            .zip(grads.par_iter_mut())
            .zip(states.par_iter_mut())
            .enumerate()
            .with_max_len(1)
            .filter(|(l, _)| Some(*l) != last)
            .for_each(|(l, (((layer, d), g), state))| task(l, layer, d, g, state, 1));
        if let Some(l) = last {
            task(l, &mut net.layers[l], hidden.get_mut(l), &mut grads[l], &mut states[l], threads);
        }
    } else {
        let hidden = hidden.iter_mut().map(Some).chain(std::iter::once(None));
        for (l, (((layer, d), g), state)) in
            net.layers.iter_mut().zip(hidden).zip(grads.iter_mut()).zip(states.iter_mut()).enumerate()
        {
            task(l, layer, d, g, state, threads);
        }
    }
    ws.grads = grads;
    ws.deltas = deltas;
    ws.scratch = scratch;
}

/// The buffer an update computes a layer's gradient in: when the update applies it at once
/// (`at_once`), the calling thread's buffer of [`Workspace::scratch`] (the first one outside a
/// pool), hot from the thread's previous update; else (the gradient is kept, as adversarial
/// training's two passes need), or without buffers, the layer's own `own`.
///
/// SAFETY: `scratch` points to `scratch.1` buffers that outlive `'a`, and no other update may be
/// using the calling thread's buffer meanwhile (an update on one thread makes no rayon call; one
/// split over the threads is the only update in flight, its parts writing disjoint blocks).
unsafe fn gradient_buffer<'a>(
    scratch: &(Shared<Gradients>, usize),
    own: &'a mut Gradients,
    at_once: bool,
) -> &'a mut Gradients {
    let (buffers, n) = (scratch.0.0, scratch.1);
    match rayon::current_thread_index().unwrap_or(0) {
        i if at_once && i < n => unsafe { &mut *buffers.add(i) },
        _ => own,
    }
}

/// The layer whose update [`update_layers`] runs after the others, split over the threads: the
/// largest, when there are enough other layers to keep the threads busy meanwhile (at least
/// `2·threads + 1` of a tenth of its work or more) and the largest-first greedy hand-out says
/// that ends the updates sooner (all layers as whole tasks, against the others as whole tasks
/// then the largest split evenly). Measured, two threads, min µs per step: 7x240 DFA (a 784-wide
/// first layer, 35 % of the work, beside six equal layers) 941 → 885 and 926 → 875; but 3x300
/// 706 → 711 and 1213 → 1231, which the estimate alone would have split, and 4x300 906 → 988,
/// 3x400 1065 → 1056 / 1024 → 1021 under a laxer rule.
fn split_last(net: &Network, threads: usize) -> Option<usize> {
    let depth = net.depth();
    if !(2..=64).contains(&depth) || threads > 16 {
        return None;
    }
    let work = |l: usize| if net.layers[l].frozen { 0 } else { net.layers[l].work() };
    let big = (0..depth).max_by_key(|&l| work(l))?;
    let others = (0..depth).filter(|&l| l != big && work(l) * 10 >= work(big)).count();
    if others < 2 * threads + 1 {
        return None;
    }
    // largest-first greedy over the layers not in `skip` (a bit set), each to the least loaded
    let greedy = |skip: u64| {
        let mut loads = [0usize; 16];
        let mut done = skip;
        while let Some(l) = (0..depth).filter(|&l| done & (1 << l) == 0).max_by_key(|&l| work(l)) {
            done |= 1 << l;
            let least = (0..threads).min_by_key(|&t| loads[t]).unwrap_or(0);
            loads[least] += work(l);
        }
        loads[..threads].iter().copied().max().unwrap_or(0)
    };
    (greedy(1 << big) + work(big).div_ceil(threads) < greedy(0)).then_some(big)
}

/// Whether a net's layers can be spread over `threads` as whole tasks: no layer holds so much of
/// the work that the others cannot balance it (the 3072-wide first layer of the CIFAR nets does).
fn layers_balance(net: &Network, threads: usize) -> bool {
    let work = net.layers.iter().map(|l| if l.frozen { 0 } else { l.work() });
    let total: usize = work.clone().sum();
    let largest = work.max().unwrap_or(0);
    net.depth() > 1 && largest * threads * 5 <= total * 6
}

/// One layer's weight gradient (added to `g` when `accumulate`) and, when `apply`, its update.
/// Callers skip frozen layers.
#[allow(clippy::too_many_arguments)]
fn update_layer(
    layer: &mut Dense,
    delta: &[f32],
    input: &[f32],
    rows: usize,
    g: &mut Gradients,
    state: &mut Gradients,
    rule: UpdateRule,
    accumulate: bool,
    apply: bool,
    threads: usize,
) {
    // `g` may be a scratch buffer sized for the largest layer
    let (gw, gb) = (&mut g.weight[..layer.weight.len()], &mut g.bias[..layer.bias.len()]);
    layer.gradients_into(delta, input, rows, gw, gb, accumulate, threads);
    if apply {
        rule.apply_parts(layer, gw, gb, state, threads);
    }
}

/// Whether a training step of `net` under `config` on `threads` threads runs the BP or FA chain
/// beside the layer updates ([`chain_and_update`]) instead of before them. Only on two threads
/// (see its deadlock note), for one rule throughout on a dense net, and where it pays
/// ([`overlap_pays`]); the alignment measurement needs all directions first and takes the other
/// path. Either way the numbers are the same.
pub fn overlaps_chain(config: &TrainConfig, net: &Network, threads: usize) -> bool {
    config.rule.flow() == Flow::Chain
        && config.layer_rules.is_empty()
        && !config.adversarial()
        && !net.has_blocks()
        && threads == 2
        && layers_balance(net, threads)
        && overlap_pays(net)
}

/// Whether overlapping the BP/FA chain with the updates ([`chain_and_update`]) should beat
/// splitting every product of the chain over both threads and then the updates. The first layer's
/// update can only start at the end of the chain (its direction comes last), so overlapping runs
/// the chain on one thread (`C`) then that update (`U_0`) beside the other layers' updates (`R`):
/// about `max(C + U_0, R)`; splitting the chain gives about `C/2 + max(U_0, R)`. Costs in
/// multiply-adds per sample; an update costs its gradient product plus ~50 % for RMSprop.
/// 7x240 and 100x240 overlap; 2x800 and 3x400 (one or two large chain steps) do not. (Nets that
/// [`pipelines`] takes, 100x240 among them, run that schedule instead.)
fn overlap_pays(net: &Network) -> bool {
    let update = |l: &Dense| if l.frozen { 0.0 } else { 1.5 * l.work() as f64 };
    let chain: f64 = net.layers[1..].iter().map(|l| l.work() as f64).sum();
    let first = update(&net.layers[0]);
    let rest: f64 = net.layers[1..].iter().map(update).sum();
    (chain + first).max(rest) < chain / 2.0 + first.max(rest)
}

/// A pointer that crosses threads (see [`LayerShares`]).
struct Shared<T>(*mut T);
// SAFETY: only dereferenced through `LayerShares`, whose callers give every element one writer at
// a time and no reader while it is written.
unsafe impl<T: Send> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Shared<T> {}

/// Every layer of a net with its gradient, optimiser state and hidden direction, shared by the
/// threads of [`chain_and_update`] and [`update_beside_forward`]. Those hand every layer's update
/// to exactly one thread and order the other accesses with atomics; the methods are `unsafe`
/// because the borrow checker cannot see that protocol.
struct LayerShares<'a> {
    layers: Shared<Dense>,
    grads: Shared<Gradients>,
    /// [`Workspace::scratch`] and its length.
    scratch: (Shared<Gradients>, usize),
    states: Shared<Gradients>,
    hidden: Shared<Vec<f32>>,
    depth: usize,
    n_out: usize,
    /// The output error `e`.
    e: &'a [f32],
    ws: &'a Workspace,
    x: &'a [f32],
    rows: usize,
    update: UpdateRule,
}

impl LayerShares<'_> {
    /// Runs `f` with the layers of `net` shared; `ws` holds the batch's forward pass and output
    /// error, `x` its input.
    fn with<R>(
        net: &mut Network,
        optimiser: &mut Optimiser,
        ws: &mut Workspace,
        x: &[f32],
        rows: usize,
        f: impl FnOnce(&LayerShares<'_>) -> R,
    ) -> R {
        let depth = net.depth();
        let (update, states) = optimiser.layer_states();
        // moved out (no allocation) so that the rest of the workspace can be shared
        let mut grads = std::mem::take(&mut ws.grads);
        let mut deltas = std::mem::take(&mut ws.deltas);
        let mut scratch = std::mem::take(&mut ws.scratch);
        let (hidden, output) = deltas.split_at_mut(depth - 1);
        let result = f(&LayerShares {
            layers: Shared(net.layers.as_mut_ptr()),
            grads: Shared(grads.as_mut_ptr()),
            scratch: (Shared(scratch.as_mut_ptr()), scratch.len()),
            states: Shared(states.as_mut_ptr()),
            hidden: Shared(hidden.as_mut_ptr()),
            depth,
            n_out: net.n_outputs(),
            e: &output[0],
            ws,
            x,
            rows,
            update,
        });
        ws.grads = grads;
        ws.deltas = deltas;
        ws.scratch = scratch;
        result
    }

    /// The dropout masks of the batch, when it has them.
    fn masks(&self) -> Option<&[Vec<f32>]> {
        self.ws.dropout_active.then_some(self.ws.masks.as_slice())
    }

    /// Layer `l`, to read.
    ///
    /// SAFETY: nobody may be updating layer `l`.
    unsafe fn layer(&self, l: usize) -> &Dense {
        assert!(l < self.depth);
        unsafe { &*self.layers.0.add(l) }
    }

    /// The direction `δa_l` of layer `l` (`e` for the output layer), to read.
    ///
    /// SAFETY: nobody may be writing it.
    unsafe fn direction(&self, l: usize) -> &[f32] {
        assert!(l < self.depth);
        if l == self.depth - 1 { self.e } else { unsafe { &*self.hidden.0.add(l) } }
    }

    /// The direction `δa_l` of hidden layer `l`, to write.
    ///
    /// SAFETY: nobody else may be reading or writing it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn direction_mut(&self, l: usize) -> &mut Vec<f32> {
        assert!(l + 1 < self.depth);
        unsafe { &mut *self.hidden.0.add(l) }
    }

    /// Layer `j`'s weight gradient and update on one thread; with `dfa`, its direction is first
    /// computed from `e` ([`rules::dfa_delta`]), as [`update_layers`] does.
    ///
    /// SAFETY: nobody else may touch layer `j`, its gradient, state or direction meanwhile.
    unsafe fn update(&self, j: usize, dfa: Option<(&Feedback, crate::layers::activation::Activation)>) {
        assert!(j < self.depth);
        let (layer, g, state) =
            unsafe { (&mut *self.layers.0.add(j), &mut *self.grads.0.add(j), &mut *self.states.0.add(j)) };
        if layer.frozen {
            return;
        }
        let delta: &[f32] = match dfa {
            Some((feedback, f)) if j + 1 < self.depth => {
                let d = unsafe { self.direction_mut(j) };
                let (e, masks) = (self.e, self.masks());
                let outputs = &self.ws.outputs;
                rules::direct_delta(feedback, (f, outputs, masks), e, (self.n_out, self.rows), j, layer.fan_out, d);
                d
            }
            _ => unsafe { self.direction(j) },
        };
        let input = self.ws.gradient_input(self.x, j);
        // SAFETY: an update on one thread makes no call that could start another on it
        let g = unsafe { gradient_buffer(&self.scratch, g, true) };
        update_layer(layer, delta, input, self.rows, g, state, self.update, false, true, 1);
    }
}

/// Whether a run of `config` on `threads` threads pipelines its steps: each mini-batch's layer
/// updates run beside the next mini-batch's forward pass, which takes each layer as soon as its
/// update is done (and reads its weights while they are still in cache). Any rule (DFA computes
/// each direction inside its update; BP, FA and IFA compute all directions first, each chain
/// product split over the threads), on a dense net of at least [`PIPELINE_DEPTH`] layers without
/// dropout, alignment measurement or adversarial training, on several threads, where the layers
/// balance over the threads (see [`update_layers`]).
pub fn pipelines(config: &TrainConfig, net: &Network, threads: usize) -> bool {
    !net.has_blocks()
        && !config.dropout()
        && !config.adversarial()
        && config.align_every == 0
        && threads > 1
        && net.depth() >= PIPELINE_DEPTH
        && layers_balance(net, threads)
}

/// Pipelining starts at this many weight layers. Measured on this machine (2 threads, one
/// process, alternating blocks of steps, min µs per step, sequential → pipelined), DFA: 3x400
/// 1037 → 1231, 2x800 2973 → 3094, 4x800 5261 → 5429, 7x240 993 → 965, 20x240 2972 → 2944,
/// 100x240 14 504 → 12 603. With few layers the next forward pass waits for the largest update
/// (the first layer's) where splitting each product over the threads keeps both busy; with many
/// it reads each layer's weights right after their update, still in cache, instead of from
/// memory. BP, FA, IFA against their own schedules (median µs per step): 100x240 BP 16 340 →
/// 15 795 and 21 315 → 19 617, FA 19 220 → 16 847, IFA 16 489 → 15 663; 7x240 BP 1150 → 1161
/// (no gain), 2x800 BP 2514 → 2802.
const PIPELINE_DEPTH: usize = 16;

/// The next mini-batch of a pipelined run: its buffers, its input and its size.
struct Next<'a> {
    ws: &'a mut Workspace,
    x: &'a [f32],
    rows: usize,
}

/// The fused phase of a pipelined run: the updates of the current mini-batch (`ws`, `x`, `rows`;
/// its output error already in `ws`, and with `direct` false, every hidden direction) and the
/// forward pass of the next one (`next`), on the pool's threads. With `direct` (plain DFA) each
/// update first computes its layer's direction from `e`. The updates are handed out from the
/// first layer up; the calling thread runs the forward pass, taking layer `l` as soon as its
/// update is done (`updated[l] == phase`), and takes updates itself while it waits. Each update is the same computation as in
/// [`update_layers`] and each layer's forward product as in [`Network::forward`], so the numbers
/// are those of one step after the other.
///
/// No thread ever waits for work that nobody has taken, so this cannot deadlock: the forward pass
/// waits only for an update that is running, and the other threads only take updates.
#[allow(clippy::too_many_arguments)]
fn update_beside_forward(
    net: &mut Network,
    optimiser: &mut Optimiser,
    feedback: &Feedback,
    ws: &mut Workspace,
    x: &[f32],
    rows: usize,
    next: Next<'_>,
    updated: &[AtomicUsize],
    phase: usize,
    direct: bool,
    threads: usize,
) {
    let depth = net.depth();
    let activation = net.activation;
    let streamed = net.streams_weights();
    let Next { ws: next_ws, x: next_x, rows: next_rows } = next;
    LayerShares::with(net, optimiser, ws, x, rows, |shares| {
        let handed_out = AtomicUsize::new(0);
        let take = || {
            let j = handed_out.fetch_add(1, Ordering::Relaxed);
            (j < depth).then_some(j)
        };
        let run = |j: usize| {
            // SAFETY: layer j is handed out once, and the forward pass reads it only after the
            // Release store below
            unsafe { shares.update(j, direct.then_some((feedback, activation))) };
            updated[j].store(phase, Ordering::Release);
        };
        let take_updates = || {
            while let Some(j) = take() {
                run(j);
            }
        };
        let forward = || {
            let mut l = 0;
            while l < depth {
                if updated[l].load(Ordering::Acquire) == phase {
                    // SAFETY: layer l's update is done (Acquire above) and nothing writes it again
                    let layer = unsafe { shares.layer(l) };
                    let (before, rest) = next_ws.outputs.split_at_mut(l);
                    let input: &[f32] = if l == 0 { next_x } else { &before[l - 1] };
                    // with every update handed out, the other threads are free for half the product
                    let split = if handed_out.load(Ordering::Relaxed) >= depth { threads } else { 1 };
                    layer.forward_dense(activation, l == depth - 1, input, &mut rest[0], next_rows, split, streamed);
                    l += 1;
                } else if let Some(j) = take() {
                    run(j);
                } else if rayon::yield_now() != Some(rayon::Yield::Executed) {
                    std::hint::spin_loop();
                }
            }
            take_updates();
        };
        rayon::join(forward, take_updates);
    });
}

/// The layers a chain rule may read at step `l` of [`chain_and_update`]: layer `l` (nobody
/// updates it before step `l` is done) and, for a rule that transports weights, layer `l + 1`
/// (not handed out before step `l` is done, [`steps_before_update`]). Any other layer may be
/// being updated meanwhile, so asking for it panics. The nets it runs on are dense.
struct ChainView<'s, 'a> {
    shares: &'s LayerShares<'a>,
    l: usize,
    transports: bool,
}

impl rules::Layers for ChainView<'_, '_> {
    fn layer(&self, i: usize) -> &Dense {
        assert!(i == self.l || (i == self.l + 1 && self.transports), "layer {i} is being updated");
        // SAFETY: see the type's doc: nobody writes layer i while this step runs
        unsafe { self.shares.layer(i) }
    }

    fn is_block(&self, _i: usize) -> bool {
        false
    }
}

/// How many steps of the BP/FA chain (step `l` computes `δa_l`; they run from `l = depth − 2`
/// down to 0) must be done before layer `j` may be updated: `δa_j` must be known (the output
/// layer's `e` always is) and — BP — the chain must be done reading `W_j` (step `j − 1`).
fn steps_before_update(rule: Rule, depth: usize, j: usize) -> usize {
    match rule.transports_weights() {
        true => (depth - j).min(depth - 1),
        _ if j == depth - 1 => 0,
        _ => depth - 1 - j,
    }
}

/// BP and FA on two threads: the chain of update directions runs down the net while the layers
/// whose direction is final are already being updated.
///
/// Step `l` of the chain computes `δa_l` from `δa_{l+1}` ([`rules::chain_step`]; BP reads
/// `W_{l+1}`, FA its fixed `B_l`). Layer `j` may be updated once `δa_j` is known and — BP — once
/// the chain has read `W_j` (step `j − 1`); the output layer, with `e`, as soon as BP has read
/// `W_L`, at once under FA. The calling thread runs the chain, splitting each product with the
/// other thread when that one is idle (it polls rayon while it waits), then updates the first
/// layer (the last to become ready, and usually the largest) and joins the other thread, which
/// takes the layers from the top down as they become ready. Every product and update is the same
/// computation as in [`rules::hidden_deltas`] + [`update_layers`], so the bits are the same.
///
/// Deadlock-free on a pool of two threads: the chain never waits for the other thread (a product
/// half that nobody took is run by the chain thread itself), and the only jobs the waiting
/// thread can pick up are those halves.
#[allow(clippy::too_many_arguments)]
fn chain_and_update(
    rule: Rule,
    net: &mut Network,
    optimiser: &mut Optimiser,
    feedback: &Feedback,
    ws: &mut Workspace,
    x: &[f32],
    rows: usize,
) {
    let depth = net.depth();
    let activation = net.activation;
    let streamed = net.streams_weights();
    LayerShares::with(net, optimiser, ws, x, rows, |shares| {
        // chain steps finished (step l is the (depth − 1 − l)-th), and the next layer to hand out
        // (counted from the output layer down to layer 1; layer 0 is the chain thread's)
        let done = AtomicUsize::new(0);
        let next = AtomicUsize::new(0);
        let take_layers = || {
            loop {
                // the chain is the critical path: help with a product half it offers first
                while rayon::yield_now() == Some(rayon::Yield::Executed) {}
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k + 1 >= depth {
                    return;
                }
                let j = depth - 1 - k;
                while done.load(Ordering::Acquire) < steps_before_update(rule, depth, j) {
                    // help with the chain's product halves meanwhile
                    if rayon::yield_now() != Some(rayon::Yield::Executed) {
                        std::hint::spin_loop();
                    }
                }
                // SAFETY: layer j is handed out once; the chain no longer reads W_j and δa_j is
                // final (the Acquire load of `done` pairs with its Release store)
                unsafe { shares.update(j, None) };
            }
        };
        let chain = || {
            for l in (0..depth - 1).rev() {
                let view = ChainView { shares, l, transports: rule.transports_weights() };
                let Source::Above(step) = rule.source(l, &view, feedback) else {
                    panic!("{rule}: a chain rule's signal comes from above")
                };
                // SAFETY: δa_l is written by this step only and read by nobody before `done` says
                // so; δa_{l+1} is final
                let (d, d_above) = unsafe { (shares.direction_mut(l), shares.direction(l + 1)) };
                rules::chain_step(
                    activation,
                    step,
                    d_above,
                    &shares.ws.outputs,
                    shares.masks(),
                    (l, rows),
                    d,
                    (2, streamed),
                );
                done.store(depth - 1 - l, Ordering::Release);
            }
            // SAFETY: layer 0 is never handed out; every step is done
            unsafe { shares.update(0, None) };
            take_layers();
        };
        rayon::join(chain, take_layers);
    });
}

/// The fast gradient sign method (Goodfellow et al. 2015):
/// `x_adv = clip(x + ε·sign(∂J/∂x), 0, 1)`, with `∂J/∂x = W_1ᵀ δa_1` and the true (BP) `δa_1`
/// back-propagated through the current network, whatever rule trains it. Expects the forward
/// pass and the output error of `x` in `ws`; overwrites the hidden deltas.
#[allow(clippy::too_many_arguments)]
pub fn fast_gradient_sign(
    net: &Network,
    feedback: &Feedback,
    ws: &mut Workspace,
    x: &[f32],
    rows: usize,
    epsilon: f32,
    x_adv: &mut [f32],
    threads: usize,
) {
    let n_in = net.n_inputs();
    rules::hidden_deltas(Rule::BP, net, feedback, ws, rows, threads);
    let first = &net.layers[0];
    gemm_nn(x_adv, &ws.deltas[0], &first.weight, rows, first.fan_out, n_in, false, threads);
    for (a, &v) in x_adv[..rows * n_in].iter_mut().zip(&x[..rows * n_in]) {
        let sign = if *a > 0.0 {
            1.0
        } else if *a < 0.0 {
            -1.0
        } else {
            0.0
        };
        *a = (v + epsilon * sign).clamp(0.0, 1.0);
    }
}

/// Fills `mask` for inverted dropout with probability `p`: 0 (dropped) or `1/(1−p)` (kept).
pub fn draw_mask(mask: &mut [f32], p: f32, rng: &mut DfaRng) {
    let keep = 1.0 / (1.0 - p);
    for m in mask {
        *m = if rng.unit() < p { 0.0 } else { keep };
    }
}

/// Applies the configuration's subsets to a loaded data set.
pub fn apply_subsets(mut data: Dataset, config: &TrainConfig) -> Dataset {
    if let Some(n) = config.train_subset.filter(|&n| n < data.train.len()) {
        data.train = Arc::new(data.train.first(n));
    }
    if let Some(n) = config.test_subset.filter(|&n| n < data.test.len()) {
        data.test = Arc::new(data.test.first(n));
    }
    data
}

impl Trainer {
    /// Mini-batches per epoch.
    pub fn progress_batches(&self) -> usize {
        self.train.len().div_ceil(self.config.batch_size)
    }

    pub fn n_train(&self) -> usize {
        self.train.len()
    }

    pub fn n_test(&self) -> usize {
        self.test.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_layer_the_others_cannot_balance_is_split_last() {
        let net = |sizes: &[usize]| {
            Network::new(
                sizes,
                crate::Activation::Tanh,
                false,
                true,
                &mut crate::base::rng::DfaRng::new(1, crate::base::rng::Stream::Weights),
            )
        };
        let mut n7x240 = vec![784];
        n7x240.extend([240; 7]);
        n7x240.push(10);
        // 7x240: the first layer (188 k of 536 k multiply-adds) beside six of 57.6 k
        assert_eq!(split_last(&net(&n7x240), 2), Some(0));
        // too few other layers to fill both threads meanwhile (the estimate alone would split
        // 3x300's first layer; measured, that was slower)
        assert_eq!(split_last(&net(&[784, 300, 300, 300, 10]), 2), None);
        assert_eq!(split_last(&net(&[784, 300, 300, 300, 300, 10]), 2), None);
        assert_eq!(split_last(&net(&[784, 400, 400, 400, 10]), 2), None);
        assert_eq!(split_last(&net(&[784, 800, 800, 10]), 2), None);
        // no layer stands out
        let mut deep = vec![784];
        deep.extend([240; 100]);
        deep.push(10);
        assert_eq!(split_last(&net(&deep), 2), None);
        // one thread has nothing to balance
        assert_eq!(split_last(&net(&n7x240), 1), None);
    }

    #[test]
    fn a_layer_waits_for_every_chain_step_that_touches_it() {
        // written out from what each step touches: step l writes δa_l and (BP) reads W_{l+1}; the
        // update of layer j reads δa_j and writes W_j, so it must wait for every step that writes
        // δa_j or reads W_j; step l is the (depth − 1 − l)-th
        for depth in [2, 3, 8, 101] {
            for rule in [Rule::BP, Rule::FA] {
                for j in 0..depth {
                    let touches = |l: usize| l == j || (rule == Rule::BP && l + 1 == j);
                    let want = (0..depth - 1).filter(|&l| touches(l)).map(|l| depth - 1 - l).max().unwrap_or(0);
                    assert_eq!(steps_before_update(rule, depth, j), want, "{rule:?} depth {depth} layer {j}");
                }
            }
        }
    }
}
