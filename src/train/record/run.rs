//! A run from its folder: open-or-resume, the epoch loop with its observer, the summary.

use crate::base::error::{Error, Result};
use crate::base::failpoint::failpoint;
use crate::data::{self, Dataset};
use crate::train::config::TrainConfig;
use crate::train::metrics::EpochMetrics;
use crate::train::model::Model;
use crate::train::protocol::{Progress, StopReason, Trainer};
use crate::train::record::run_dir::{
    CHECKPOINT_FILE, CONFIG_FILE, GIT_COMMIT, META_FILE, Meta, RunDir, RunLock, SUMMARY_FILE, Summary, VERSION,
};
use crate::train::trainer::apply_subsets;
use std::path::{Path, PathBuf};

/// The data set of a configuration: loaded from its data folder (or `$DFA_DATA`, else
/// `./data`), preprocessed, its subsets applied. What a user should know about the data is in
/// its `notes`.
pub fn load_data(config: &TrainConfig) -> Result<Dataset> {
    let data = match (config.dataset, &config.data) {
        (data::DatasetKind::File, Some(path)) => {
            data::preprocess::prepare(data::arrays::load(path)?, config.preprocess, &data::preprocess::cache_dir())?
        }
        (data::DatasetKind::Arrays, _) => {
            return Err(Error::config(
                "dataset",
                "this run trained on arrays passed from Python; go on from Python (dfa.Net.load(folder).fit(x, y))",
            ));
        }
        (kind, _) => data::load_prepared(kind, config.preprocess, &data::resolve_data_dir(config.data_dir.as_deref()))?,
    };
    Ok(apply_subsets(data, config))
}

/// The name `dfa train` gives a run folder: `dataset-model-act-rule-seedN` (own data: the file's
/// name without its extension in place of the data set's).
pub fn default_run_name(config: &TrainConfig) -> String {
    let data = match (config.dataset, &config.data) {
        (data::DatasetKind::File, Some(path)) => path.file_stem().map_or("file".into(), |s| s.to_string_lossy()),
        (kind, _) => kind.name().into(),
    };
    format!("{}-{}-{}-{}-seed{}", data, config.model, config.activation.name(), config.rule_name(), config.seed)
}

