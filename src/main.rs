//! The `dfa` command line: a thin layer over the library.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use dfa::data::{self, DatasetKind, download};
use dfa::layers::Init;
use dfa::layers::activation::Activation;
use dfa::optim::OptimiserKind;
use dfa::rules::Rule;
use dfa::train::config::TrainConfig;
use dfa::train::protocol::{EpochMetrics, Progress, StopReason, Trainer, apply_subsets, resolve_threads};
use dfa::train::record::{self, META_FILE, Meta, Observer, RunDir, SUMMARY_FILE, Summary};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code of a run that diverged.
const EXIT_DIVERGED: u8 = 3;

/// `--rule` and its kin: every registered rule, with its one-line description in `--help`.
fn rule_parser() -> impl clap::builder::TypedValueParser<Value = Rule> {
    use clap::builder::TypedValueParser;
    let values = Rule::all().iter().map(|r| clap::builder::PossibleValue::new(r.name()).help(r.about()));
    clap::builder::PossibleValuesParser::new(values)
        .map(|name| name.parse::<Rule>().expect("a registered rule's name parses"))
}

#[derive(Parser)]
#[command(
    name = "dfa",
    version,
    about = "Train neural networks with Direct Feedback Alignment, BP, FA and IFA (Nøkland 2016)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a dense network under the paper's protocol and leave a run folder.
    Train(Box<TrainArgs>),
    /// Report the errors of a run's checkpoint.
    Eval(EvalArgs),
    /// Measure training throughput beside this machine's GEMM throughput.
    Bench(BenchArgs),
    /// Reproduce a table of the paper from its experiment file, beside the paper's numbers.
    Reproduce(ReproduceArgs),
    /// Draw learning curves (and alignment angles, where recorded) of runs, overlaid.
    Plot(PlotArgs),
    /// Export one layer's features of a trained run as CSV or NPY.
    Features(FeaturesArgs),
    /// Draw t-SNE pictures of the input and hidden features of trained runs (the paper's Fig. 3).
    Tsne(TsneArgs),
    /// Manage data sets.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Download a data set from public mirrors, verify SHA-256, write atomically.
    Download(DownloadArgs),
}

#[derive(Args)]
struct DownloadArgs {
    /// Which data set.
    dataset: DatasetKind,
    /// Data folder (default: $DFA_DATA, else ./data); files go to DIR/<dataset>/ (CIFAR: the archive's folder, e.g. DIR/cifar-10-batches-bin/).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Base URL to fetch from instead of the built-in mirrors (repeatable; tried in order).
    #[arg(long = "mirror")]
    mirrors: Vec<String>,
}

/// Runs to draw and the picture to draw them in.
#[derive(Args)]
struct Picture {
    /// Run folders.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// The picture: FILE.png or FILE.svg.
    #[arg(long)]
    out: PathBuf,
    /// Labels of the runs, comma-separated [default: the folder names].
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
}

impl Picture {
    /// The label of run `i`: the given one, else the folder's name (`cell seedN` for reproduce runs).
    fn label(&self, i: usize) -> Result<String> {
        if !self.labels.is_empty() && self.labels.len() != self.runs.len() {
            anyhow::bail!("--labels: {} labels for {} runs", self.labels.len(), self.runs.len());
        }
        Ok(self.labels.get(i).cloned().unwrap_or_else(|| {
            let name = |p: &std::path::Path| p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            let path = &self.runs[i];
            let own = name(path);
            match path.parent() {
                Some(parent) if own.starts_with("seed") => format!("{} {own}", name(parent)),
                _ => own,
            }
        }))
    }
}

#[derive(Args)]
struct PlotArgs {
    #[command(flatten)]
    picture: Picture,
    /// Which error curves.
    #[arg(long, default_value = "both")]
    curves: dfa::report::plots::Curves,
    /// Logarithmic error axis.
    #[arg(long)]
    log: bool,
}

/// Which split of the data set.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Which {
    Train,
    Test,
}

