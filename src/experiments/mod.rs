//! Experiments as files: a table of the paper described cell by cell (`experiments/*.toml`), and
//! `dfa reproduce`, which runs the cells (resumably, several at a time) and hands the finished
//! runs to [`crate::experiments::tables`].
//!
//! A cell's configuration is the experiment's `[defaults]` with the cell's `config` on top,
//! read as a [`TrainConfig`] (unknown fields are errors), with the seed, and `--max-epochs` for a
//! shortened protocol. Its runs live in `RUNS/<experiment>[-maxN]/<cell id>/seed<k>/`, ordinary
//! run folders: a finished run (with `summary.json`) is reused, an interrupted one resumes from
//! its checkpoint, so killing `dfa reproduce` loses at most the epochs in progress.

pub mod bench;
pub mod reproduce;
pub mod shard;
pub mod slurm;
pub mod status;
pub mod tables;

use crate::base::error::{Error, Result};
use crate::data::{self, Dataset};
use crate::train::apply_subsets;
use crate::train::config::TrainConfig;
use crate::train::record::{self, Observer, RunDir, Summary};
use serde::Deserialize;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The training error a table shows in brackets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BracketError {
    #[default]
    Train,
    Batch,
}

/// An experiment file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    pub name: String,
    pub title: String,
    /// Seeds per cell unless the cell or `--seeds` says otherwise (seeds are 1, 2, …).
    pub seeds: usize,
    /// Epochs a run is expected to take (for balancing `--shard`s; default: `max_epochs`).
    #[serde(default)]
    pub expected_epochs: Option<usize>,
    /// Training error (%) above which a cell shows it in brackets.
    pub bracket_above: f64,
    /// Which training error the brackets show (`train`: the full pass after the last epoch;
    /// `batch`: the error counted on its mini-batches, what the paper's code reports).
    #[serde(default)]
    pub bracket_error: BracketError,
    /// A run that diverged, or stopped with a training error (%) above this, did not converge.
    pub nonconvergence_train_error: f64,
    /// Column order of the table.
    pub columns: Vec<String>,
    /// A paragraph printed under the title (sources of the paper numbers, the protocol).
    #[serde(default)]
    pub caption: Option<String>,
    /// Configuration fields shared by every cell.
    #[serde(default)]
    pub defaults: toml::Table,
    pub cells: Vec<Cell>,
    /// Pictures drawn from the first seed's runs after the table (`dfa reproduce` writes them
    /// next to the table).
    #[serde(default)]
    pub figures: Vec<Figure>,
}

/// A picture of learning curves of some cells' first-seed runs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Figure {
    /// File name in the results folder (`.png` or `.svg`).
    pub file: String,
    /// Cell ids, in legend order.
    pub cells: Vec<String>,
    /// Legend labels (default: the cell ids).
    #[serde(default)]
    pub labels: Vec<String>,
    /// `train`, `test` or `both`.
    #[serde(default = "both")]
    pub curves: crate::report::plots::Curves,
    #[serde(default)]
    pub log: bool,
    /// `curves` (learning curves, the default) or `tsne` (t-SNE panels of the cells' features:
    /// a row per cell, a panel per layer; the paper's Fig. 3).
    #[serde(default)]
    pub kind: FigureKind,
    /// t-SNE: the first N test images.
    #[serde(default = "tsne_points")]
    pub points: usize,
    /// t-SNE: the layers (0 = input; default: the input and every hidden layer).
    #[serde(default)]
    pub layers: Vec<usize>,
}

/// What a figure shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FigureKind {
    #[default]
    Curves,
    Tsne,
    /// Each cell's final test error against the mean alignment angle of its hidden layers (the
    /// last epoch's measurements), both means over its finished seeds, one panel per column.
    Alignment,
}

fn tsne_points() -> usize {
    2000
}

fn both() -> crate::report::plots::Curves {
    crate::report::plots::Curves::Both
}

/// One cell of the table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cell {
    pub id: String,
    pub row: String,
    pub column: String,
    /// The paper's test error (%): mean and standard deviation; absent where the paper has a dash.
    #[serde(default)]
    pub paper: Option<[f64; 2]>,
    /// The paper's training error (%) in brackets, where it gives one.
    #[serde(default)]
    pub paper_train: Option<f64>,
    /// Configuration fields of this cell, over the defaults.
    #[serde(default)]
    pub config: toml::Table,
    /// This cell's `nonconvergence_train_error` (default: the experiment's).
    #[serde(default)]
    pub nonconvergence_train_error: Option<f64>,
    /// Seeds of this cell (default: the experiment's; `--seeds` overrides both).
    #[serde(default)]
    pub seeds: Option<usize>,
    /// Epochs its runs are expected to take (for balancing `--shard`s).
    #[serde(default)]
    pub expected_epochs: Option<usize>,
    /// The id of a cell whose run (same seed) this cell continues (`init_from`): it runs after
    /// that cell, and selecting this cell selects that one too.
    #[serde(default)]
    pub after: Option<String>,
    /// The id of a cell whose run (same seed) sets this cell's learning-rate schedule: its first
    /// rate, the epochs after which it lowered the rate (`halve_at`) and its number of epochs
    /// (`max_epochs`, at most this cell's) — e.g. the paper's DO protocol, a run on a validation
    /// split whose "learning rate with decay and training time" a run on all the data then
    /// follows. It runs after that cell, and selecting this cell selects that one too.
    #[serde(default)]
    pub schedule_of: Option<String>,
}