/// A new run: the folder `out/name` (`-2`, `-3`… if taken; `name` defaults to
/// [`default_run_name`]), locked, with its configuration (its data folder made absolute) and
/// metadata written, and its trainer.
pub fn create_run(
    mut config: TrainConfig,
    data: &Dataset,
    out: &Path,
    name: Option<&str>,
) -> Result<(RunDir, RunLock, Trainer, Meta)> {
    let name = name.map_or_else(|| default_run_name(&config), str::to_string);
    let data_dir = data::resolve_data_dir(config.data_dir.as_deref());
    config.data_dir = Some(std::path::absolute(&data_dir).unwrap_or(data_dir));
    // built first: a net that cannot be built (or does not fit) leaves no folder behind
    let trainer = Trainer::new(config.clone(), data)?;
    let (dir, lock) = RunDir::create_locked(out, &name)?;
    dir.write_config(&config)?;
    let meta = Meta::new(&trainer, data, &config);
    dir.write_json(META_FILE, &meta)?;
    Ok((dir, lock, trainer, meta))
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
/// metrics lines newer than it dropped), or fresh (its metadata written when missing). The
/// caller holds the folder's lock ([`RunDir::lock`]).
pub fn open_run(dir: &RunDir, config: TrainConfig, data: &Dataset) -> Result<Opened> {
    if dir.file(SUMMARY_FILE).is_file() {
        return Ok(Opened::Finished(Box::new(dir.read_json(SUMMARY_FILE)?)));
    }
    let written = config.clone();
    let (trainer, resumed_after) = if dir.file(CHECKPOINT_FILE).is_file() {
        let (model, progress) = dir.load_checkpoint(&config, data.shape, data.n_classes)?;
        dir.truncate_metrics(progress.epoch)?;
        let resumed_after = Some(progress.epoch);
        (Trainer::resume(config, data, model, progress)?, resumed_after)
    } else {
        dir.truncate_metrics(0)?;
        (Trainer::new(config, data)?, None)
    };
    if !dir.file(META_FILE).is_file() {
        dir.write_json(META_FILE, &Meta::new(&trainer, data, &written))?;
    }
    Ok(Opened::Ready { trainer: Box::new(trainer), resumed_after })
}

/// How a run folder written before is opened again (`dfa train --resume`, `dfa eval`).
#[derive(Clone, Debug, Default)]
pub struct Reopen {
    /// Read the data from this folder instead of the recorded one (`--data-dir`); the data
    /// files' SHA-256 against `meta.json` prove that it holds the same data.
    pub data_dir: Option<PathBuf>,
    /// Go on although `config.toml` differs from the configuration the run started with, or
    /// the data differ from those it was trained on (`--accept-changes`); the differences are
    /// reported and, on a resume, recorded in `meta.json`'s warnings.
    pub accept_changes: bool,
}

/// The configuration the run in `dir` started with: `meta.json`'s copy, else the checkpoint's
/// (folders written before `meta.json` held it), else none.
fn started_with(dir: &RunDir) -> Result<Option<TrainConfig>> {
    if dir.file(META_FILE).is_file() {
        let meta: Meta = dir.read_json(META_FILE)?;
        if meta.config.is_some() {
            return Ok(meta.config);
        }
    }
    if dir.file(CHECKPOINT_FILE).is_file() {
        return dir.checkpoint_config();
    }
    Ok(None)
}

/// The fields of `now` that differ from `then`, as `field: then → now`. Two fields may change:
/// the data folder (moving the data is allowed, the checksums decide) and the thread count (a
/// run may go on on another machine; its numbers are then those of a run that changed its
/// thread count, and `dfa reproduce` resumes its cells with the threads it is given).
fn edited_fields(then: &TrainConfig, now: &TrainConfig) -> Vec<String> {
    let table = |c: &TrainConfig| c.to_toml().parse::<toml::Table>().unwrap_or_default();
    let (a, b) = (table(then), table(now));
    let mut keys: Vec<&String> =
        a.keys().chain(b.keys()).filter(|k| !["data_dir", "threads"].contains(&k.as_str())).collect();
    keys.sort();
    keys.dedup();
    let show = |v: Option<&toml::Value>| v.map_or("(absent)".to_string(), ToString::to_string);
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k}: {} → {}", show(a.get(k)), show(b.get(k))))
        .collect()
}

/// The data folder of a reopened run: `--data-dir` when given; else the recorded one when it
/// exists; else `$DFA_DATA` when set; else the recorded one (whose absence the loader reports).
fn reopened_data_dir(recorded: Option<&Path>, flag: Option<&Path>) -> Option<PathBuf> {
    if let Some(d) = flag {
        return Some(std::path::absolute(d).unwrap_or(d.to_path_buf()));
    }
    match recorded {
        Some(d) if d.is_dir() => Some(d.to_path_buf()),
        recorded => match std::env::var_os("DFA_DATA") {
            Some(env) if !env.is_empty() => Some(PathBuf::from(env)),
            _ => recorded.map(Path::to_path_buf),
        },
    }
}

