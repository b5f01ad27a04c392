//! One function per subcommand: the library call that does the work, and what is printed.

use super::args::{
    BenchArgs, DownloadArgs, EvalArgs, FeaturesArgs, PlotArgs, ReproduceArgs, TrainArgs, TsneArgs, Which,
};
use super::console::{Console, ReproduceConsole, print_summary};
use anyhow::{Context, Result};
use dfa::data::{self, Dataset, download};
use dfa::experiments::bench::{BenchOptions, run_bench};
use dfa::experiments::reproduce::{ReproduceOptions, reproduce_table};
use dfa::experiments::slurm::SlurmOptions;
use dfa::report::features;
use dfa::report::plots::{RunCurves, plot as draw_curves};
use dfa::train::config::TrainConfig;
use dfa::train::record::{self, METRICS_FILE, Opened, Reopen, RunDir};
use dfa::train::{StopReason, resolve_threads};
use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;

/// Exit code of a run that diverged.
const EXIT_DIVERGED: u8 = 3;

/// Prints what a user should know about loaded data.
fn print_notes(data: &Dataset) {
    for note in &data.notes {
        eprintln!("note: {note}");
    }
}

fn load_data(config: &TrainConfig) -> Result<Dataset> {
    let data = record::load_data(config)?;
    print_notes(&data);
    Ok(data)
}

pub fn train(args: TrainArgs) -> Result<ExitCode> {
    let (dir, _lock, mut trainer) = if let Some(path) = &args.resume {
        let reopen = Reopen { data_dir: args.data_dir.clone(), accept_changes: args.accept_changes };
        let resumed = record::resume_run(path, &reopen)?;
        for note in &resumed.notes {
            eprintln!("note: {note}");
        }
        match resumed.opened {
            Opened::Finished(s) => {
                println!("run already finished");
                print_summary(&resumed.dir, &s);
                return Ok(ExitCode::SUCCESS);
            }
            Opened::Ready { trainer, resumed_after } => {
                if let Some(epoch) = resumed_after {
                    println!("resuming {} after epoch {epoch}", resumed.dir.path.display());
                }
                (resumed.dir, resumed.lock, trainer)
            }
        }
    } else {
        let config = args.resolve()?;
        for w in config.warnings() {
            eprintln!("warning: {w}");
        }
        let data = load_data(&config)?;
        let (dir, lock, trainer, meta) = record::create_run(config.clone(), &data, &args.out, args.name.as_deref())?;
        println!(
            "run {}: {} {} {} on {} ({} train / {} test), {} parameters, {} threads, seed {}",
            dir.path.display(),
            config.rule_name(),
            config.model,
            config.activation.name(),
            config.dataset.name(),
            meta.n_train,
            meta.n_test,
            meta.parameters,
            trainer.threads(),
            config.seed
        );
        (dir, lock, Box::new(trainer))
    };
    let summary = record::run(&mut trainer, &dir, &mut Console { bar: None }, None)?
        .context("the run ended without a summary")?;
    print_summary(&dir, &summary);
    Ok(if summary.stop == StopReason::Diverged { ExitCode::from(EXIT_DIVERGED) } else { ExitCode::SUCCESS })
}

pub fn eval(args: EvalArgs) -> Result<ExitCode> {
    let reopen = Reopen { data_dir: args.data_dir.clone(), accept_changes: args.accept_changes };
    let e = record::evaluate_run(&args.run, &reopen, args.threads)?;
    for note in &e.notes {
        eprintln!("note: {note}");
    }
    println!(
        "{} after epoch {}: train error {:.3}% ({} samples), test error {:.3}% ({} samples)",
        args.run.display(),
        e.epoch,
        e.train_error,
        e.n_train,
        e.test_error,
        e.n_test
    );
    Ok(ExitCode::SUCCESS)
}

