//! `dfa reproduce`: an experiment file's runs, then its table (Markdown and CSV beside the
//! paper's numbers) and figures.

use crate::base::error::{Error, Result};
use crate::base::io::write_atomically;
use crate::data;
use crate::experiments::shard::{self, Shard};
use crate::experiments::slurm::{Invocation, SlurmOptions};
use crate::experiments::tables::{Aggregate, RunOutcome, TableResults};
use crate::experiments::{BracketError, Experiment, FigureKind, ReproduceObserver};
use crate::report::plots::{RunCurves, plot};
use crate::train::record::{self, CHECKPOINT_FILE, METRICS_FILE, RunDir, SUMMARY_FILE, Summary};
use crate::train::{EpochMetrics, resolve_threads};
use std::path::{Path, PathBuf};

/// What `dfa reproduce` is asked for.
#[derive(Clone, Debug)]
pub struct ReproduceOptions {
    /// A name in `experiments` (`table1`) or a path to a TOML file.
    pub table: String,
    pub experiments: PathBuf,
    /// Seeds per cell (default: the experiment's).
    pub seeds: Option<usize>,
    /// Globs of the cells to run (all when empty).
    pub cells: Vec<String>,
    /// A shortened protocol: at most this many epochs per run.
    pub max_epochs: Option<usize>,
    pub jobs: usize,
    /// Threads per run (default: the cores divided among the jobs).
    pub threads: Option<usize>,
    pub out: PathBuf,
    pub results: PathBuf,
    pub data_dir: Option<PathBuf>,
    /// Only this share of the runs, and no table (`--shard i/n`, see `experiments::shard`).
    pub shard: Option<Shard>,
    /// No training: the table and figures from the finished runs only.
    pub collect: bool,
    /// No training and no table: where each run stands (`experiments::status`).
    pub status: bool,
    /// Write (and maybe submit) Slurm scripts instead of running (`--slurm`).
    pub slurm: Option<SlurmOptions>,
}

/// Runs the experiment's selected cells (reusing finished runs, resuming interrupted ones), then
/// writes its table and figures from every finished run in the runs folder. Says what it does
/// through `observer.message`.
pub fn reproduce_table(opts: &ReproduceOptions, observer: &dyn ReproduceObserver) -> Result<()> {
    let path = if opts.table.ends_with(".toml") {
        PathBuf::from(&opts.table)
    } else {
        opts.experiments.join(format!("{}.toml", opts.table))
    };
    let exp = Experiment::load(&path)?;
    if opts.seeds == Some(0) || opts.jobs == 0 || opts.max_epochs == Some(0) {
        return Err(Error::Usage("--seeds, --jobs and --max-epochs must be at least 1".into()));
    }
    let selected = exp.select(&opts.cells)?;
    if let Some(cell) = selected.iter().find(|c| exp.seeds_of(c, opts.seeds) == 0) {
        return Err(Error::config(format!("{}: cell '{}'", path.display(), cell.id), "0 seeds; expected at least 1"));
    }
    let runs_dir = exp.runs_dir(&opts.out, opts.max_epochs);
    let threads = opts.threads.unwrap_or_else(|| (resolve_threads(0) / opts.jobs).max(1));
    let stages = exp.tasks(&selected, opts.seeds, opts.max_epochs, &runs_dir)?;
    if let Some(slurm) = &opts.slurm {
        let invocation = Invocation {
            out: &opts.out,
            results: &opts.results,
            data_dir: opts.data_dir.as_deref(),
            seeds: opts.seeds,
            max_epochs: opts.max_epochs,
            cells: &opts.cells,
        };
        return crate::experiments::slurm::write_scripts(invocation, &path, &exp, &stages, slurm, observer);
    }
    let stages = match opts.shard {
        Some(shard) => shard::select(&exp, stages, shard)?,
        None => stages,
    };
    if opts.status {
        let runs = crate::experiments::status::runs_status(&exp, &stages);
        observer.message(crate::experiments::status::render(&exp.name, &runs_dir, &runs).trim_end());
        return Ok(());
    }
    let runs: usize = stages.iter().map(Vec::len).sum();
    let data_dir = data::resolve_data_dir(opts.data_dir.as_deref());
    if !opts.collect {
        observer.message(&format!(
            "{}{}: {} of {}, {} at a time with {} each{}",
            exp.name,
            opts.shard.map_or(String::new(), |s| format!(" shard {s}")),
            super::count(runs, "run"),
            super::count(selected.len(), "cell"),
            opts.jobs,
            super::count(threads, "thread"),
            opts.max_epochs.map_or(String::new(), |n| format!(", SHORTENED PROTOCOL: at most {n} epochs"))
        ));
        for tasks in stages {
            crate::experiments::reproduce(tasks, &data_dir, opts.jobs, threads, observer)?;
        }
    }
    if let Some(shard) = opts.shard {
        observer.message(&format!(
            "shard {shard} done: its runs are in {}; the table comes from all shards' runs (dfa reproduce {} --collect)",
            runs_dir.display(),
            exp.name
        ));
        return Ok(());
    }
    let table = table(&exp, &runs_dir, opts.seeds, opts.max_epochs, &data_dir)?;
    let markdown = table.markdown();
    observer.message(&format!("\n{markdown}"));
    let stem = match opts.max_epochs {
        Some(n) => format!("{}-max{n}", exp.name),
        None => exp.name.clone(),
    };
    let md = opts.results.join(format!("{stem}.md"));
    let csv = opts.results.join(format!("{stem}.csv"));
    write_atomically(&md, markdown.as_bytes())?;
    write_atomically(&csv, table.csv().as_bytes())?;
    observer.message(&format!("wrote {} and {}", md.display(), csv.display()));
    let figures = Figures { exp: &exp, runs_dir: &runs_dir, data_dir: &data_dir, seeds: opts.seeds, threads, observer };
    figures.draw(&opts.results, opts.max_epochs)
}