/// The configuration of the run in `dir` for a resume or an evaluation: `config.toml`, checked
/// against the configuration the run started with, its data folder relocated as
/// [`Reopen::data_dir`] says. Returns it with the differences accepted.
pub fn reopen_config(dir: &RunDir, reopen: &Reopen) -> Result<(TrainConfig, Vec<String>)> {
    let mut config = dir.read_config()?;
    let mut accepted = Vec::new();
    if let Some(then) = started_with(dir)? {
        let edited = edited_fields(&then, &config);
        if let Some(first) = edited.first() {
            if !reopen.accept_changes {
                let field = first.split(':').next().unwrap_or_default();
                return Err(Error::config(
                    format!("{} field {field}", dir.file(CONFIG_FILE).display()),
                    format!(
                        "edited since the run started ({}); restore it, or pass --accept-changes to go on with the edit",
                        edited.join("; ")
                    ),
                ));
            }
            accepted.extend(edited.into_iter().map(|e| format!("config.toml edited after the run started: {e}")));
        }
    }
    config.data_dir = reopened_data_dir(config.data_dir.as_deref(), reopen.data_dir.as_deref());
    Ok((config, accepted))
}

/// Compares the SHA-256 of the data files just read with those in `meta.json` (by file name,
/// so that a moved data folder still matches). Returns the differences accepted.
pub fn verify_data(dir: &RunDir, data: &Dataset, reopen: &Reopen) -> Result<Vec<String>> {
    if !dir.file(META_FILE).is_file() {
        return Ok(Vec::new());
    }
    let meta: Meta = dir.read_json(META_FILE)?;
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut differences = Vec::new();
    for then in &meta.data_files {
        let now = data.files.iter().find(|f| name(&f.path) == name(&then.path));
        match now {
            Some(now) if now.sha256 == then.sha256 => {}
            Some(now) => differences.push(format!(
                "{}: SHA-256 {}, but the run was trained on {} with SHA-256 {} (meta.json)",
                now.path.display(),
                now.sha256,
                then.path.display(),
                then.sha256
            )),
            None => differences.push(format!(
                "the run was trained on {} (meta.json), which the data folder no longer holds",
                then.path.display()
            )),
        }
    }
    if let Some(first) = differences.first()
        && !reopen.accept_changes
    {
        return Err(Error::format(
            dir.file(META_FILE),
            format!("{first}; point --data-dir at the run's data, or pass --accept-changes to use these data"),
        ));
    }
    Ok(differences)
}

/// A run folder reopened to go on training (`dfa train --resume`).
pub struct Resumed {
    pub dir: RunDir,
    /// The folder's lock, held while the run trains.
    pub lock: RunLock,
    pub opened: Opened,
    /// Notes about the data, and the differences accepted.
    pub notes: Vec<String>,
}

/// Reopens the run folder `path` to go on training: locked; its summary when it has finished
/// (before any data is read); else its configuration checked ([`reopen_config`]), its data
/// loaded and checked ([`verify_data`]), and its trainer from the checkpoint.
pub fn resume_run(path: &Path, reopen: &Reopen) -> Result<Resumed> {
    let dir = RunDir::open(path)?;
    let lock = dir.lock()?;
    if dir.file(SUMMARY_FILE).is_file() {
        let opened = Opened::Finished(Box::new(dir.read_json(SUMMARY_FILE)?));
        return Ok(Resumed { dir, lock, opened, notes: Vec::new() });
    }
    let (config, mut accepted) = reopen_config(&dir, reopen)?;
    let data = load_data(&config)?;
    accepted.extend(verify_data(&dir, &data, reopen)?);
    if !accepted.is_empty() && dir.file(META_FILE).is_file() {
        let mut meta: Meta = dir.read_json(META_FILE)?;
        meta.warnings.extend(accepted.iter().map(|a| format!("resumed with changes accepted: {a}")));
        dir.write_json(META_FILE, &meta)?;
    }
    let opened = open_run(&dir, config, &data)?;
    let notes = data.notes.iter().cloned().chain(accepted).collect();
    Ok(Resumed { dir, lock, opened, notes })
}