impl Cell {
    /// The cell this one depends on (`after` or `schedule_of`), which runs first on the same shard.
    pub fn source(&self) -> Option<&str> {
        self.after.as_deref().or(self.schedule_of.as_deref())
    }
}

impl Experiment {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let exp: Experiment = toml::from_str(&text).map_err(|e| {
            let why = crate::base::io::toml_error(&e, &text);
            Error::config(path.display().to_string(), format!("not a valid experiment file: {why}"))
        })?;
        let in_file = |cell: &Cell, why: String| Error::config(format!("{}: cell '{}'", path.display(), cell.id), why);
        for cell in &exp.cells {
            exp.cell_config(cell, 1, None).map_err(|e| in_file(cell, e.to_string()))?;
            if exp.cells.iter().filter(|c| c.id == cell.id).count() > 1 {
                return Err(in_file(cell, "two cells have this id".into()));
            }
        }
        for cell in &exp.cells {
            if cell.after.is_some() && cell.schedule_of.is_some() {
                return Err(in_file(cell, "has both 'after' and 'schedule_of'; expected one of them".into()));
            }
            if let Some(source) = &cell.schedule_of {
                // checked here, not hours later when the source has trained
                let patience = exp.cell_config(cell, 1, None).map_err(|e| in_file(cell, e.to_string()))?.patience;
                if patience > 0 {
                    return Err(in_file(
                        cell,
                        format!(
                            "follows the halvings of '{source}' (schedule_of), which replace the adaptive rule; \
                             expected patience = 0, got {patience}"
                        ),
                    ));
                }
            }
            // `after` / `schedule_of` must name a cell, without cycles
            let mut seen = vec![cell.id.as_str()];
            let mut at = cell;
            while let Some(source) = at.source() {
                let key = if at.after.is_some() { "after" } else { "schedule_of" };
                at = exp.cells.iter().find(|c| c.id == source).ok_or_else(|| {
                    in_file(cell, format!("'{key}' names '{source}', which is not a cell of this experiment"))
                })?;
                if seen.contains(&at.id.as_str()) {
                    return Err(in_file(cell, format!("'{key}' makes a cycle: {} → {}", seen.join(" → "), at.id)));
                }
                seen.push(&at.id);
            }
            if let Some(source) = cell.schedule_of.as_deref().and_then(|id| exp.cells.iter().find(|c| c.id == id)) {
                let (mine, its) = (exp.seeds_of(cell, None), exp.seeds_of(source, None));
                if mine > its {
                    return Err(in_file(
                        cell,
                        format!(
                            "runs {mine} seeds but '{}' only {its}; each seed follows the same seed of the cell it \
                             names in schedule_of",
                            source.id
                        ),
                    ));
                }
            }
        }
        Ok(exp)
    }

    /// How many cells a cell continues, transitively (0: it starts from scratch).
    pub fn stage(&self, cell: &Cell) -> usize {
        match cell.source() {
            Some(id) => self.cells.iter().find(|c| c.id == id).map_or(0, |c| 1 + self.stage(c)),
            None => 0,
        }
    }

    /// The full configuration of `cell` for `seed` (shortened to `max_epochs` if given). A cell
    /// that continues another gets `init_from` in [`Experiment::tasks`].
    pub fn cell_config(&self, cell: &Cell, seed: u64, max_epochs: Option<usize>) -> Result<TrainConfig> {
        let mut table = self.defaults.clone();
        for (k, v) in &cell.config {
            table.insert(k.clone(), v.clone());
        }
        let mut config: TrainConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e| Error::config(format!("cell '{}'", cell.id), e.to_string()))?;
        config.seed = seed;
        if let Some(n) = max_epochs {
            config.max_epochs = config.max_epochs.min(n);
        }
        config.validate()?;
        Ok(config)
    }

    /// The cells whose id matches any of `patterns` (all cells when `patterns` is empty).
    pub fn select(&self, patterns: &[String]) -> Result<Vec<&Cell>> {
        let globs = patterns
            .iter()
            .map(|p| glob::Pattern::new(p).map_err(|e| Error::config("--cells", format!("'{p}': {e}"))))
            .collect::<Result<Vec<_>>>()?;
        let mut wanted: Vec<&str> = self
            .cells
            .iter()
            .filter(|c| globs.is_empty() || globs.iter().any(|g| g.matches(&c.id)))
            .map(|c| c.id.as_str())
            .collect();
        // the cells that selected cells continue
        let mut k = 0;
        while k < wanted.len() {
            let cell = self.cells.iter().find(|c| c.id == wanted[k]).expect("a cell id");
            if let Some(source) = cell.source().filter(|s| !wanted.contains(s)) {
                wanted.push(source);
            }
            k += 1;
        }
        let cells: Vec<&Cell> = self.cells.iter().filter(|c| wanted.contains(&c.id.as_str())).collect();
        if cells.is_empty() {
            let ids: Vec<&str> = self.cells.iter().map(|c| c.id.as_str()).collect();
            return Err(Error::config(
                "--cells",
                format!("{patterns:?} match no cell; the cells are: {}", ids.join(", ")),
            ));
        }
        Ok(cells)
    }

    /// The seeds of a cell: `--seeds` if given, else the cell's, else the experiment's.
    pub fn seeds_of(&self, cell: &Cell, seeds: Option<usize>) -> usize {
        seeds.or(cell.seeds).unwrap_or(self.seeds)
    }

    /// The runs of `cells` for their seeds (`1..=`[`Experiment::seeds_of`]) under `runs_dir`,
    /// grouped in stages: a stage's runs start from those of the stages before it (`after`).
    pub fn tasks(
        &self,
        cells: &[&Cell],
        seeds: Option<usize>,
        max_epochs: Option<usize>,
        runs_dir: &Path,
    ) -> Result<Vec<Vec<Task>>> {
        let mut stages: Vec<Vec<Task>> = Vec::new();
        for cell in cells {
            let stage = self.stage(cell);
            if stages.len() <= stage {
                stages.resize_with(stage + 1, Vec::new);
            }
            for seed in 1..=self.seeds_of(cell, seeds) as u64 {
                let mut config = self.cell_config(cell, seed, max_epochs)?;
                if let Some(source) = &cell.after {
                    config.init_from = Some(runs_dir.join(source).join(format!("seed{seed}")));
                }
                let schedule_from = cell.schedule_of.as_ref().map(|s| runs_dir.join(s).join(format!("seed{seed}")));
                let dir = runs_dir.join(&cell.id).join(format!("seed{seed}"));
                stages[stage].push(Task { cell: cell.id.clone(), seed, config, dir, schedule_from });
            }
        }
        stages.retain(|s| !s.is_empty());
        Ok(stages)
    }

    /// Where the runs of this experiment go (a shortened protocol gets its own folder).
    pub fn runs_dir(&self, base: &Path, max_epochs: Option<usize>) -> PathBuf {
        match max_epochs {
            Some(n) => base.join(format!("{}-max{n}", self.name)),
            None => base.join(&self.name),
        }
    }
}

