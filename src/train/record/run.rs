//! A run from its folder: open-or-resume, the epoch loop with its observer, the summary.

use crate::base::error::{Error, Result};
use crate::data::{self, Dataset};
use crate::train::config::TrainConfig;
use crate::train::metrics::EpochMetrics;
use crate::train::model::Model;
use crate::train::protocol::{Progress, StopReason, Trainer};
use crate::train::record::run_dir::{
    CHECKPOINT_FILE, GIT_COMMIT, META_FILE, Meta, RunDir, SUMMARY_FILE, Summary, VERSION,
};
use crate::train::trainer::apply_subsets;
use std::path::Path;

/// The data set of a configuration: loaded from its data folder (or `$DFA_DATA`, else
/// `./data`), preprocessed, its subsets applied. What a user should know about the data is in
/// its `notes`.
pub fn load_data(config: &TrainConfig) -> Result<Dataset> {
    let dir = data::resolve_data_dir(config.data_dir.as_deref());
    let data = data::load_prepared(config.dataset, config.preprocess, &dir)?;
    Ok(apply_subsets(data, config))
}

/// The name `dfa train` gives a run folder: `dataset-model-act-rule-seedN`.
pub fn default_run_name(config: &TrainConfig) -> String {
    format!(
        "{}-{}-{}-{}-seed{}",
        config.dataset.name(),
        config.model,
        config.activation.name(),
        config.rule_name(),
        config.seed
    )
}

/// A new run: the folder `out/name` (`-2`, `-3`… if taken; `name` defaults to
/// [`default_run_name`]) with its configuration and metadata written, and its trainer.
pub fn create_run(
    config: TrainConfig,
    data: &Dataset,
    out: &Path,
    name: Option<&str>,
) -> Result<(RunDir, Trainer, Meta)> {
    let name = name.map_or_else(|| default_run_name(&config), str::to_string);
    let dir = RunDir::create_unique(out, &name)?;
    dir.write_config(&config)?;
    let trainer = Trainer::new(config, data)?;
    let meta = Meta::new(&trainer, data);
    dir.write_json(META_FILE, &meta)?;
    Ok((dir, trainer, meta))
}

/// A run folder opened to train on.
pub enum Opened {
    /// It has finished: its summary.
    Finished(Box<Summary>),
    /// Ready to train: fresh, or resumed after the epoch of its checkpoint.
    Ready { trainer: Box<Trainer>, resumed_after: Option<usize> },
}

/// Opens the run folder `dir` whose configuration is `config` to go on training on `data`: its
/// summary when it has finished; else the trainer, from the checkpoint when there is one (the
/// metrics lines newer than it dropped), or fresh (its metadata written when missing).
pub fn open_run(dir: &RunDir, config: TrainConfig, data: &Dataset) -> Result<Opened> {
    if dir.file(SUMMARY_FILE).is_file() {
        return Ok(Opened::Finished(Box::new(dir.read_json(SUMMARY_FILE)?)));
    }
    if dir.file(CHECKPOINT_FILE).is_file() {
        let (model, progress) = dir.load_checkpoint(&config, data.train.dim, data.n_classes)?;
        dir.truncate_metrics(progress.epoch)?;
        let resumed_after = Some(progress.epoch);
        return Ok(Opened::Ready { trainer: Box::new(Trainer::resume(config, data, model, progress)?), resumed_after });
    }
    dir.truncate_metrics(0)?;
    let trainer = Trainer::new(config, data)?;
    if !dir.file(META_FILE).is_file() {
        dir.write_json(META_FILE, &Meta::new(&trainer, data))?;
    }
    Ok(Opened::Ready { trainer: Box::new(trainer), resumed_after: None })
}

/// A finished or interrupted run's configuration (its data folder replaced by `data_dir` when
/// given), model (from its checkpoint) and data set.
pub fn load_run(path: &Path, data_dir: Option<&Path>) -> Result<(TrainConfig, Model, Dataset)> {
    let dir = RunDir::open(path)?;
    let mut config = dir.read_config()?;
    if let Some(d) = data_dir {
        config.data_dir = Some(d.to_path_buf());
    }
    let data = load_data(&config)?;
    let (model, _) = dir.load_checkpoint(&config, data.train.dim, data.n_classes)?;
    Ok((config, model, data))
}