#[derive(Args)]
struct FeaturesArgs {
    /// The run folder (its checkpoint is used).
    run: PathBuf,
    /// Layer: 0 = input, 1…L-1 = hidden layers (after the activation), L = output logits.
    #[arg(long)]
    layer: usize,
    /// Output file: FILE.csv (label, f0, f1, …) or FILE.npy (float32 n × width, labels in FILE-labels.npy).
    #[arg(long)]
    out: PathBuf,
    /// The split whose samples are passed through the network.
    #[arg(long, default_value = "test")]
    split: Which,
    /// Only the first N samples of the split.
    #[arg(long)]
    limit: Option<usize>,
    /// Data folder (default: the one the run recorded).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Args)]
struct TsneArgs {
    /// The runs (one row of panels each) and the picture.
    #[command(flatten)]
    picture: Picture,
    /// Layers, comma-separated (0 = input) [default: the input and every hidden layer].
    #[arg(long, value_delimiter = ',')]
    layers: Vec<usize>,
    /// The first N test images.
    #[arg(long, default_value_t = 2000)]
    points: usize,
    /// t-SNE perplexity.
    #[arg(long, default_value_t = 30.0)]
    perplexity: f32,
    /// t-SNE gradient-descent iterations.
    #[arg(long, default_value_t = 1000)]
    iterations: usize,
    /// Seed of the starting points.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Data folder (default: the one the first run recorded).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Args)]
struct ReproduceArgs {
    /// The experiment: a name in --experiments (table1) or a path to a TOML file.
    table: String,
    /// Folder of the experiment files.
    #[arg(long, default_value = "experiments")]
    experiments: PathBuf,
    /// Seeds per cell (1, 2, …, N) [default: the experiment's].
    #[arg(long)]
    seeds: Option<usize>,
    /// Only the cells whose id matches this glob (repeatable), e.g. '2x800-tanh-*'.
    #[arg(long)]
    cells: Vec<String>,
    /// Shortened protocol: at most N epochs per run (marked as such in every output).
    #[arg(long)]
    max_epochs: Option<usize>,
    /// Runs trained at the same time.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Threads per run [default: all cores divided among the jobs].
    #[arg(long)]
    threads: Option<usize>,
    /// Folder of the run folders (finished runs are reused, interrupted ones resumed).
    #[arg(long, default_value = "runs/reproduce")]
    out: PathBuf,
    /// Folder that receives the table as Markdown and CSV.
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// Data folder (default: $DFA_DATA, else ./data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Args)]
struct BenchArgs {
    /// Networks to train (comma-separated): 2x800, 7x240, 100x240, 3x1000-cifar, conv-small-cifar, conv-tanh-cifar.
    #[arg(long, value_delimiter = ',', default_value = "2x800,7x240,100x240,3x1000-cifar")]
    cases: Vec<String>,
    /// Rules (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "bp,fa,dfa,ifa", value_parser = rule_parser())]
    rules: Vec<Rule>,
    /// Thread counts (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Training samples per measurement [default: one epoch of the dense nets' data set, 60000 or 50000; 4096 / 640 images for the conv nets].
    #[arg(long)]
    samples: Option<usize>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Only the GEMM measurements, no training.
    #[arg(long)]
    gemm_only: bool,
}

#[derive(Args)]
struct EvalArgs {
    /// The run folder.
    run: PathBuf,
    /// Data folder (default: the one the run recorded).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Worker threads (default: the run's).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Args)]
struct TrainArgs {
    /// Read the configuration from a TOML file (a run's config.toml works); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Continue an interrupted run from its last checkpoint (no other flags apply).
    #[arg(long, conflicts_with = "config")]
    resume: Option<PathBuf>,
    /// Folder that receives the run folder.
    #[arg(long, default_value = "runs")]
    out: PathBuf,
    /// Name of the run folder (default: dataset-model-act-rule-seedN; -2, -3… if taken).
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    dataset: Option<DatasetKind>,
    /// Input preprocessing [default: scale, i.e. [0, 1]]; gcn-zca: contrast-normalised and whitened (cached in $DFA_CACHE or ./cache).
    #[arg(long)]
    preprocess: Option<dfa::data::preprocess::Preprocess>,
    /// Data folder (default: $DFA_DATA, else ./data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Hidden layers: DEPTHxWIDTH (2x800) or widths (800,400,200) [default: 2x800].
    #[arg(long)]
    model: Option<String>,
    /// Hidden activation [default: tanh].
    #[arg(long)]
    act: Option<Activation>,
    /// Learning rule [default: dfa].
    #[arg(long, value_parser = rule_parser())]
    rule: Option<Rule>,
    /// A rule per hidden layer, bottom to top (bp, fa or dfa each; e.g. dfa,bp,bp), instead of --rule.
    #[arg(long, value_delimiter = ',', value_parser = rule_parser())]
    layer_rules: Vec<Rule>,
    /// Layers that keep their initial weights (1-based, comma-separated; the output layer is the last).
    #[arg(long, value_delimiter = ',')]
    freeze: Vec<usize>,
    /// Start from the weights and optimiser state of this run folder and continue its epoch count.
    #[arg(long)]
    init_from: Option<PathBuf>,
    /// DFA: layers of equal width share one feedback matrix.
    #[arg(long)]
    shared_feedback: bool,
    /// Layers without biases.
    #[arg(long)]
    no_bias: bool,
    /// Forward initialisation [default: auto = zero for FA/DFA with tanh/logistic, else uniform ±1/√fan_in].
    #[arg(long)]
    init: Option<Init>,
    /// Bound of the uniform feedback matrices [default: 1/√n_i, n_i = receiving width].
    #[arg(long)]
    feedback_bound: Option<f32>,
    /// Optimiser [default: rmsprop].
    #[arg(long)]
    optimiser: Option<OptimiserKind>,
    /// Learning rate [default: 1e-4, see docs/learning-rate.md].
    #[arg(long)]
    lr: Option<f32>,
    /// RMSprop decay ρ [default: 0.99].
    #[arg(long)]
    rms_decay: Option<f32>,
    /// RMSprop ε, added after the square root [default: 1e-8].
    #[arg(long)]
    rms_eps: Option<f32>,
    /// Mini-batch size [default: 64].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Stop after this many epochs [default: 300].
    #[arg(long)]
    max_epochs: Option<usize>,
    /// Stop once the training error (%) is at or below this [default: 0.01].
    #[arg(long)]
    stop_train_error: Option<f64>,
    /// Turn off the paper's learning-rate schedule (halve on no improvement, then stop).
    #[arg(long)]
    no_lr_schedule: bool,
    /// Halvings before the schedule stops the run [default: 8].
    #[arg(long)]
    max_halvings: Option<usize>,
    /// Seed of every random draw [default: 1].
    #[arg(long)]
    seed: Option<u64>,
    /// Worker threads, 0 = all cores [default: 0]. Results are bitwise reproducible for a given seed and thread count.
    #[arg(long)]
    threads: Option<usize>,
    /// The paper's dropout: p = 0.1 on the input, 0.5 on hidden layers (inverted dropout).
    #[arg(long)]
    dropout: bool,
    /// Dropout probability of the input units (overrides --dropout's 0.1).
    #[arg(long)]
    dropout_input: Option<f32>,
    /// Dropout probability of the hidden units (overrides --dropout's 0.5).
    #[arg(long)]
    dropout_hidden: Option<f32>,
    /// Adversarial training with the fast gradient sign method (ε = 0.08, α = 0.5 unless set).
    #[arg(long)]
    adversarial: bool,
    /// FGSM step ε of x + ε·sign(∂J/∂x) (implies --adversarial).
    #[arg(long)]
    adv_epsilon: Option<f32>,
    /// Weight α of the clean loss in α·J(x) + (1−α)·J(x_adv) [default: 0.5].
    #[arg(long)]
    adv_alpha: Option<f32>,
    /// Measure alignment angles (rule vs true gradient, per hidden layer) every N mini-batches
    /// and log them in metrics.jsonl.
    #[arg(long)]
    align_every: Option<usize>,
    /// Hold out the last N training samples as a validation set (MNIST: 10000).
    #[arg(long)]
    validation: Option<usize>,
    /// The error the learning-rate schedule watches [default: train].
    #[arg(long)]
    schedule_on: Option<dfa::train::config::ScheduleOn>,
    /// Halve the learning rate only after N epochs in a row without a new best watched error
    /// (0: the paper's running-mean rule) [default: 0].
    #[arg(long)]
    patience: Option<usize>,
    /// Start the running mean of the paper's rule at this error (%) instead of the first
    /// epoch's; the paper's code uses 100.
    #[arg(long, value_name = "PERCENT")]
    schedule_start: Option<f64>,
    /// Train on the first N training samples.
    #[arg(long)]
    train_subset: Option<usize>,
    /// Test on the first N test samples.
    #[arg(long)]
    test_subset: Option<usize>,
}

impl TrainArgs {
    /// The configuration: defaults, then the `--config` file, then the flags.
    fn resolve(&self) -> Result<TrainConfig> {
        let mut c = match &self.config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).with_context(|| format!("reading --config {}", path.display()))?;
                TrainConfig::from_toml(&text, &path.display().to_string())?
            }
            None => TrainConfig::default(),
        };
        macro_rules! set {
            ($($flag:ident => $field:ident),*) => { $( if let Some(v) = self.$flag.clone() { c.$field = v; } )* };
        }
        set!(dataset => dataset, preprocess => preprocess, model => model, act => activation, rule => rule, init => init,
             optimiser => optimiser, lr => learning_rate, rms_decay => rms_decay, rms_eps => rms_epsilon,
             batch_size => batch_size, max_epochs => max_epochs, stop_train_error => stop_train_error,
             max_halvings => max_halvings, seed => seed, threads => threads);
        if self.data_dir.is_some() {
            c.data_dir = self.data_dir.clone();
        }
        if self.feedback_bound.is_some() {
            c.feedback_bound = self.feedback_bound;
        }
        if !self.layer_rules.is_empty() {
            c.layer_rules = self.layer_rules.clone();
        }
        if !self.freeze.is_empty() {
            c.freeze = self.freeze.clone();
        }
        if self.init_from.is_some() {
            c.init_from = self.init_from.clone();
        }
        if self.train_subset.is_some() {
            c.train_subset = self.train_subset;
        }
        if self.test_subset.is_some() {
            c.test_subset = self.test_subset;
        }
        c.shared_feedback |= self.shared_feedback;
        if self.dropout {
            (c.dropout_input, c.dropout_hidden) = (0.1, 0.5);
        }
        if self.adversarial {
            c.adversarial_epsilon = 0.08;
        }
        set!(validation => validation, schedule_on => schedule_on, patience => patience, align_every => align_every);
        if self.schedule_start.is_some() {
            c.schedule_start = self.schedule_start;
        }
        set!(dropout_input => dropout_input, dropout_hidden => dropout_hidden,
             adv_epsilon => adversarial_epsilon, adv_alpha => adversarial_alpha);
        if self.no_bias {
            c.bias = false;
        }
        if self.no_lr_schedule {
            c.lr_schedule = false;
        }
        c.data_dir = Some(data::resolve_data_dir(c.data_dir.as_deref()));
        c.threads = resolve_threads(c.threads);
        c.validate()?;
        Ok(c)
    }
}

/// Progress bars per epoch and one line per finished epoch.
struct Console {
    bar: Option<ProgressBar>,
}

impl Observer for Console {
    fn epoch_started(&mut self, epoch: usize, batches: usize) {
        let bar = ProgressBar::new(batches as u64);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix:>3} [{bar:30}] {pos}/{len} batches {per_sec} eta {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(epoch.to_string());
        self.bar = Some(bar);
    }