/// One run of a cell.
#[derive(Clone, Debug)]
pub struct Task {
    pub cell: String,
    pub seed: u64,
    pub config: TrainConfig,
    pub dir: PathBuf,
    /// The finished run whose schedule this run follows (`schedule_of`), read when it starts.
    pub schedule_from: Option<PathBuf>,
}

/// A finished run of a cell.
#[derive(Clone, Debug)]
pub struct Finished {
    pub cell: String,
    pub seed: u64,
    pub summary: Summary,
    /// Whether this invocation found it finished already.
    pub reused: bool,
}

/// How `reproduce` reports progress (from several threads at once).
pub trait ReproduceObserver: Sync {
    fn run_started(&self, _task: &Task, _resumed_from: Option<usize>) {}
    fn epoch_done(&self, _task: &Task, _metrics: &crate::train::EpochMetrics) {}
    fn run_finished(&self, _finished: &Finished) {}
    /// A line of what is being done (the table, the files written).
    fn message(&self, _text: &str) {}
}

/// Runs every task, `jobs` at a time with `threads` threads each, reusing finished runs and
/// resuming interrupted ones. Each data set is loaded (and preprocessed) once. Stops at the first error.
pub fn reproduce(
    tasks: Vec<Task>,
    data_dir: &Path,
    jobs: usize,
    threads: usize,
    observer: &dyn ReproduceObserver,
) -> Result<Vec<Finished>> {
    if tasks.is_empty() {
        return Ok(Vec::new());
    }
    // every data set (and preprocessing) the tasks use, loaded once
    let mut loaded: Vec<((crate::data::DatasetKind, crate::data::preprocess::Preprocess), Dataset)> = Vec::new();
    for task in &tasks {
        let key = (task.config.dataset, task.config.preprocess);
        if !loaded.iter().any(|(k, _)| *k == key) {
            loaded.push((key, data::load_prepared(key.0, key.1, data_dir)?));
        }
    }
    let queue = Mutex::new(tasks.into_iter().collect::<VecDeque<_>>());
    let results = Mutex::new(Vec::new());
    let failure = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                loop {
                    if failure.lock().expect("lock").is_some() {
                        return;
                    }
                    let Some(mut task) = queue.lock().expect("lock").pop_front() else {
                        return;
                    };
                    task.config.threads = threads;
                    if task.config.data_dir.is_none() {
                        // recorded absolute, so that `dfa eval RUN` finds the data from anywhere
                        task.config.data_dir = Some(std::path::absolute(data_dir).unwrap_or(data_dir.to_path_buf()));
                    }
                    let key = (task.config.dataset, task.config.preprocess);
                    let data = &loaded.iter().find(|(k, _)| *k == key).expect("loaded above").1;
                    match follow_schedule(&mut task).and_then(|()| run_task(&task, data, observer)) {
                        Ok(done) => {
                            observer.run_finished(&done);
                            results.lock().expect("lock").push(done);
                        }
                        Err(e) => {
                            *failure.lock().expect("lock") = Some(e);
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().expect("lock") {
        return Err(e);
    }
    Ok(results.into_inner().expect("lock"))
}

/// Gives a task that follows another run's schedule (`schedule_of`) that run's first rate, its
/// halvings and its length (capped by the task's own `max_epochs`). A task that has finished
/// keeps the schedule its folder records, so that it is reused even where its source has gone.
fn follow_schedule(task: &mut Task) -> Result<()> {
    let Some(source) = &task.schedule_from else { return Ok(()) };
    let what = || format!("cell '{}', seed {}: schedule_of", task.cell, task.seed);
    if task.dir.join(record::SUMMARY_FILE).is_file() {
        let recorded = RunDir::open(&task.dir)?.read_config()?;
        task.config.learning_rate = recorded.learning_rate;
        task.config.halve_at = recorded.halve_at;
        task.config.lr_schedule = recorded.lr_schedule;
        task.config.max_epochs = recorded.max_epochs;
        return Ok(());
    }
    let followed = record::followed_schedule(source).map_err(|e| Error::config(what(), e.to_string()))?;
    followed.apply(&mut task.config);
    task.config.max_epochs = task.config.max_epochs.min(followed.epochs);
    task.config.validate().map_err(|e| Error::config(what(), e.to_string()))
}

struct TaskObserver<'a> {
    task: &'a Task,
    observer: &'a dyn ReproduceObserver,
}

impl Observer for TaskObserver<'_> {
    fn epoch_done(&mut self, metrics: &crate::train::EpochMetrics, _: &crate::train::Progress) {
        self.observer.epoch_done(self.task, metrics);
    }
}

/// Configurations are compared without the thread count, which may differ between invocations
/// (it does not change the numbers: see `docs/math.md`).
fn same_run(a: &TrainConfig, b: &TrainConfig) -> bool {
    TrainConfig { threads: 0, data_dir: None, ..a.clone() } == TrainConfig { threads: 0, data_dir: None, ..b.clone() }
}

fn run_task(task: &Task, data: &Dataset, observer: &dyn ReproduceObserver) -> Result<Finished> {
    let data = apply_subsets(data.clone(), &task.config);
    std::fs::create_dir_all(&task.dir).map_err(|e| Error::io(&task.dir, e))?;
    let dir = RunDir::open_new(&task.dir)?;
    // one writer per run folder, also across processes (shards of a cluster job)
    let _lock = dir.lock()?;
    if task.dir.join(record::CONFIG_FILE).is_file() {
        let recorded = dir.read_config()?;
        if !same_run(&recorded, &task.config) {
            return Err(Error::config(
                task.dir.display().to_string(),
                "this run folder holds a run with another configuration; move it away or choose another --out",
            ));
        }
    } else {
        dir.write_config(&task.config)?;
    }
    let mut trainer = match record::open_run(&dir, task.config.clone(), &data)? {
        record::Opened::Finished(summary) => {
            return Ok(Finished { cell: task.cell.clone(), seed: task.seed, summary: *summary, reused: true });
        }
        record::Opened::Ready { trainer, resumed_after } => {
            observer.run_started(task, resumed_after);
            trainer
        }
    };
    let summary = record::run(&mut trainer, &dir, &mut TaskObserver { task, observer }, None)?
        .ok_or_else(|| Error::config(task.cell.clone(), "the run ended without a summary"))?;
    Ok(Finished { cell: task.cell.clone(), seed: task.seed, summary, reused: false })
}

/// `n` and the noun, plural unless `n` is 1: "1 run", "4 runs".
pub(crate) fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}
