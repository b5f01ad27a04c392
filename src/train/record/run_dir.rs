//! A run folder and the records in it: configuration, metadata, metrics, checkpoint, summary.

use crate::base::error::{Error, Result};
use crate::base::io::write_atomically;
use crate::data::DataFile;
use crate::train::config::TrainConfig;
use crate::train::metrics::EpochMetrics;
use crate::train::protocol::{StopReason, Trainer};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "config.toml";
pub const META_FILE: &str = "meta.json";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
pub const SUMMARY_FILE: &str = "summary.json";

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
            threads: trainer.threads(),
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
}