    fn batch_done(&mut self, _done: usize, _total: usize) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    fn epoch_done(&mut self, m: &EpochMetrics, p: &Progress) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        println!(
            "epoch {:3}  loss {:.4}  train {:6.3}%  test {:6.3}%{}  lr {:.3e}  {:.2}s ({:.0} samples/s) + eval {:.2}s",
            m.epoch,
            m.loss,
            m.train_error,
            m.test_error,
            m.validation_error.map_or(String::new(), |v| format!("  validation {v:6.3}%")),
            m.learning_rate,
            m.seconds,
            m.samples_per_s,
            m.eval_seconds
        );
        if let Some(last) = m.alignment.last() {
            let angles: Vec<String> = last
                .layers
                .iter()
                .map(|l| {
                    let a = l.delta_angle_mean.map_or("–".into(), |a| format!("{a:.1}°"));
                    format!("h{} {a} (L>0 {:.0}%)", l.layer, 100.0 * l.criterion_positive)
                })
                .collect();
            println!("          alignment with BP at batch {}: {}", last.batch, angles.join(", "));
        }
        if let Some(stop) = p.stop {
            println!("stop: {}", stop.describe());
        } else if p.learning_rate < m.learning_rate {
            println!("learning rate halved to {:.3e} (halving {})", p.learning_rate, p.halvings);
        }
    }
}

