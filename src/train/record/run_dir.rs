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
/// The lock file of a run folder's one writer (it holds the writer's PID).
pub const LOCK_FILE: &str = ".lock";

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
    /// The configuration the run started with: a resume or an evaluation compares `config.toml`
    /// with it (absent in folders written before it was recorded; the checkpoint's copy then
    /// serves).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<TrainConfig>,
    /// One sample's shape, `[channels, height, width]` (`[1, 1, D]` for flat vectors), and the
    /// classes: what a model needs to be rebuilt without its data (`dfa.Net.load`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_shape: Option<[usize; 3]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_classes: Option<usize>,
}

impl Meta {
    /// What a run records when it starts, `config` as its `config.toml` holds it.
    pub fn new(trainer: &Trainer, data: &crate::data::Dataset, config: &TrainConfig) -> Self {
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
            config: Some(config.clone()),
            input_shape: Some([data.shape.c, data.shape.h, data.shape.w]),
            n_classes: Some(data.n_classes),
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
    #[serde(deserialize_with = "crate::base::io::f64_or_null")]
    pub final_loss: f64,
    #[serde(deserialize_with = "crate::base::io::f64_or_null")]
    pub final_train_error: f64,
    #[serde(deserialize_with = "crate::base::io::f64_or_null")]
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

/// The right to write a run folder: an exclusive OS lock (`flock`) on its [`LOCK_FILE`], held
/// until this value is dropped or the process ends, however it ends (the kernel releases it).
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
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

    /// Creates `base/name` (or `-2`, `-3`… when taken) and takes its lock, in one step that a kill
    /// cannot leave half done: a folder that holds no `config.toml` and whose lock is free is what
    /// a start killed before writing its configuration left behind, and is taken over instead of
    /// being skipped (so that the same command run again gets the same name). A folder whose lock
    /// another process holds, or that has its configuration, is taken.
    pub fn create_locked(base: &Path, name: &str) -> Result<(Self, RunLock)> {
        std::fs::create_dir_all(base).map_err(|e| Error::io(base, e))?;
        for k in 1.. {
            let path = if k == 1 { base.join(name) } else { base.join(format!("{name}-{k}")) };
            let created = match std::fs::create_dir(&path) {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if !path.is_dir() || path.join(CONFIG_FILE).exists() {
                        continue;
                    }
                    false
                }
                Err(e) => return Err(Error::io(path, e)),
            };
            let dir = RunDir { path };
            let lock = match dir.lock() {
                Ok(lock) => lock,
                Err(e) if created => return Err(e),
                Err(_) => continue,
            };
            // under the lock: a folder another start completed meanwhile is not ours
            if dir.file(CONFIG_FILE).exists() {
                continue;
            }
            return Ok((dir, lock));
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

    /// Takes the run folder's lock, or fails at once naming the process that holds it. With the
    /// lock held, the temporary files that a killed writer left behind are removed.
    pub fn lock(&self) -> Result<RunLock> {
        use std::fs::TryLockError;
        let path = self.file(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                let holder = holder.trim();
                let holder =
                    if holder.is_empty() { "another process".to_string() } else { format!("process {holder}") };
                return Err(Error::format(
                    &self.path,
                    format!("run folder is in use by {holder} (lock {LOCK_FILE}); one run folder has one writer"),
                ));
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        let pid = std::process::id().to_string();
        file.set_len(0)
            .and_then(|()| file.write_all(pid.as_bytes()))
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::io(&path, e))?;
        self.remove_temporaries()?;
        Ok(RunLock { _file: file })
    }

    /// Removes the `.NAME.tmp-PID` files of atomic writes that a kill cut short.
    fn remove_temporaries(&self) -> Result<()> {
        let entries = std::fs::read_dir(&self.path).map_err(|e| Error::io(&self.path, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.contains(".tmp-") {
                std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
            }
        }
        Ok(())
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
        let line = serde_json::to_string(m).expect("metrics always serialise") + "\n";
        // half a line, as a kill inside the write would leave it
        let half = line.len() / 2;
        f.write_all(&line.as_bytes()[..half]).map_err(|e| Error::io(&path, e))?;
        crate::base::failpoint::failpoint("metrics-half-written");
        f.write_all(&line.as_bytes()[half..]).and_then(|()| f.sync_data()).map_err(|e| Error::io(&path, e))
    }

    pub fn read_metrics(&self) -> Result<Vec<EpochMetrics>> {
        Ok(self.read_metrics_lines()?.into_iter().map(|(m, _)| m).collect())
    }

    /// Each metrics line parsed, beside its text as stored.
    fn read_metrics_lines(&self) -> Result<Vec<(EpochMetrics, String)>> {
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
                Ok(m) => metrics.push((m, line.to_string())),
                Err(_) if i + 1 == lines.len() && !text.ends_with('\n') => {}
                Err(e) => return Err(Error::format(&path, format!("line {}: {e}", i + 1))),
            }
        }
        Ok(metrics)
    }

    /// Keeps only the metrics lines of epochs `1..=epoch`, byte for byte as they were written
    /// (rewritten atomically, and only when a line goes).
    pub fn truncate_metrics(&self, epoch: usize) -> Result<()> {
        let path = self.file(METRICS_FILE);
        let lines = self.read_metrics_lines()?;
        let complete = std::fs::read(&path).map(|b| b.ends_with(b"\n") || b.is_empty()).unwrap_or(false);
        if complete && lines.iter().all(|(m, _)| m.epoch <= epoch) {
            return Ok(());
        }
        let kept: String = lines.into_iter().filter(|(m, _)| m.epoch <= epoch).map(|(_, line)| line + "\n").collect();
        write_atomically(&path, kept.as_bytes())
    }
}

/// The schedule that the finished run in `dir` followed: its first learning rate, the epochs
/// after which it lowered the rate and its number of epochs (`--schedule-from`, `schedule_of`).
pub fn followed_schedule(dir: &Path) -> Result<crate::train::metrics::FollowedSchedule> {
    let run = RunDir::open(dir)?;
    if !run.file(SUMMARY_FILE).is_file() {
        return Err(Error::format(
            dir,
            format!("the run has not finished (no {SUMMARY_FILE}); expected a finished run"),
        ));
    }
    let summary: Summary = run.read_json(SUMMARY_FILE)?;
    if summary.stop == StopReason::Diverged {
        return Err(Error::format(
            dir,
            format!(
                "the run diverged after {} epochs; expected a run whose schedule is worth following",
                summary.epochs
            ),
        ));
    }
    crate::train::metrics::FollowedSchedule::of(&run.read_metrics()?)
        .ok_or_else(|| Error::format(run.file(METRICS_FILE), "no epochs; expected a finished run's metrics"))
}