/// The table: every cell with finished runs in this runs folder (not only this invocation's).
fn table<'a>(
    exp: &'a Experiment,
    runs_dir: &Path,
    seeds: Option<usize>,
    max_epochs: Option<usize>,
    data_dir: &Path,
) -> Result<TableResults<'a>> {
    let mut cells = Vec::new();
    for cell in &exp.cells {
        let mut outcomes = Vec::new();
        for seed in 1..=exp.seeds_of(cell, seeds) as u64 {
            let dir = runs_dir.join(&cell.id).join(format!("seed{seed}"));
            if dir.join(SUMMARY_FILE).is_file() {
                let run = RunDir::open(&dir)?;
                let s: Summary = run.read_json(SUMMARY_FILE)?;
                let batch_error = run.read_metrics()?.last().map_or(s.final_train_error, |m| m.batch_error);
                let bracket_error = match exp.bracket_error {
                    BracketError::Train => s.final_train_error,
                    BracketError::Batch => batch_error,
                };
                // a run without the full training pass (`full_pass = false`) is judged on the
                // error counted on its last epoch's mini-batches, as its stopping rule was
                let train_error = if s.config.full_pass { s.final_train_error } else { batch_error };
                outcomes.push(RunOutcome {
                    seed,
                    test_error: s.final_test_error,
                    train_error,
                    bracket_error,
                    epochs: s.epochs,
                    stop: s.stop,
                });
            }
        }
        let threshold = cell.nonconvergence_train_error.unwrap_or(exp.nonconvergence_train_error);
        cells.push((cell, Aggregate::of(&outcomes, threshold)));
    }
    // what the reader must know of every data set the cells use
    let mut notes = Vec::new();
    let mut datasets = Vec::new();
    for cell in &exp.cells {
        let dataset = exp.cell_config(cell, 1, None)?.dataset;
        if !datasets.contains(&dataset) {
            datasets.push(dataset);
            notes.extend(data::notes(dataset, data_dir));
        }
    }
    Ok(TableResults { experiment: exp, cells, max_epochs, notes })
}

/// The mean over the hidden layers of `delta_angle_mean` in the last epoch that measured the
/// alignment of the run in `dir` (each of that epoch's measurements weighs the same).
pub fn mean_angle(dir: &Path) -> Result<Option<f64>> {
    let metrics = RunDir::open(dir)?.read_metrics()?;
    let Some(last) = metrics.iter().rfind(|m| !m.alignment.is_empty()) else { return Ok(None) };
    let angles: Vec<f64> =
        last.alignment.iter().flat_map(|r| r.layers.iter().filter_map(|l| l.delta_angle_mean)).collect();
    Ok((!angles.is_empty()).then(|| angles.iter().sum::<f64>() / angles.len() as f64))
}

/// The figures of an experiment, drawn from the first seed's runs (the alignment scatter: from
/// every finished seed of the table).
struct Figures<'a> {
    exp: &'a Experiment,
    runs_dir: &'a Path,
    data_dir: &'a Path,
    /// `--seeds`: the seeds of the table ([`Experiment::seeds_of`]).
    seeds: Option<usize>,
    threads: usize,
    observer: &'a dyn ReproduceObserver,
}

