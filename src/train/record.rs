//! Run records: the folder a training run leaves behind, and how it resumes.
//!
//! ```text
//! RUN/config.toml              the fully resolved configuration (loadable by `dfa train --config`)
//! RUN/meta.json                crate version, seed, threads, data files with SHA-256, warnings
//! RUN/metrics.jsonl            one JSON object per epoch (EpochMetrics)
//! RUN/checkpoint.safetensors   weights, feedback, optimiser state, RNG and schedule state
//! RUN/summary.json             written when the run ends: why it stopped and its final numbers
//! ```
//!
//! Every file except `metrics.jsonl` is written atomically (temporary file, then rename); the
//! checkpoint is saved *before* the epoch's metrics line is appended, and a resumed run drops any
//! metrics line newer than its checkpoint, so a run killed at any moment resumes to exactly the
//! numbers of an uninterrupted one.

use crate::base::error::{Error, Result};
use crate::base::io::{f32_bytes, write_atomically};
use crate::data::DataFile;
use crate::layers::Gradients;
use crate::optim::OptimiserKind;
use crate::rules::FeedbackMatrix;
use crate::train::config::TrainConfig;
use crate::train::protocol::{EpochMetrics, Model, Progress, StopReason, Trainer};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "config.toml";
pub const META_FILE: &str = "meta.json";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
pub const SUMMARY_FILE: &str = "summary.json";
const CHECKPOINT_FORMAT: &str = "dfa-checkpoint/1";

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// `git describe` of the source the binary was built from (`-dirty` with uncommitted changes).
pub const GIT_COMMIT: &str = env!("DFA_GIT_COMMIT");

/// What a run records when it starts.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Meta {
    pub dfa_version: String,
    pub git_commit: String,
    pub seed: u64,
    pub threads: usize,
    pub data_files: Vec<DataFile>,
    /// Training samples (after a validation set was held out).
    pub n_train: usize,
    pub n_test: usize,
    pub parameters: usize,
    pub warnings: Vec<String>,
}

impl Meta {
    pub fn new(trainer: &Trainer, data: &crate::data::Dataset) -> Self {
        Meta {
            dfa_version: VERSION.into(),
            git_commit: GIT_COMMIT.into(),
            seed: trainer.config.seed,
            threads: trainer.threads,
            data_files: data.files.clone(),
            n_train: trainer.n_train(),
            n_test: data.test.len(),
            parameters: trainer.model.net.parameter_count(),
            warnings: trainer.config.warnings().into_iter().chain(data.notes.iter().cloned()).collect(),
        }
    }
}

/// What a run records when it ends.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub dfa_version: String,
    pub git_commit: String,
    pub stop: StopReason,
    pub diverged: bool,
    pub epochs: usize,
    pub final_loss: f64,
    pub final_train_error: f64,
    pub final_test_error: f64,
    pub mean_epoch_seconds: f64,
    pub median_samples_per_s: f64,
    pub total_seconds: f64,
    pub seed: u64,
    pub threads: usize,
    pub config: TrainConfig,
}

/// A run folder.
#[derive(Clone, Debug)]
pub struct RunDir {
    pub path: PathBuf,
}

fn json_err(path: &Path, e: serde_json::Error) -> Error {
    Error::format(path, format!("not valid JSON: {e}"))
}