fn load_data(config: &TrainConfig) -> Result<data::Dataset> {
    let dir = data::resolve_data_dir(config.data_dir.as_deref());
    let data = data::load_prepared(config.dataset, config.preprocess, &dir)?;
    for note in &data.notes {
        eprintln!("note: {note}");
    }
    Ok(apply_subsets(data, config))
}

fn print_summary(dir: &RunDir, s: &Summary) {
    println!(
        "{}: {} after {} epochs; train error {:.3}%, test error {:.3}%, {:.2} s/epoch",
        dir.path.display(),
        s.stop.describe(),
        s.epochs,
        s.final_train_error,
        s.final_test_error,
        s.mean_epoch_seconds
    );
}

fn train(args: TrainArgs) -> Result<ExitCode> {
    let (dir, mut trainer) = if let Some(path) = &args.resume {
        let dir = RunDir::open(path)?;
        let config = dir.read_config()?;
        let data = load_data(&config)?;
        if dir.file(SUMMARY_FILE).is_file() {
            let s: Summary = dir.read_json(SUMMARY_FILE)?;
            println!("run already finished");
            print_summary(&dir, &s);
            return Ok(ExitCode::SUCCESS);
        }
        let trainer = if dir.file(record::CHECKPOINT_FILE).is_file() {
            let (model, progress) = dir.load_checkpoint(&config, data.train.dim, data.n_classes)?;
            dir.truncate_metrics(progress.epoch)?;
            println!("resuming {} after epoch {}", dir.path.display(), progress.epoch);
            Trainer::resume(config, &data, model, progress)?
        } else {
            dir.truncate_metrics(0)?;
            Trainer::new(config, &data)?
        };
        (dir, trainer)
    } else {
        let config = args.resolve()?;
        for w in config.warnings() {
            eprintln!("warning: {w}");
        }
        let data = load_data(&config)?;
        let name = args.name.clone().unwrap_or_else(|| {
            format!(
                "{}-{}-{}-{}-seed{}",
                config.dataset.name(),
                config.model,
                config.activation.name(),
                config.rule_name(),
                config.seed
            )
        });
        let dir = RunDir::create_unique(&args.out, &name)?;
        dir.write_config(&config)?;
        let trainer = Trainer::new(config.clone(), &data)?;
        let meta = Meta::new(&trainer, &data);
        dir.write_json(META_FILE, &meta)?;
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
            trainer.threads,
            config.seed
        );
        (dir, trainer)
    };
    let summary = record::run(&mut trainer, &dir, &mut Console { bar: None }, None)?
        .context("the run ended without a summary")?;
    print_summary(&dir, &summary);
    Ok(if summary.stop == StopReason::Diverged { ExitCode::from(EXIT_DIVERGED) } else { ExitCode::SUCCESS })
}