/// A finished or interrupted run's configuration (checked as [`reopen_config`] says), model
/// (from its checkpoint) and data set (checked as [`verify_data`] says).
pub fn load_run(path: &Path, reopen: &Reopen) -> Result<(TrainConfig, Model, Dataset)> {
    let dir = RunDir::open(path)?;
    let (config, _) = reopen_config(&dir, reopen)?;
    let data = load_data(&config)?;
    verify_data(&dir, &data, reopen)?;
    let (model, _) = dir.load_checkpoint(&config, data.shape, data.n_classes)?;
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

/// Evaluates the checkpoint of run folder `path` on its data (checked and relocated as
/// `reopen` says) with `threads` threads (default: the run's).
pub fn evaluate_run(path: &Path, reopen: &Reopen, threads: Option<usize>) -> Result<Evaluation> {
    let dir = RunDir::open(path)?;
    if !dir.file(CHECKPOINT_FILE).is_file() {
        return Err(Error::format(
            dir.file(CHECKPOINT_FILE),
            "no checkpoint yet: the run has not finished its first epoch",
        ));
    }
    let (mut config, accepted) = reopen_config(&dir, reopen)?;
    if let Some(t) = threads {
        config.threads = t;
    }
    let data = load_data(&config)?;
    let accepted_data = verify_data(&dir, &data, reopen)?;
    let (model, progress) = dir.load_checkpoint(&config, data.shape, data.n_classes)?;
    let mut trainer = Trainer::resume(config, &data, model, progress)?;
    let (train_error, test_error) = trainer.evaluate();
    Ok(Evaluation {
        epoch: trainer.progress.epoch,
        train_error,
        n_train: trainer.n_train(),
        test_error,
        n_test: trainer.n_test(),
        notes: data.notes.iter().cloned().chain(accepted).chain(accepted_data).collect(),
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
        // The metrics line first, then the checkpoint: the checkpoint's epoch is what counts, and
        // a resume drops any line newer than it, so a kill between the two writes (or inside
        // either) costs only the epoch in progress.
        failpoint("epoch-trained");
        dir.append_metrics(&m)?;
        failpoint("metrics-appended");
        dir.save_checkpoint(trainer)?;
        failpoint("checkpoint-saved");
        observer.epoch_done(&m, &trainer.progress);
        if interrupt_after == Some(m.epoch) && trainer.progress.stop.is_none() {
            return Ok(None);
        }
    }
    let summary = summarise(trainer, &dir.read_metrics()?);
    failpoint("before-summary");
    dir.write_json(SUMMARY_FILE, &summary)?;
    Ok(Some(summary))
}

pub fn summarise(trainer: &Trainer, metrics: &[EpochMetrics]) -> Summary {
    let stop = trainer.progress.stop.unwrap_or(StopReason::MaxEpochs);
    summary_of(stop, trainer.progress.epoch, (&trainer.config, trainer.threads()), metrics)
}

/// The summary of a run that stopped for `stop` after `epochs` epochs with these metrics, under
/// `config` with `threads` threads (what [`summarise`] writes; the Python bindings too).
pub fn summary_of(
    stop: StopReason,
    epochs: usize,
    (config, threads): (&TrainConfig, usize),
    metrics: &[EpochMetrics],
) -> Summary {
    let last = metrics.last();
    let mut rates: Vec<f64> = metrics.iter().map(|m| m.samples_per_s).collect();
    rates.sort_by(f64::total_cmp);
    Summary {
        dfa_version: VERSION.to_string(),
        git_commit: GIT_COMMIT.to_string(),
        stop,
        diverged: stop == StopReason::Diverged,
        epochs,
        final_loss: last.map_or(f64::NAN, |m| m.loss),
        final_train_error: last.map_or(f64::NAN, |m| m.train_error),
        final_test_error: last.map_or(f64::NAN, |m| m.test_error),
        mean_epoch_seconds: metrics.iter().map(|m| m.seconds).sum::<f64>() / metrics.len().max(1) as f64,
        median_samples_per_s: rates.get(rates.len() / 2).copied().unwrap_or(0.0),
        total_seconds: metrics.iter().map(|m| m.seconds + m.eval_seconds).sum(),
        seed: config.seed,
        threads,
        config: config.clone(),
    }
}