impl RunDir {
    /// Creates `base/name`, or `base/name-2`, `-3`… if it exists.
    pub fn create_unique(base: &Path, name: &str) -> Result<Self> {
        std::fs::create_dir_all(base).map_err(|e| Error::io(base, e))?;
        for k in 1.. {
            let path = if k == 1 { base.join(name) } else { base.join(format!("{name}-{k}")) };
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(RunDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(path, e)),
            }
        }
        unreachable!()
    }

    /// An existing, empty folder that is to become a run folder.
    pub fn open_new(path: &Path) -> Result<Self> {
        Ok(RunDir { path: path.to_path_buf() })
    }

    /// An existing run folder (it must hold a `config.toml`).
    pub fn open(path: &Path) -> Result<Self> {
        if !path.join(CONFIG_FILE).is_file() {
            return Err(Error::format(path, format!("not a run folder: no {CONFIG_FILE} in it")));
        }
        Ok(RunDir { path: path.to_path_buf() })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn write_config(&self, config: &TrainConfig) -> Result<()> {
        write_atomically(&self.file(CONFIG_FILE), config.to_toml().as_bytes())
    }

    pub fn read_config(&self) -> Result<TrainConfig> {
        let path = self.file(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        TrainConfig::from_toml(&text, &path.display().to_string())
    }

    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let text = serde_json::to_string_pretty(value).expect("records always serialise");
        write_atomically(&self.file(name), text.as_bytes())
    }

    pub fn read_json<T: for<'a> Deserialize<'a>>(&self, name: &str) -> Result<T> {
        let path = self.file(name);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| json_err(&path, e))
    }

    pub fn append_metrics(&self, m: &EpochMetrics) -> Result<()> {
        let path = self.file(METRICS_FILE);
        let mut f =
            std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| Error::io(&path, e))?;
        let line = serde_json::to_string(m).expect("metrics always serialise");
        writeln!(f, "{line}").and_then(|()| f.sync_data()).map_err(|e| Error::io(&path, e))
    }

    pub fn read_metrics(&self) -> Result<Vec<EpochMetrics>> {
        let path = self.file(METRICS_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&path, e)),
        };
        // A last line cut short by a kill is dropped (the checkpoint decides what counts); any
        // other line that does not parse is an error.
        let lines: Vec<&str> = text.lines().collect();
        let mut metrics = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            match serde_json::from_str(line) {
                Ok(m) => metrics.push(m),
                Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {}
                Err(e) => return Err(Error::format(&path, format!("line {}: {e}", i + 1))),
            }
        }
        Ok(metrics)
    }

    /// Keeps only the metrics of epochs `1..=epoch` (rewritten atomically).
    pub fn truncate_metrics(&self, epoch: usize) -> Result<()> {
        let kept: Vec<String> = self
            .read_metrics()?
            .into_iter()
            .filter(|m| m.epoch <= epoch)
            .map(|m| serde_json::to_string(&m).expect("metrics always serialise") + "\n")
            .collect();
        write_atomically(&self.file(METRICS_FILE), kept.concat().as_bytes())
    }

    /// Saves the model, the feedback, the optimiser state and the progress (RNG included).
    pub fn save_checkpoint(&self, trainer: &Trainer) -> Result<()> {
        let bytes = checkpoint_bytes(&trainer.model, &trainer.progress, &trainer.config)?;
        write_atomically(&self.file(CHECKPOINT_FILE), &bytes)
    }

    /// Loads a checkpoint into a model built for `config` (shapes are checked).
    pub fn load_checkpoint(&self, config: &TrainConfig, n_in: usize, n_out: usize) -> Result<(Model, Progress)> {
        let path = self.file(CHECKPOINT_FILE);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        load_checkpoint_bytes(&bytes, &path, config, n_in, n_out)
    }
}

/// A layer's weight tensor shape: `[out, in]` (as `torch.nn.Linear`), or for a convolutional
/// block `[C_out, kh, kw, C_in]` (PyTorch's `Conv2d` layout is its `permute(0, 3, 1, 2)`).
pub fn weight_shape(layer: &crate::layers::Dense) -> Vec<usize> {
    match &layer.block {
        Some(b) => vec![b.conv.out_channels, b.conv.kh, b.conv.kw, b.conv.input.c],
        None => vec![layer.fan_out, layer.fan_in],
    }
}

/// The tensors of a checkpoint: name, shape, values.
fn tensors(model: &Model) -> Vec<(String, Vec<usize>, &[f32])> {
    let mut t: Vec<(String, Vec<usize>, &[f32])> = Vec::new();
    for (l, layer) in model.net.layers.iter().enumerate() {
        t.push((format!("layers.{l}.weight"), weight_shape(layer), &layer.weight));
        t.push((format!("layers.{l}.bias"), vec![layer.bias.len()], &layer.bias));
    }
    for (k, b) in model.feedback.matrices.iter().enumerate() {
        t.push((format!("feedback.{k}"), vec![b.rows, b.cols], &b.values));
    }
    for (l, (ms, layer)) in model.optimiser.mean_square.iter().zip(&model.net.layers).enumerate() {
        t.push((format!("optimiser.layers.{l}.weight.mean_square"), weight_shape(layer), &ms.weight));
        t.push((format!("optimiser.layers.{l}.bias.mean_square"), vec![layer.bias.len()], &ms.bias));
    }
    t
}