fn eval(args: EvalArgs) -> Result<ExitCode> {
    let dir = RunDir::open(&args.run)?;
    let mut config = dir.read_config()?;
    if let Some(d) = args.data_dir {
        config.data_dir = Some(d);
    }
    if let Some(t) = args.threads {
        config.threads = t;
    }
    let data = load_data(&config)?;
    let (model, progress) = dir.load_checkpoint(&config, data.train.dim, data.n_classes)?;
    let mut trainer = Trainer::resume(config, &data, model, progress)?;
    let (train, test) = trainer.evaluate();
    println!(
        "{} after epoch {}: train error {:.3}% ({} samples), test error {:.3}% ({} samples)",
        dir.path.display(),
        trainer.progress.epoch,
        train,
        trainer.n_train(),
        test,
        trainer.n_test()
    );
    Ok(ExitCode::SUCCESS)
}

fn bench(args: BenchArgs) -> Result<ExitCode> {
    use dfa::experiments::bench;
    let cases: Vec<bench::Case> = args
        .cases
        .iter()
        .map(|name| {
            bench::cases().into_iter().find(|c| c.name == name).with_context(|| {
                let known: Vec<&str> = bench::cases().iter().map(|c| c.name).collect();
                format!("--cases: unknown case '{name}', expected one of {}", known.join(", "))
            })
        })
        .collect::<Result<_>>()?;
    if let Some(&t) = args.threads.iter().find(|&&t| t == 0 || t > 1024) {
        anyhow::bail!("--threads: {t} is not a thread count from 1 to 1024");
    }
    // the GEMMs of these nets' training steps, and the square 1024³ for reference
    let mut shapes = vec![(bench::Layout::Nn, 1024, 1024, 1024)];
    for c in &cases {
        for shape in bench::network_step_shapes(&bench::case_network(c, Rule::BP)?, 64) {
            if !shapes.contains(&shape) {
                shapes.push(shape);
            }
        }
    }
    let rules = if args.gemm_only { Vec::new() } else { args.rules.clone() };
    let total = args.threads.len() * (shapes.len() + cases.len() * rules.len());
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("bench [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut gemm = Vec::new();
    let mut train = Vec::new();
    for &threads in &args.threads {
        for &(layout, m, k, n) in &shapes {
            bar.set_message(format!("GEMM {m}x{k}x{n}, {threads} threads"));
            gemm.push(bench::gemm_throughput(layout, m, k, n, threads));
            bar.inc(1);
        }
        for case in &cases {
            for &rule in &rules {
                bar.set_message(format!("{} {}, {threads} threads", case.name, rule.name()));
                let samples = args.samples.unwrap_or(case.default_samples);
                train.push(bench::train_throughput(case, rule, threads, samples)?);
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    let peak = |threads: usize| gemm.iter().filter(|g| g.threads == threads).map(|g| g.gflops).fold(0.0, f64::max);
    println!("GEMM (faer, split over threads as in training), GFLOP/s; M×K×N as C (M×N) = A (M×K) · B (K×N):");
    println!(
        "{:>16} {:>6} {}",
        "M×K×N",
        "layout",
        args.threads.iter().map(|t| format!("{:>10}", format!("{t} thr"))).collect::<String>()
    );
    for &(layout, m, k, n) in &shapes {
        let row: String = args
            .threads
            .iter()
            .map(|&t| {
                let g = gemm.iter().find(|g| g.threads == t && (g.layout, g.m, g.k, g.n) == (layout, m, k, n));
                format!("{:>10.1}", g.map_or(0.0, |g| g.gflops))
            })
            .collect();
        let name = match layout {
            bench::Layout::Nn => "A·B",
            bench::Layout::Nt => "A·Bᵀ",
            bench::Layout::Tn => "Aᵀ·B",
        };
        println!("{:>16} {name:>6} {row}", format!("{m}x{k}x{n}"));
    }
    if train.is_empty() {
        return write_bench_json(args.json.as_deref(), &gemm, &train, &args.threads, &peak).map(|()| ExitCode::SUCCESS);
    }
    println!();
    println!(
        "Training (batch 64, tanh, RMSprop; FLOPs as in src/bench.rs), peak = best GEMM above at that thread count:"
    );
    println!("{:<14} {:<5} {:>7} {:>12} {:>9} {:>8}", "net", "rule", "threads", "samples/s", "GFLOP/s", "of peak");
    for r in &train {
        println!(
            "{:<14} {:<5} {:>7} {:>12.0} {:>9.1} {:>7.0}%",
            r.case,
            r.rule.name(),
            r.threads,
            r.samples_per_s,
            r.gflops,
            100.0 * r.gflops / peak(r.threads)
        );
    }
    write_bench_json(args.json.as_deref(), &gemm, &train, &args.threads, &peak)?;
    Ok(ExitCode::SUCCESS)
}

fn write_bench_json(
    path: Option<&std::path::Path>,
    gemm: &[dfa::experiments::bench::GemmResult],
    train: &[dfa::experiments::bench::TrainResult],
    threads: &[usize],
    peak: &dyn Fn(usize) -> f64,
) -> Result<()> {
    let Some(path) = path else { return Ok(()) };
    let peaks: Vec<(usize, f64)> = threads.iter().map(|&t| (t, peak(t))).collect();
    let report = serde_json::json!({
        "dfa_version": record::VERSION,
        "git_commit": record::GIT_COMMIT,
        "cpu": cpu_name(),
        "gemm": gemm,
        "gemm_peak": peaks,
        "train": train,
    });
    dfa::base::io::write_atomically(path, serde_json::to_string_pretty(&report)?.as_bytes())?;
    println!("wrote {}", path.display());
    Ok(())
}

/// The CPU's model name (Linux), for benchmark records.
fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

struct ReproduceConsole;

impl dfa::experiments::ReproduceObserver for ReproduceConsole {
    fn run_started(&self, task: &dfa::experiments::Task, resumed_from: Option<usize>) {
        match resumed_from {
            Some(e) => println!("[{} seed {}] resuming after epoch {e}", task.cell, task.seed),
            None => println!("[{} seed {}] starting in {}", task.cell, task.seed, task.dir.display()),
        }
    }

    fn epoch_done(&self, task: &dfa::experiments::Task, m: &EpochMetrics) {
        println!(
            "[{} seed {}] epoch {:3}  train {:6.3}%  test {:6.3}%  lr {:.2e}  {:.1}s",
            task.cell,
            task.seed,
            m.epoch,
            m.train_error,
            m.test_error,
            m.learning_rate,
            m.seconds + m.eval_seconds
        );
    }

    fn run_finished(&self, f: &dfa::experiments::Finished) {
        let s = &f.summary;
        println!(
            "[{} seed {}] {}: {} after {} epochs, train {:.3}%, test {:.3}%",
            f.cell,
            f.seed,
            if f.reused { "reused" } else { "done" },
            s.stop.describe(),
            s.epochs,
            s.final_train_error,
            s.final_test_error
        );
    }
}

fn reproduce(args: ReproduceArgs) -> Result<ExitCode> {
    use dfa::experiments::BracketError;
    use dfa::experiments::Experiment;
    use dfa::experiments::tables::{Aggregate, RunOutcome, TableResults};
    let path = if args.table.ends_with(".toml") {
        PathBuf::from(&args.table)
    } else {
        args.experiments.join(format!("{}.toml", args.table))
    };
    let exp = Experiment::load(&path)?;
    let seeds = args.seeds.unwrap_or(exp.seeds);
    if seeds == 0 || args.jobs == 0 || args.max_epochs == Some(0) {
        anyhow::bail!("--seeds, --jobs and --max-epochs must be at least 1");
    }
    let selected = exp.select(&args.cells)?;
    let runs_dir = exp.runs_dir(&args.out, args.max_epochs);
    let threads = args.threads.unwrap_or_else(|| (resolve_threads(0) / args.jobs).max(1));
    let stages = exp.tasks(&selected, seeds, args.max_epochs, &runs_dir)?;
    let runs: usize = stages.iter().map(Vec::len).sum();
    let data_dir = data::resolve_data_dir(args.data_dir.as_deref());
    println!(
        "{}: {} cells × {seeds} seeds = {} runs, {} at a time with {threads} threads each{}",
        exp.name,
        selected.len(),
        runs,
        args.jobs,
        args.max_epochs.map_or(String::new(), |n| format!(", SHORTENED PROTOCOL: at most {n} epochs"))
    );
    for tasks in stages {
        dfa::experiments::reproduce(tasks, &data_dir, args.jobs, threads, &ReproduceConsole)?;
    }
    // the table: every cell with finished runs in this runs folder (not only this invocation's)
    let mut cells = Vec::new();
    for cell in &exp.cells {
        let mut outcomes = Vec::new();
        for seed in 1..=seeds as u64 {
            let dir = runs_dir.join(&cell.id).join(format!("seed{seed}"));
            if dir.join(SUMMARY_FILE).is_file() {
                let run = RunDir::open(&dir)?;
                let s: Summary = run.read_json(SUMMARY_FILE)?;
                let bracket_error = match exp.bracket_error {
                    BracketError::Train => s.final_train_error,
                    BracketError::Batch => run.read_metrics()?.last().map_or(s.final_train_error, |m| m.batch_error),
                };
                outcomes.push(RunOutcome {
                    seed,
                    test_error: s.final_test_error,
                    train_error: s.final_train_error,
                    bracket_error,
                    epochs: s.epochs,
                    stop: s.stop,
                });
            }
        }
        cells.push((cell, Aggregate::of(&outcomes, exp.nonconvergence_train_error)));
    }
    let dataset = exp.cell_config(&exp.cells[0], 1, None)?.dataset;
    let notes = data::notes(dataset, &data_dir);
    let table = TableResults { experiment: &exp, cells, max_epochs: args.max_epochs, notes };
    let markdown = table.markdown();
    println!("\n{markdown}");
    let stem = match args.max_epochs {
        Some(n) => format!("{}-max{n}", exp.name),
        None => exp.name.clone(),
    };
    let md = args.results.join(format!("{stem}.md"));
    let csv = args.results.join(format!("{stem}.csv"));
    dfa::base::io::write_atomically(&md, markdown.as_bytes())?;
    dfa::base::io::write_atomically(&csv, table.csv().as_bytes())?;
    println!("wrote {} and {}", md.display(), csv.display());
    for figure in &exp.figures {
        let stem = std::path::Path::new(&figure.file);
        let file = match args.max_epochs {
            Some(n) => format!(
                "{}-max{n}.{}",
                stem.file_stem().and_then(|s| s.to_str()).unwrap_or("figure"),
                stem.extension().and_then(|s| s.to_str()).unwrap_or("png")
            ),
            None => figure.file.clone(),
        };
        let out = args.results.join(file);
        if figure.kind == dfa::experiments::FigureKind::Tsne {
            let mut loaded = Vec::new();
            for (i, id) in figure.cells.iter().enumerate() {
                let dir = runs_dir.join(id).join("seed1");
                if dir.join(record::CHECKPOINT_FILE).is_file() {
                    let label = figure.labels.get(i).cloned().unwrap_or_else(|| id.clone());
                    loaded.push((label, load_run(&dir, Some(&data_dir))?));
                }
            }
            let Some((_, (_, _, data))) = loaded.first() else { continue };
            let depth = loaded.iter().map(|(_, (_, m, _))| m.net.depth()).min().unwrap_or(1);
            let layers = if figure.layers.is_empty() { (0..depth).collect() } else { figure.layers.clone() };
            let nets: Vec<(String, &dfa::layers::Network)> =
                loaded.iter().map(|(label, (_, model, _))| (label.clone(), &model.net)).collect();
            let settings = dfa::report::features::TsneSettings::default();
            dfa::report::features::tsne_figure(
                &nets,
                &data.test,
                figure.points,
                &layers,
                settings,
                threads,
                &out,
                &|m| println!("{m}"),
            )?;
            println!("wrote {}", out.display());
            continue;
        }
        let mut runs = Vec::new();
        for (i, id) in figure.cells.iter().enumerate() {
            let dir = runs_dir.join(id).join("seed1");
            if !dir.join(record::METRICS_FILE).is_file() {
                continue;
            }
            let label = figure.labels.get(i).cloned().unwrap_or_else(|| id.clone());
            let mut metrics = RunDir::open(&dir)?.read_metrics()?;
            // a run that continues another starts its curve at the source's last epoch
            let source = exp.cells.iter().find(|c| &c.id == id).and_then(|c| c.after.as_ref());
            if let Some(source) = source.map(|s| runs_dir.join(s).join("seed1")).filter(|d| d.is_dir()) {
                let before = RunDir::open(&source)?.read_metrics()?;
                if let Some(last) = before.into_iter().rfind(|m| metrics.first().is_some_and(|f| m.epoch < f.epoch)) {
                    metrics.insert(0, EpochMetrics { alignment: Vec::new(), ..last });
                }
            }
            runs.push(dfa::report::plots::RunCurves { label, metrics });
        }
        if runs.is_empty() {
            continue;
        }
        dfa::report::plots::plot(&runs, &out, figure.curves, figure.log)?;
        println!("wrote {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn plot(args: PlotArgs) -> Result<ExitCode> {
    let p = &args.picture;
    let mut runs = Vec::new();
    for (i, path) in p.runs.iter().enumerate() {
        let dir = RunDir::open(path)?;
        let metrics = dir.read_metrics()?;
        if metrics.is_empty() {
            anyhow::bail!("{}: no epochs in {}", path.display(), record::METRICS_FILE);
        }
        runs.push(dfa::report::plots::RunCurves { label: p.label(i)?, metrics });
    }
    dfa::report::plots::plot(&runs, &p.out, args.curves, args.log)?;
    println!("wrote {}", p.out.display());
    Ok(ExitCode::SUCCESS)
}

/// A finished or interrupted run's configuration, model (from its checkpoint) and data set.
fn load_run(
    path: &std::path::Path,
    data_dir: Option<&PathBuf>,
) -> Result<(TrainConfig, dfa::train::protocol::Model, data::Dataset)> {
    let dir = RunDir::open(path)?;
    let mut config = dir.read_config()?;
    if let Some(d) = data_dir {
        config.data_dir = Some(d.clone());
    }
    let data = load_data(&config)?;
    let (model, _) = dir.load_checkpoint(&config, data.train.dim, data.n_classes)?;
    Ok((config, model, data))
}

fn features(args: FeaturesArgs) -> Result<ExitCode> {
    let (config, model, data) = load_run(&args.run, args.data_dir.as_ref())?;
    let split = if args.split == Which::Train { &data.train } else { &data.test };
    let n = args.limit.unwrap_or(split.len()).min(split.len());
    let threads = resolve_threads(config.threads);
    let (features, width) =
        dfa::report::features::extract(&model.net, &split.images[..n * split.dim], args.layer, threads)?;
    let labels = &split.labels[..n];
    match args.out.extension().and_then(|e| e.to_str()) {
        Some("csv") => dfa::report::features::write_csv(&args.out, &features, width, labels)?,
        Some("npy") => {
            let labels_path = dfa::report::features::write_npy(&args.out, &features, width, labels)?;
            println!("wrote {}", labels_path.display());
        }
        _ => anyhow::bail!("--out {}: expected a file name ending in .csv or .npy", args.out.display()),
    }
    println!(
        "wrote {}: {} of layer {} ({n} samples × {width} features)",
        args.out.display(),
        dfa::report::features::layer_title(args.layer, model.net.depth()),
        args.layer
    );
    Ok(ExitCode::SUCCESS)
}

fn tsne(args: TsneArgs) -> Result<ExitCode> {
    let p = &args.picture;
    let mut loaded = Vec::new();
    let mut data_dir = args.data_dir.clone();
    for path in &p.runs {
        let (config, model, data) = load_run(path, data_dir.as_ref())?;
        data_dir = data_dir.or(config.data_dir.clone());
        loaded.push((config, model, data));
    }
    let (first_config, _, data) = &loaded[0];
    for (path, (config, model, _)) in p.runs.iter().zip(&loaded) {
        if config.dataset != first_config.dataset || model.net.n_inputs() != loaded[0].1.net.n_inputs() {
            anyhow::bail!("{}: not the data set of {}", path.display(), p.runs[0].display());
        }
    }
    let depth = loaded.iter().map(|(_, m, _)| m.net.depth()).min().unwrap_or(1);
    let layers = if args.layers.is_empty() { (0..depth).collect() } else { args.layers.clone() };
    let nets = loaded
        .iter()
        .enumerate()
        .map(|(i, (_, model, _))| Ok((p.label(i)?, &model.net)))
        .collect::<Result<Vec<(String, &dfa::layers::Network)>>>()?;
    let settings = dfa::report::features::TsneSettings {
        perplexity: args.perplexity,
        iterations: args.iterations,
        seed: args.seed,
        ..Default::default()
    };
    let threads = resolve_threads(0);
    dfa::report::features::tsne_figure(&nets, &data.test, args.points, &layers, settings, threads, &p.out, &|m| {
        eprintln!("{m}")
    })?;
    println!("wrote {}", p.out.display());
    Ok(ExitCode::SUCCESS)
}

fn data_download(args: DownloadArgs) -> Result<ExitCode> {
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => train(*args),
        Command::Eval(args) => eval(args),
        Command::Bench(args) => bench(args),
        Command::Reproduce(args) => reproduce(args),
        Command::Plot(args) => plot(args),
        Command::Features(args) => features(args),
        Command::Tsne(args) => tsne(args),
        Command::Data { command: DataCommand::Download(args) } => data_download(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
