//! `dfa reproduce --status`: where each run of an experiment stands, read from its run folder
//! alone — finished (why it stopped, its errors), started (after which epoch, when it last wrote
//! an epoch: a run still training wrote one within about an epoch's time, an interrupted one
//! did not), or not started — the compute the runs have used, and an estimate of what is left.
//! Nothing is locked or written, so it can watch runs that other processes (shards, Slurm tasks)
//! are training.
//!
//! **What is left** is estimated per unfinished run as epochs to go × seconds per epoch. Epochs to
//! go: to the cell's expected epochs (the cost model of `--shard`, `shard::expected_epochs`), and,
//! as an upper bound, to the run's epoch limit. Seconds per epoch (times threads): the run's own
//! mean where it has trained an epoch; else its epoch's multiply-adds (`shard::epoch_cost`) times
//! the median core-seconds per multiply-add of the runs listed that have epochs. With no epoch
//! anywhere there is no estimate.

use crate::base::error::Result;
use crate::experiments::shard::{epoch_cost, expected_epochs};
use crate::experiments::{Experiment, Task};
use crate::train::EpochMetrics;
use crate::train::record::{CONFIG_FILE, META_FILE, METRICS_FILE, Meta, RunDir, SUMMARY_FILE, Summary};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// How far a run has come.
#[derive(Clone, Debug)]
pub enum RunState {
    /// No run folder, or one without a configuration.
    NotStarted,
    /// Its folder is unreadable (the reason): the other runs are still reported.
    Unreadable(String),
    /// A configuration, perhaps epochs, no summary: training now (or loading its data), or
    /// interrupted (it resumes where it stopped).
    Started {
        /// How long ago its last epoch (before the first: its configuration) was written.
        since_last_epoch: Option<Duration>,
    },
    /// Its summary is written.
    Finished(Box<Summary>),
}

/// One run of a cell and where it stands.
#[derive(Clone, Debug)]
pub struct RunStatus {
    pub cell: String,
    pub seed: u64,
    /// The most epochs the protocol allows it (its folder's `config.toml` once it has one: a
    /// run that follows another's schedule learns its length when it starts).
    pub max_epochs: usize,
    /// The error the stopping rule watches (%): the full training pass's, or the mini-batches'
    /// where the run skips that pass.
    pub full_pass: bool,
    pub state: RunState,
    /// Its last epoch's numbers.
    pub last: Option<EpochMetrics>,
    /// Its own epochs so far (`metrics.jsonl`'s lines; a run that continues another does not
    /// count that run's, as the table's epochs do).
    pub epochs: usize,
    /// Seconds of training and evaluation so far, times the threads it ran on.
    pub core_seconds: f64,
    /// The epochs its cell is expected to train (the cost model of `--shard`).
    pub expected_epochs: usize,
    /// The training multiply-adds of one of its epochs (0 where the net cannot be costed).
    pub epoch_cost: u64,
}

/// The status of every run of `stages` (the runs `dfa reproduce` would train of `exp`). A run
/// folder that cannot be read is reported as such, not as an error of the whole status.
pub fn runs_status(exp: &Experiment, stages: &[Vec<Task>]) -> Vec<RunStatus> {
    let now = SystemTime::now();
    let mut out = Vec::new();
    for task in stages.iter().flatten() {
        let mut status = RunStatus {
            cell: task.cell.clone(),
            seed: task.seed,
            max_epochs: task.config.max_epochs,
            full_pass: task.config.full_pass,
            state: RunState::NotStarted,
            last: None,
            epochs: 0,
            core_seconds: 0.0,
            expected_epochs: expected_epochs(exp, task),
            epoch_cost: epoch_cost(&task.config).unwrap_or(0),
        };
        if task.dir.join(CONFIG_FILE).is_file()
            && let Err(e) = read_run(&task.dir, now, &mut status)
        {
            status.state = RunState::Unreadable(e.to_string());
        }
        out.push(status);
    }
    out
}

