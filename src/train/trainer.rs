//! Building a [`Trainer`] (fresh or resumed) and feeding it mini-batches; evaluation passes.
//!
//! The epoch loop and the schedule are in [`crate::train::protocol`], one step in
//! [`crate::train::step`], the threads in [`crate::train::parallel`].

use crate::base::error::{Error, Result};
use crate::base::rng::{DfaRng, Stream};
use crate::data::{Dataset, Split};
use crate::layers::Workspace;
use crate::train::model::EVAL_ROWS;
use crate::train::protocol::{Progress, Trainer};

use crate::train::config::{TrainConfig, resolve_threads};
use crate::train::model::Model;
use crate::train::parallel::{Buffers, Engine};
use std::sync::Arc;

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
    /// A fresh run.
    pub fn new(config: TrainConfig, data: &Dataset) -> Result<Self> {
        config.validate()?;
        let mut model = Model::new(&config, data.shape, data.n_classes)?;
        let first_epoch = match &config.init_from {
            Some(source) => {
                crate::train::record::checkpoint::continue_from(source, &mut model, data.shape, data.n_classes)?
            }
            None => 0,
        };
        let progress = Progress::start(&config, first_epoch);
        Self::resume(config, data, model, progress)
    }

    /// A run continued from a saved model and progress.
    pub fn resume(config: TrainConfig, data: &Dataset, model: Model, progress: Progress) -> Result<Self> {
        config.validate()?;
        let threads = resolve_threads(config.threads);
        let shuffle = DfaRng::from_state(&progress.shuffle_rng)
            .ok_or_else(|| Error::config("shuffle_rng", "unreadable RNG state"))?;
        let dropout_rng = match &progress.dropout_rng {
            Some(state) => {
                DfaRng::from_state(state).ok_or_else(|| Error::config("dropout_rng", "unreadable RNG state"))?
            }
            None => DfaRng::new(config.seed, Stream::Dropout),
        };
        let refresh_rng = match &progress.refresh_rng {
            Some(state) => {
                DfaRng::from_state(state).ok_or_else(|| Error::config("refresh_rng", "unreadable RNG state"))?
            }
            None => DfaRng::new(config.seed, Stream::Refresh),
        };
        let rows = config.batch_size;
        if data.train.is_empty() {
            return Err(Error::config("train_subset", "the training split holds no samples; nothing to train on"));
        }
        if config.validation >= data.train.len() {
            return Err(Error::config(
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
        let plan = config.plan();
        let engine = Engine::new(threads, &plan, &model.net, rows, train.dim)?;
        let flush = config.flush_subnormals;
        engine.pool().broadcast(|| crate::base::subnormal::set_flush(flush));
        let rules = plan.rules;
        let mut ws = Workspace::new(&model.net, rows).with_scratch(&model.net, threads);
        if config.dropout() {
            ws = ws.with_dropout(&model.net);
            ws.dropout_active = true;
        }
        let x_adv = if config.adversarial() { vec![0.0; rows * train.dim] } else { Vec::new() };
        Ok(Trainer {
            engine,
            ws,
            dropout_rng,
            refresh_rng,
            x_adv,
            eval_ws: Workspace::new(&model.net, EVAL_ROWS),
            order: (0..train.len() as u32).collect(),
            rules,
            x: vec![0.0; rows * train.dim],
            y: vec![0; rows],
            test: data.test.clone(),
            validation,
            align: None,
            measure_batch: None,
            alignment_log: Vec::new(),
            train,
            shuffle,
            model,
            progress,
            config,
        })
    }

    /// The threads of this run.
    pub fn threads(&self) -> usize {
        self.engine.threads()
    }

    /// Runs `f` on this run's thread pool (the pool of `config.threads` threads that the GEMMs
    /// and the concurrent layer updates use), its workers kept awake ([`crate::train::parallel::Pool::run`]).
    pub fn in_pool<R: Send>(&mut self, f: impl FnOnce(&mut Trainer) -> R + Send) -> R {
        let pool = self.engine.pool();
        pool.run(|| f(self))
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
    /// A deep dense net on several threads (`parallel::pipeline`) runs each batch's updates
    /// beside the next batch's forward pass; the numbers are those of one batch after the other,
    /// and when this returns every update is made.
    pub fn train_batches<'a>(
        &mut self,
        batches: impl Iterator<Item = &'a [u32]>,
        record: &mut dyn FnMut(usize, usize, f64, usize) -> bool,
    ) {
        if self.engine.pipelines() {
            let Trainer { model, ws, x, y, train, config, rules, engine, progress, .. } = self;
            let load = |idx: &[u32], x: &mut [f32], y: &mut [u8]| load_batch(train, idx, config.batch_size, x, y);
            let learner = model.learner(rules, progress.learning_rate);
            engine.train_pipelined(learner, Buffers { ws, x, y }, batches, &load, record);
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

    /// Classification error (%) of the current network on a split (NaN on an empty one: own
    /// data without a test set).
    pub fn error_rate(&mut self, which: &Split) -> f64 {
        if which.is_empty() {
            return f64::NAN;
        }
        let (net, ws, pool) = (&self.model.net, &mut self.eval_ws, self.engine.pool());
        let threads = pool.threads();
        let errors = pool.install(|| net.count_errors(&which.images, &which.labels, ws, threads));
        100.0 * errors as f64 / which.len().max(1) as f64
    }

    /// Training and test error (%) of the current network; the training error is NaN when the
    /// run skips the full pass (`full_pass = false`).
    pub fn evaluate(&mut self) -> (f64, f64) {
        let (train, test) = (self.train.clone(), self.test.clone());
        let train_error = if self.config.full_pass { self.error_rate(&train) } else { f64::NAN };
        (train_error, self.error_rate(&test))
    }

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