pub fn bench(args: BenchArgs) -> Result<ExitCode> {
    let options = BenchOptions {
        cases: args.cases,
        rules: args.rules,
        threads: args.threads,
        samples: args.samples,
        gemm_only: args.gemm_only,
        conv_algo: args.conv_algo,
    };
    let bar = ProgressBar::new(options.measurements()? as u64);
    bar.set_style(
        ProgressStyle::with_template("bench [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut started = false;
    let report = run_bench(&options, &mut |what| {
        if std::mem::replace(&mut started, true) {
            bar.inc(1);
        }
        bar.set_message(what.to_string());
    })?;
    bar.finish_and_clear();
    print!("{}", report.text());
    if let Some(path) = &args.json {
        report.write_json(path)?;
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn reproduce(args: ReproduceArgs) -> Result<ExitCode> {
    let options = ReproduceOptions {
        table: args.table,
        experiments: args.experiments,
        seeds: args.seeds,
        cells: args.cells,
        max_epochs: args.max_epochs,
        jobs: args.jobs,
        threads: args.threads,
        out: args.out,
        results: args.results,
        data_dir: args.data_dir,
        shard: args.shard,
        collect: args.collect,
        status: args.status,
        slurm: args.slurm.then_some(SlurmOptions {
            shards: args.shards,
            partition: args.partition,
            time: args.time,
            cpus_per_task: args.cpus_per_task,
            extra: args.slurm_extra,
            submit: args.submit,
            sbatch: None,
        }),
    };
    reproduce_table(&options, &ReproduceConsole)?;
    Ok(ExitCode::SUCCESS)
}

pub fn plot(args: PlotArgs) -> Result<ExitCode> {
    let p = &args.picture;
    let mut runs = Vec::new();
    for (i, path) in p.runs.iter().enumerate() {
        let metrics = RunDir::open(path)?.read_metrics()?;
        if metrics.is_empty() {
            anyhow::bail!("{}: no epochs in {}", path.display(), METRICS_FILE);
        }
        runs.push(RunCurves { label: p.label(i)?, metrics });
    }
    draw_curves(&runs, &p.out, args.curves, args.log)?;
    println!("wrote {}", p.out.display());
    Ok(ExitCode::SUCCESS)
}

pub fn features(args: FeaturesArgs) -> Result<ExitCode> {
    let reopen = Reopen { data_dir: args.data_dir.clone(), accept_changes: false };
    let (config, model, data) = record::load_run(&args.run, &reopen)?;
    print_notes(&data);
    let split = if args.split == Which::Train { &data.train } else { &data.test };
    let n = args.limit.unwrap_or(split.len()).min(split.len());
    let threads = resolve_threads(config.threads);
    let (values, width) = features::extract(&model.net, &split.images[..n * split.dim], args.layer, threads)?;
    let labels = &split.labels[..n];
    match args.out.extension().and_then(|e| e.to_str()) {
        Some("csv") => features::write_csv(&args.out, &values, width, labels)?,
        Some("npy") => {
            let labels_path = features::write_npy(&args.out, &values, width, labels)?;
            println!("wrote {}", labels_path.display());
        }
        _ => anyhow::bail!("--out {}: expected a file name ending in .csv or .npy", args.out.display()),
    }
    println!(
        "wrote {}: {} of layer {} ({n} samples × {width} features)",
        args.out.display(),
        features::layer_title(args.layer, model.net.depth()),
        args.layer
    );
    Ok(ExitCode::SUCCESS)
}

pub fn tsne(args: TsneArgs) -> Result<ExitCode> {
    let p = &args.picture;
    let mut loaded = Vec::new();
    let mut data_dir = args.data_dir.clone();
    for path in &p.runs {
        let (config, model, data) =
            record::load_run(path, &Reopen { data_dir: data_dir.clone(), accept_changes: false })?;
        print_notes(&data);
        data_dir = data_dir.or(config.data_dir.clone());
        loaded.push((config, model, data));
    }
    let (first_config, _, data) = &loaded[0];
    for (path, (config, model, _)) in p.runs.iter().zip(&loaded) {
        if config.dataset != first_config.dataset || model.net.n_inputs() != loaded[0].1.net.n_inputs() {
            anyhow::bail!("{}: not the data set of {}", path.display(), p.runs[0].display());
        }
    }
    // the input and every hidden layer of the deepest net (shallower rows leave theirs empty)
    let depth = loaded.iter().map(|(_, m, _)| m.net.depth()).max().unwrap_or(1);
    let layers = if args.layers.is_empty() { (0..depth).collect() } else { args.layers.clone() };
    if let Some(&k) = layers.iter().find(|&&k| k > depth) {
        anyhow::bail!("--layers {k}: the deepest net has {} hidden layers and its output is layer {depth}", depth - 1);
    }
    let nets = loaded
        .iter()
        .enumerate()
        .map(|(i, (_, model, _))| Ok((p.label(i)?, &model.net)))
        .collect::<Result<Vec<(String, &dfa::layers::Network)>>>()?;
    let settings = features::TsneSettings {
        perplexity: args.perplexity,
        iterations: args.iterations,
        seed: args.seed,
        ..Default::default()
    };
    let threads = resolve_threads(0);
    features::tsne_figure(&nets, (&data.test, args.points), &layers, settings, threads, &p.out, &|m| eprintln!("{m}"))?;
    println!("wrote {}", p.out.display());
    Ok(ExitCode::SUCCESS)
}

pub fn data_download(args: DownloadArgs) -> Result<ExitCode> {
    let dir = data::resolve_data_dir(args.data_dir.as_deref());
    let mirrors = if args.mirrors.is_empty() { download::default_mirrors(args.dataset) } else { args.mirrors };
    let fetched = download::download(args.dataset, &dir, &mirrors, |msg| eprintln!("{msg}"))?;
    for f in fetched {
        match f {
            download::Fetched::Present(p) => println!("ok        {}", p.display()),
            download::Fetched::Downloaded(p, url) => println!("fetched   {} <- {url}", p.display()),
        }
    }
    Ok(ExitCode::SUCCESS)
}