impl Figures<'_> {
    fn draw(&self, results: &Path, max_epochs: Option<usize>) -> Result<()> {
        for figure in &self.exp.figures {
            let stem = Path::new(&figure.file);
            let file = match max_epochs {
                Some(n) => format!(
                    "{}-max{n}.{}",
                    stem.file_stem().and_then(|s| s.to_str()).unwrap_or("figure"),
                    stem.extension().and_then(|s| s.to_str()).unwrap_or("png")
                ),
                None => figure.file.clone(),
            };
            let out = results.join(file);
            let drawn = match figure.kind {
                FigureKind::Tsne => self.tsne(figure, &out)?,
                FigureKind::Alignment => self.alignment(figure, &out)?,
                FigureKind::Curves => self.curves(figure, &out)?,
            };
            if drawn {
                self.observer.message(&format!("wrote {}", out.display()));
            }
        }
        Ok(())
    }

    /// Test error against mean alignment angle (see [`FigureKind::Alignment`]), each a mean over
    /// the cell's finished seeds among the table's (in any order: shards finish them so); cells
    /// without a finished run with angles are left out.
    fn alignment(&self, figure: &crate::experiments::Figure, out: &Path) -> Result<bool> {
        let mut points = Vec::new();
        for (i, id) in figure.cells.iter().enumerate() {
            let Some(cell) = self.exp.cells.iter().find(|c| &c.id == id) else { continue };
            let (mut errors, mut angles) = (Vec::new(), Vec::new());
            for seed in 1..=self.exp.seeds_of(cell, self.seeds) {
                let dir = self.runs_dir.join(id).join(format!("seed{seed}"));
                if !dir.join(SUMMARY_FILE).is_file() {
                    continue;
                }
                errors.push(RunDir::open(&dir)?.read_json::<Summary>(SUMMARY_FILE)?.final_test_error);
                angles.extend(mean_angle(&dir)?);
            }
            if errors.is_empty() || angles.is_empty() {
                continue;
            }
            let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
            points.push(crate::report::plots::ScatterPoint {
                panel: cell.column.clone(),
                label: figure.labels.get(i).cloned().unwrap_or_else(|| cell.row.clone()),
                angle: mean(&angles),
                error: mean(&errors),
            });
        }
        if points.is_empty() {
            return Ok(false);
        }
        crate::report::plots::alignment_scatter(&points, out)?;
        Ok(true)
    }

    fn tsne(&self, figure: &crate::experiments::Figure, out: &Path) -> Result<bool> {
        let mut loaded = Vec::new();
        for (i, id) in figure.cells.iter().enumerate() {
            let dir = self.runs_dir.join(id).join("seed1");
            if dir.join(CHECKPOINT_FILE).is_file() {
                let label = figure.labels.get(i).cloned().unwrap_or_else(|| id.clone());
                let run = record::load_run(
                    &dir,
                    &record::Reopen { data_dir: Some(self.data_dir.to_path_buf()), accept_changes: false },
                )?;
                for note in &run.2.notes {
                    self.observer.message(&format!("note: {note}"));
                }
                loaded.push((label, run));
            }
        }
        let Some((_, (_, _, data))) = loaded.first() else { return Ok(false) };
        let depth = loaded.iter().map(|(_, (_, m, _))| m.net.depth()).min().unwrap_or(1);
        let layers = if figure.layers.is_empty() { (0..depth).collect() } else { figure.layers.clone() };
        let nets: Vec<(String, &crate::layers::Network)> =
            loaded.iter().map(|(label, (_, model, _))| (label.clone(), &model.net)).collect();
        let settings = crate::report::features::TsneSettings::default();
        let say = |m: &str| self.observer.message(m);
        crate::report::features::tsne_figure(
            &nets,
            (&data.test, figure.points),
            &layers,
            settings,
            self.threads,
            out,
            &say,
        )?;
        Ok(true)
    }

    fn curves(&self, figure: &crate::experiments::Figure, out: &Path) -> Result<bool> {
        let mut runs = Vec::new();
        for (i, id) in figure.cells.iter().enumerate() {
            let dir = self.runs_dir.join(id).join("seed1");
            if !dir.join(METRICS_FILE).is_file() {
                continue;
            }
            let label = figure.labels.get(i).cloned().unwrap_or_else(|| id.clone());
            let mut metrics = RunDir::open(&dir)?.read_metrics()?;
            // a run that continues another starts its curve at the source's last epoch
            let source = self.exp.cells.iter().find(|c| &c.id == id).and_then(|c| c.after.as_ref());
            if let Some(source) = source.map(|s| self.runs_dir.join(s).join("seed1")).filter(|d| d.is_dir()) {
                let before = RunDir::open(&source)?.read_metrics()?;
                if let Some(last) = before.into_iter().rfind(|m| metrics.first().is_some_and(|f| m.epoch < f.epoch)) {
                    metrics.insert(0, EpochMetrics { alignment: Vec::new(), ..last });
                }
            }
            runs.push(RunCurves { label, metrics });
        }
        if runs.is_empty() {
            return Ok(false);
        }
        plot(&runs, out, figure.curves, figure.log)?;
        Ok(true)
    }
}