/// Fills `status` from the run folder `path` (which has a configuration).
fn read_run(path: &Path, now: SystemTime, status: &mut RunStatus) -> Result<()> {
    let dir = RunDir::open(path)?;
    let config = dir.read_config()?;
    status.max_epochs = config.max_epochs;
    status.full_pass = config.full_pass;
    let metrics = if dir.file(METRICS_FILE).is_file() { dir.read_metrics()? } else { Vec::new() };
    let threads = if dir.file(META_FILE).is_file() { dir.read_json::<Meta>(META_FILE)?.threads.max(1) } else { 1 };
    status.core_seconds = metrics.iter().map(|m| m.seconds + m.eval_seconds).sum::<f64>() * threads as f64;
    status.epochs = metrics.len();
    status.last = metrics.last().cloned();
    status.state = if dir.file(SUMMARY_FILE).is_file() {
        RunState::Finished(Box::new(dir.read_json(SUMMARY_FILE)?))
    } else {
        // the last sign of life: its last epoch, or its configuration before the first
        let newest = if metrics.is_empty() { CONFIG_FILE } else { METRICS_FILE };
        let written = std::fs::metadata(dir.file(newest)).and_then(|m| m.modified()).ok();
        RunState::Started { since_last_epoch: written.and_then(|t| now.duration_since(t).ok()) }
    };
    Ok(())
}

/// Core-seconds left to train the unfinished runs (see the module's note): to their cells'
/// expected epochs, and to their epoch limits; `None` where no listed run has an epoch to
/// measure by, or an unfinished run can be measured neither by its own epochs nor by its cost.
pub fn remaining(runs: &[RunStatus]) -> Option<(f64, f64)> {
    let mut per_mac: Vec<f64> = runs
        .iter()
        .filter(|r| !matches!(r.state, RunState::Unreadable(_)))
        .filter(|r| r.epochs > 0 && r.epoch_cost > 0 && r.core_seconds > 0.0)
        .map(|r| r.core_seconds / r.epochs as f64 / r.epoch_cost as f64)
        .collect();
    per_mac.sort_by(f64::total_cmp);
    let median = match per_mac.len() {
        0 => None,
        n if n % 2 == 1 => Some(per_mac[n / 2]),
        n => Some(0.5 * (per_mac[n / 2 - 1] + per_mac[n / 2])),
    };
    let (mut expected, mut most) = (0.0, 0.0);
    for r in runs {
        if matches!(r.state, RunState::Finished(_) | RunState::Unreadable(_)) {
            continue;
        }
        let per_epoch = if r.epochs > 0 && r.core_seconds > 0.0 {
            r.core_seconds / r.epochs as f64
        } else if r.epoch_cost > 0 {
            median? * r.epoch_cost as f64
        } else {
            return None;
        };
        expected += r.expected_epochs.saturating_sub(r.epochs) as f64 * per_epoch;
        most += r.max_epochs.saturating_sub(r.epochs) as f64 * per_epoch;
    }
    Some((expected, most))
}

/// `5 s`, `12 min`, `3.4 h`, `2.1 d`.
fn ago(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.0} s")
    } else if s < 3600.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 86400.0 {
        format!("{:.1} h", s / 3600.0)
    } else {
        format!("{:.1} d", s / 86400.0)
    }
}