pub fn checkpoint_bytes(model: &Model, progress: &Progress, config: &TrainConfig) -> Result<Vec<u8>> {
    let list = tensors(model);
    let data: Vec<(String, Vec<usize>, Vec<u8>)> =
        list.into_iter().map(|(name, shape, v)| (name, shape, f32_bytes(v))).collect();
    let views = data
        .iter()
        .map(|(name, shape, bytes)| TensorView::new(Dtype::F32, shape.clone(), bytes).map(|v| (name.clone(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::checkpoint("(memory)", e.to_string()))?;
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), CHECKPOINT_FORMAT.to_string());
    meta.insert("dfa_version".to_string(), VERSION.to_string());
    meta.insert("git_commit".to_string(), GIT_COMMIT.to_string());
    meta.insert("progress".to_string(), serde_json::to_string(progress).expect("progress serialises"));
    meta.insert("config".to_string(), config.to_toml());
    meta.insert(
        "feedback_layers".to_string(),
        serde_json::to_string(&model.feedback.layer_matrix).expect("serialises"),
    );
    safetensors::serialize(views, Some(meta)).map_err(|e| Error::checkpoint("(memory)", e.to_string()))
}

pub fn load_checkpoint_bytes(
    bytes: &[u8],
    path: &Path,
    config: &TrainConfig,
    n_in: usize,
    n_out: usize,
) -> Result<(Model, Progress)> {
    let bad = |m: String| Error::checkpoint(path, m);
    let st = SafeTensors::deserialize(bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some(CHECKPOINT_FORMAT) {
        return Err(bad(format!("metadata 'format' is not {CHECKPOINT_FORMAT}")));
    }
    let progress: Progress =
        serde_json::from_str(meta.get("progress").ok_or_else(|| bad("no 'progress' metadata".into()))?)
            .map_err(|e| bad(format!("metadata 'progress': {e}")))?;
    let mut model = Model::new(config, n_in, n_out)?;
    let fill = |name: &str, shape: &[usize], out: &mut [f32]| -> Result<()> {
        let t = st.tensor(name).map_err(|_| bad(format!("tensor '{name}' is missing")))?;
        if t.dtype() != Dtype::F32 || t.shape() != shape {
            return Err(bad(format!("tensor '{name}' is {:?} {:?}, expected F32 {shape:?}", t.dtype(), t.shape())));
        }
        for (o, c) in out.iter_mut().zip(t.data().chunks_exact(4)) {
            *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        Ok(())
    };
    for (l, layer) in model.net.layers.iter_mut().enumerate() {
        let shape = weight_shape(layer);
        fill(&format!("layers.{l}.weight"), &shape, &mut layer.weight)?;
        fill(&format!("layers.{l}.bias"), &[layer.bias.len()], &mut layer.bias)?;
    }
    for (k, FeedbackMatrix { rows, cols, values }) in model.feedback.matrices.iter_mut().enumerate() {
        fill(&format!("feedback.{k}"), &[*rows, *cols], values)?;
    }
    let layers = model.net.layers.iter().map(|l| (weight_shape(l), l.bias.len()));
    let rmsprop = model.optimiser.kind == OptimiserKind::Rmsprop;
    for (l, (Gradients { weight, bias }, (shape, n_bias))) in
        model.optimiser.mean_square.iter_mut().zip(layers).enumerate().filter(|_| rmsprop)
    {
        fill(&format!("optimiser.layers.{l}.weight.mean_square"), &shape, weight)?;
        fill(&format!("optimiser.layers.{l}.bias.mean_square"), &[n_bias], bias)?;
    }
    model.feedback.restack();
    model.optimiser.learning_rate = progress.learning_rate;
    Ok((model, progress))
}

/// Copies the forward weights, biases and optimiser state of the checkpoint in run folder
/// `source` into `model` (a run that continues another: `init_from`). The shapes must match;
/// the feedback stays `model`'s own. Returns the source's completed epochs.
pub fn continue_from(source: &Path, model: &mut Model, n_in: usize, n_out: usize) -> Result<usize> {
    let named = |e: Error| Error::config("init_from", format!("{}: {e}", source.display()));
    let dir = RunDir::open(source).map_err(named)?;
    if !dir.file(CHECKPOINT_FILE).is_file() {
        return Err(Error::config("init_from", format!("{}: no {CHECKPOINT_FILE} to start from", source.display())));
    }
    let (from, progress) = dir.load_checkpoint(&dir.read_config().map_err(named)?, n_in, n_out).map_err(named)?;
    let shapes = |m: &Model| m.net.layers.iter().map(|l| (l.fan_in, l.fan_out)).collect::<Vec<_>>();
    if shapes(&from) != shapes(model) {
        return Err(Error::config(
            "init_from",
            format!(
                "{} holds layers (in, out) {:?}, this run's are {:?}",
                source.display(),
                shapes(&from),
                shapes(model)
            ),
        ));
    }
    for (to, from) in model.net.layers.iter_mut().zip(from.net.layers) {
        to.weight = from.weight;
        to.bias = from.bias;
    }
    if from.optimiser.kind == model.optimiser.kind {
        model.optimiser.mean_square = from.optimiser.mean_square;
    }
    Ok(progress.epoch)
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
        threads: trainer.threads,
        config: trainer.config.clone(),
    }
}