/// The errors of a saved run's network, as `dfa eval` prints them.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// The epochs its checkpoint has trained.
    pub epoch: usize,
    pub train_error: f64,
    pub n_train: usize,
    pub test_error: f64,
    pub n_test: usize,
    /// Notes about the data.
    pub notes: Vec<String>,
}

/// Evaluates the checkpoint of run folder `path` on its data (from `data_dir` when given) with
/// `threads` threads (default: the run's).
pub fn evaluate_run(path: &Path, data_dir: Option<&Path>, threads: Option<usize>) -> Result<Evaluation> {
    let dir = RunDir::open(path)?;
    let mut config = dir.read_config()?;
    if let Some(d) = data_dir {
        config.data_dir = Some(d.to_path_buf());
    }
    if let Some(t) = threads {
        config.threads = t;
    }
    let data = load_data(&config)?;
    let (model, progress) = dir.load_checkpoint(&config, data.train.dim, data.n_classes)?;
    let mut trainer = Trainer::resume(config, &data, model, progress)?;
    let (train_error, test_error) = trainer.evaluate();
    Ok(Evaluation {
        epoch: trainer.progress.epoch,
        train_error,
        n_train: trainer.n_train(),
        test_error,
        n_test: trainer.n_test(),
        notes: data.notes.clone(),
    })
}

/// A run that ended without a summary (it cannot: [`run`] without `interrupt_after` writes one).
pub fn no_summary(what: &str) -> Error {
    Error::config(what, "the run ended without a summary")
}

/// Hooks for whoever watches a run (the command line draws progress bars with them).
pub trait Observer: Send {
    fn epoch_started(&mut self, _epoch: usize, _batches: usize) {}
    fn batch_done(&mut self, _done: usize, _total: usize) {}
    fn epoch_done(&mut self, _metrics: &EpochMetrics, _progress: &Progress) {}
}

/// An observer that does nothing.
pub struct Quiet;
impl Observer for Quiet {}

/// Trains until the stopping rule says so, checkpointing after every epoch. With
/// `interrupt_after = Some(k)` it returns after epoch `k` as if the process had been killed
/// (no summary), which is how the resume tests interrupt a run. Returns the summary of a
/// finished run.
pub fn run(
    trainer: &mut Trainer,
    dir: &RunDir,
    observer: &mut dyn Observer,
    interrupt_after: Option<usize>,
) -> Result<Option<Summary>> {
    let batches = trainer.progress_batches();
    while trainer.progress.stop.is_none() {
        observer.epoch_started(trainer.progress.epoch + 1, batches);
        let m = trainer.run_epoch(&mut |done, total| observer.batch_done(done, total));
        dir.save_checkpoint(trainer)?;
        dir.append_metrics(&m)?;
        observer.epoch_done(&m, &trainer.progress);
        if interrupt_after == Some(m.epoch) && trainer.progress.stop.is_none() {
            return Ok(None);
        }
    }
    let summary = summarise(trainer, &dir.read_metrics()?);
    dir.write_json(SUMMARY_FILE, &summary)?;
    Ok(Some(summary))
}

pub fn summarise(trainer: &Trainer, metrics: &[EpochMetrics]) -> Summary {
    let last = metrics.last();
    let mut rates: Vec<f64> = metrics.iter().map(|m| m.samples_per_s).collect();
    rates.sort_by(f64::total_cmp);
    let stop = trainer.progress.stop.unwrap_or(StopReason::MaxEpochs);
    Summary {
        dfa_version: VERSION.to_string(),
        git_commit: GIT_COMMIT.to_string(),
        stop,
        diverged: stop == StopReason::Diverged,
        epochs: trainer.progress.epoch,
        final_loss: last.map_or(f64::NAN, |m| m.loss),
        final_train_error: last.map_or(f64::NAN, |m| m.train_error),
        final_test_error: last.map_or(f64::NAN, |m| m.test_error),
        mean_epoch_seconds: metrics.iter().map(|m| m.seconds).sum::<f64>() / metrics.len().max(1) as f64,
        median_samples_per_s: rates.get(rates.len() / 2).copied().unwrap_or(0.0),
        total_seconds: metrics.iter().map(|m| m.seconds + m.eval_seconds).sum(),
        seed: trainer.config.seed,
        threads: trainer.threads(),
        config: trainer.config.clone(),
    }
}