/// The status as a text table, a line per run, and a summary line first.
pub fn render(experiment: &str, runs_dir: &Path, runs: &[RunStatus]) -> String {
    let count = |f: fn(&RunState) -> bool| runs.iter().filter(|r| f(&r.state)).count();
    let finished = count(|s| matches!(s, RunState::Finished(_)));
    let started = count(|s| matches!(s, RunState::Started { .. }));
    let unreadable = count(|s| matches!(s, RunState::Unreadable(_)));
    // a shard's runs may interleave cells
    let cells = runs.iter().map(|r| r.cell.as_str()).collect::<std::collections::BTreeSet<_>>().len();
    let hours = runs.iter().map(|r| r.core_seconds).sum::<f64>() / 3600.0;
    let left = if finished + unreadable == runs.len() {
        String::new()
    } else {
        match remaining(runs) {
            Some((expected, most)) => format!(
                "; about {:.1} core-hours left to the cells' expected epochs, at most {:.1} to every run's epoch limit",
                expected / 3600.0,
                most / 3600.0
            ),
            None => "; no estimate of what is left until a run has trained an epoch".to_string(),
        }
    };
    let mut text = format!(
        "{experiment} in {}: {} of {}: {finished} finished, {started} started, {} not started{}; \
         {hours:.1} core-hours of training and evaluation so far{left}\n",
        runs_dir.display(),
        super::count(runs.len(), "run"),
        super::count(cells, "cell"),
        runs.len() - finished - started - unreadable,
        if unreadable > 0 { format!(", {unreadable} UNREADABLE") } else { String::new() },
    );
    if !runs_dir.is_dir() {
        text.push_str(
            "(no such folder: no run has started there; the runs folder depends on --out and --max-epochs)\n",
        );
    }
    let width = runs.iter().map(|r| r.cell.len()).max().unwrap_or(4).max(4);
    let _ = writeln!(
        text,
        "{:width$}  {:>4}  {:<24}  {:>7}  {:>7}  {:>7}  {:>8}  {:>8}  last epoch",
        "cell", "seed", "state", "epochs", "train %", "test %", "rate", "s/epoch"
    );
    for r in runs {
        let state = match &r.state {
            RunState::NotStarted => "not started".to_string(),
            RunState::Unreadable(_) => "UNREADABLE".to_string(),
            RunState::Started { .. } => "started".to_string(),
            RunState::Finished(s) => format!("finished: {}", s.stop.as_str()),
        };
        let epochs = match r.state {
            RunState::Finished(_) => r.epochs.to_string(),
            _ => format!("{}/{}", r.epochs, r.max_epochs),
        };
        let (train, test, rate, per_epoch) = match &r.last {
            Some(m) => (
                format!("{:.3}", m.stopping_error(r.full_pass)),
                format!("{:.3}", m.test_error),
                format!("{:.2e}", m.learning_rate),
                format!("{:.1}", (m.seconds + m.eval_seconds)),
            ),
            None => Default::default(),
        };
        let since = match &r.state {
            RunState::Started { since_last_epoch: Some(d) } if r.epochs == 0 => {
                format!("none yet (set up {} ago)", ago(*d))
            }
            RunState::Started { since_last_epoch: Some(d) } => format!("{} ago", ago(*d)),
            RunState::Unreadable(why) => why.clone(),
            _ => String::new(),
        };
        let _ = writeln!(
            text,
            "{:width$}  {:>4}  {:<24}  {:>7}  {:>7}  {:>7}  {:>8}  {:>8}  {}",
            r.cell, r.seed, state, epochs, train, test, rate, per_epoch, since
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(state: RunState, epochs: usize, core_seconds: f64, cost: u64, expected: usize, max: usize) -> RunStatus {
        RunStatus {
            cell: "c".into(),
            seed: 1,
            max_epochs: max,
            full_pass: true,
            state,
            last: None,
            epochs,
            core_seconds,
            expected_epochs: expected,
            epoch_cost: cost,
        }
    }

    fn started() -> RunState {
        RunState::Started { since_last_epoch: None }
    }

    /// Each unfinished run: epochs to go × its own seconds per epoch, or, before its first
    /// epoch, its cost × the median seconds per multiply-add of the runs that have epochs.
    #[test]
    fn what_is_left_is_epochs_to_go_times_seconds_per_epoch() {
        let runs = [
            // 10 s per epoch, 20 epochs to its expected 30, 290 to its limit
            run(started(), 10, 100.0, 1000, 30, 300),
            // past its expected epochs: nothing expected, 260 epochs of 12 s to its limit
            run(started(), 40, 480.0, 1000, 30, 300),
            // no epoch yet: twice the cost, median 0.011 s per unit → 22 s per epoch
            run(RunState::NotStarted, 0, 0.0, 2000, 50, 100),
            // unreadable: not counted, not measured by
            run(RunState::Unreadable("x".into()), 5, 5000.0, 1000, 30, 300),
        ];
        let (expected, most) = remaining(&runs).unwrap();
        assert!((expected - (200.0 + 0.0 + 50.0 * 22.0)).abs() < 1e-9, "{expected}");
        assert!((most - (2900.0 + 260.0 * 12.0 + 100.0 * 22.0)).abs() < 1e-9, "{most}");
        // nothing to measure by
        assert_eq!(remaining(&runs[2..3]), None);
        // a run with neither epochs nor a cost cannot be estimated
        let uncosted = [runs[0].clone(), run(RunState::NotStarted, 0, 0.0, 0, 50, 100)];
        assert_eq!(remaining(&uncosted), None);
    }
}
