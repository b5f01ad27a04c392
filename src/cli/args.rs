//! The command line's arguments: every subcommand and flag, with its `--help` text.

use super::{choice, rule_parser, thread_count};
use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use dfa::data::preprocess::Preprocess;
use dfa::data::{self, DatasetKind};
use dfa::experiments::shard::Shard;
use dfa::layers::Init;
use dfa::layers::activation::Activation;
use dfa::optim::OptimiserKind;
use dfa::report::plots::Curves;
use dfa::rules::Rule;
use dfa::train::config::{ConvAlgo, ScheduleOn, TrainConfig};
use dfa::train::record;
use dfa::train::resolve_threads;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "dfa",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("DFA_GIT_COMMIT"), ")"),
    about = "Train neural networks with Direct Feedback Alignment (Nøkland 2016) and the rules compared with it: \
             BP, FA, IFA, sign symmetry, Kolen–Pollack, DRTP, sparse/binary/ternary DFA"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
pub enum DataCommand {
    /// Download a data set from public mirrors, verify SHA-256, write atomically.
    Download(DownloadArgs),
}

#[derive(Args)]
pub struct DownloadArgs {
    /// Which data set.
    #[arg(value_parser = choice::<DatasetKind>())]
    pub dataset: DatasetKind,
    /// Data folder (default: $DFA_DATA, else ./data); files go to DIR/<dataset>/ (CIFAR: the archive's folder, e.g. DIR/cifar-10-batches-bin/).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Base URL to fetch from instead of the built-in mirrors (repeatable; tried in order).
    #[arg(long = "mirror")]
    pub mirrors: Vec<String>,
}

/// Runs to draw and the picture to draw them in.
#[derive(Args)]
pub struct Picture {
    /// Run folders.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// The picture: FILE.png or FILE.svg.
    #[arg(long)]
    pub out: PathBuf,
    /// Labels of the runs, comma-separated [default: the folder names].
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
}

impl Picture {
    /// The label of run `i`: the given one, else the folder's name (`cell seedN` for reproduce runs).
    pub fn label(&self, i: usize) -> Result<String> {
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
pub struct PlotArgs {
    #[command(flatten)]
    pub picture: Picture,
    /// Which error curves.
    #[arg(long, default_value = "both", value_parser = choice::<Curves>())]
    pub curves: Curves,
    /// Logarithmic error axis.
    #[arg(long)]
    pub log: bool,
}

/// Which split of the data set.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    Train,
    Test,
}

#[derive(Args)]
pub struct FeaturesArgs {
    /// The run folder (its checkpoint is used).
    pub run: PathBuf,
    /// Layer: 0 = input, 1…L-1 = hidden layers (after the activation), L = output logits.
    #[arg(long)]
    pub layer: usize,
    /// Output file: FILE.csv (label, f0, f1, …) or FILE.npy (float32 n × width, labels in FILE-labels.npy).
    #[arg(long)]
    pub out: PathBuf,
    /// The split whose samples are passed through the network.
    #[arg(long, default_value = "test")]
    pub split: Which,
    /// Only the first N samples of the split.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Data folder (default: the one the run recorded).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct TsneArgs {
    /// The runs (one row of panels each) and the picture.
    #[command(flatten)]
    pub picture: Picture,
    /// Layers, comma-separated (0 = input) [default: the input and every hidden layer].
    #[arg(long, value_delimiter = ',')]
    pub layers: Vec<usize>,
    /// The first N test images.
    #[arg(long, default_value_t = 2000)]
    pub points: usize,
    /// t-SNE perplexity.
    #[arg(long, default_value_t = 30.0)]
    pub perplexity: f32,
    /// t-SNE gradient-descent iterations.
    #[arg(long, default_value_t = 1000)]
    pub iterations: usize,
    /// Seed of the starting points.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Data folder (default: the one the first run recorded).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

#[derive(Args)]
pub struct ReproduceArgs {
    /// The experiment: a name in --experiments (table1) or a path to a TOML file.
    pub table: String,
    /// Folder of the experiment files.
    #[arg(long, default_value = "experiments")]
    pub experiments: PathBuf,
    /// Seeds per cell (1, 2, …, N) [default: the experiment's].
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Only the cells whose id matches this glob (repeatable), e.g. '2x800-tanh-*'.
    #[arg(long)]
    pub cells: Vec<String>,
    /// Shortened protocol: at most N epochs per run (marked as such in every output).
    #[arg(long)]
    pub max_epochs: Option<usize>,
    /// Runs trained at the same time.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Threads per run [default: all cores divided among the jobs].
    #[arg(long, value_parser = thread_count)]
    pub threads: Option<usize>,
    /// Folder of the run folders (finished runs are reused, interrupted ones resumed).
    #[arg(long, default_value = "runs/reproduce")]
    pub out: PathBuf,
    /// Folder that receives the table as Markdown and CSV.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Data folder (default: $DFA_DATA, else ./data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Train only share i of n of the runs (1 ≤ i ≤ n; balanced by expected cost, see docs/cluster.md), and write no table.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    /// Train nothing: build the table and figures from the finished runs in --out (after the shards).
    #[arg(long, conflicts_with = "shard")]
    pub collect: bool,
    /// Train nothing: say where each run of the selected cells (of the shard, with --shard) stands in --out: finished, started (after which epoch, and when it last wrote one), or not started.
    #[arg(long, conflicts_with = "collect")]
    pub status: bool,
    /// Write a Slurm job array (one task per shard) and a collect job under OUT/<experiment>/slurm/ instead of training.
    #[arg(long, conflicts_with_all = ["shard", "collect", "status"])]
    pub slurm: bool,
    /// With --slurm: submit both scripts with sbatch (the collect job after the array, afterok) and print the job ids.
    #[arg(long, requires = "slurm")]
    pub submit: bool,
    /// With --slurm: array tasks [default: one per run, or per chain of runs that continue each other].
    #[arg(long, requires = "slurm")]
    pub shards: Option<usize>,
    /// With --slurm: the partition (#SBATCH --partition).
    #[arg(long, requires = "slurm")]
    pub partition: Option<String>,
    /// With --slurm: each task's time limit (#SBATCH --time), e.g. 02:00:00.
    #[arg(long, requires = "slurm")]
    pub time: Option<String>,
    /// With --slurm: CPUs per task (#SBATCH --cpus-per-task), also each run's threads.
    #[arg(long, requires = "slurm", default_value_t = 1)]
    pub cpus_per_task: usize,
    /// With --slurm: an extra #SBATCH line for your site, e.g. --slurm-extra=--account=lab (repeatable).
    #[arg(long, requires = "slurm", allow_hyphen_values = true)]
    pub slurm_extra: Vec<String>,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Networks to train (comma-separated): 2x800, 7x240, 100x240, 3x1000-cifar, conv-small-cifar, conv-tanh-cifar.
    #[arg(long, value_delimiter = ',', default_value = "2x800,7x240,100x240,3x1000-cifar")]
    pub cases: Vec<String>,
    /// Rules (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "bp,fa,dfa,ifa", value_parser = rule_parser())]
    pub rules: Vec<Rule>,
    /// Thread counts (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,2", value_parser = thread_count)]
    pub threads: Vec<usize>,
    /// Training samples per measurement [default: one epoch of the dense nets' data set, 60000 or 50000; 4096 / 640 images for the conv nets].
    #[arg(long)]
    pub samples: Option<usize>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Only the GEMM measurements, no training.
    #[arg(long)]
    pub gemm_only: bool,
    /// How the conv nets' convolutions are computed (im2col, or Winograd where it serves).
    #[arg(long, default_value = "auto", value_parser = choice::<ConvAlgo>())]
    pub conv_algo: ConvAlgo,
}

#[derive(Args)]
pub struct EvalArgs {
    /// The run folder.
    pub run: PathBuf,
    /// Data folder (default: the one the run recorded).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Worker threads (default: the run's).
    #[arg(long, value_parser = thread_count)]
    pub threads: Option<usize>,
    /// Evaluate although config.toml was edited since the run started or the data differ from those it was trained on (meta.json).
    #[arg(long)]
    pub accept_changes: bool,
}

#[derive(Args)]
pub struct TrainArgs {
    /// Read the configuration from a TOML file (a run's config.toml works); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue an interrupted run from its last checkpoint; its config.toml decides everything (only --data-dir and --accept-changes may be given with it).
    #[arg(long, conflicts_with = "config")]
    pub resume: Option<PathBuf>,
    /// With --resume: go on although config.toml was edited since the run started or the data differ from those it was trained on (meta.json); the differences are recorded in meta.json.
    #[arg(long, requires = "resume")]
    pub accept_changes: bool,
    /// Folder that receives the run folder.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Name of the run folder (default: dataset-model-act-rule-seedN; -2, -3… if taken).
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long, value_parser = choice::<DatasetKind>())]
    pub dataset: Option<DatasetKind>,
    /// Train on your own arrays: an .npz file (or a folder of .npy files) holding x_train, y_train and optionally x_test, y_test (float32/uint8 inputs, N×D or N×C×H×W; integer labels); implies --dataset file.
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// Input preprocessing [default: scale, i.e. [0, 1]]; gcn-zca: contrast-normalised and whitened (cached in $DFA_CACHE or ./cache).
    #[arg(long, value_parser = choice::<Preprocess>())]
    pub preprocess: Option<Preprocess>,
    /// Data folder (default: $DFA_DATA, else ./data).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Hidden layers: DEPTHxWIDTH (2x800) or widths (800,400,200) [default: 2x800].
    #[arg(long)]
    pub model: Option<String>,
    /// Hidden activation [default: tanh].
    #[arg(long, value_parser = choice::<Activation>())]
    pub act: Option<Activation>,
    /// Learning rule [default: dfa].
    #[arg(long, value_parser = rule_parser())]
    pub rule: Option<Rule>,
    /// A rule per hidden layer, bottom to top (bp, fa or dfa each; e.g. dfa,bp,bp), instead of --rule.
    #[arg(long, value_delimiter = ',', value_parser = rule_parser())]
    pub layer_rules: Vec<Rule>,
    /// Layers that keep their initial weights (1-based, comma-separated; the output layer is the last).
    #[arg(long, value_delimiter = ',')]
    pub freeze: Vec<usize>,
    /// Start from the weights and optimiser state of this run folder and continue its epoch count.
    #[arg(long)]
    pub init_from: Option<PathBuf>,
    /// DFA: layers of equal width share one feedback matrix.
    #[arg(long)]
    pub shared_feedback: bool,
    /// Layers without biases.
    #[arg(long)]
    pub no_bias: bool,
    /// Forward initialisation [default: auto = zero for FA/DFA with tanh/logistic, else uniform ±1/√fan_in].
    #[arg(long, value_parser = choice::<Init>())]
    pub init: Option<Init>,
    /// Bound of the uniform feedback matrices [default: 1/√n_i, n_i = receiving width].
    #[arg(long)]
    pub feedback_bound: Option<f32>,
    /// Non-zeros per row of sparse feedback (`--rule sdfa`: each hidden unit hears this many outputs) [default: 1].
    #[arg(long)]
    pub feedback_density: Option<usize>,
    /// Decoupled weight decay λ of the weights, θ ← θ − u − lr·λ·θ [default: the rule's: 0.01 for kp, else 0].
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// Optimiser [default: rmsprop].
    #[arg(long, value_parser = choice::<OptimiserKind>())]
    pub optimiser: Option<OptimiserKind>,
    /// Learning rate [default: 1e-4, see docs/learning-rate.md].
    #[arg(long)]
    pub lr: Option<f32>,
    /// RMSprop decay ρ [default: 0.99].
    #[arg(long)]
    pub rms_decay: Option<f32>,
    /// RMSprop ε, added after the square root [default: 1e-8].
    #[arg(long)]
    pub rms_eps: Option<f32>,
    /// Mini-batch size [default: 64].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Stop after this many epochs [default: 300].
    #[arg(long)]
    pub max_epochs: Option<usize>,
    /// Stop once the training error (%) is at or below this [default: 0.01].
    #[arg(long)]
    pub stop_train_error: Option<f64>,
    /// Never stop on the training error (the run ends with the schedule or --max-epochs).
    #[arg(long, conflicts_with = "stop_train_error")]
    pub no_early_stop: bool,
    /// Skip the full pass over the training set after each epoch (the paper's code protocol):
    /// the training error is the one counted on the mini-batches; needs --schedule-on batch or
    /// validation.
    #[arg(long)]
    pub no_full_pass: bool,
    /// Flush subnormal floats to zero on the run's threads (x86-64 FTZ/DAZ): a deep net whose
    /// values decay below 1.2e-38 then trains at full speed; changes only those values.
    #[arg(long)]
    pub flush_subnormals: bool,
    /// Turn off the paper's learning-rate schedule (halve on no improvement, then stop).
    #[arg(long)]
    pub no_lr_schedule: bool,
    /// Halvings before the schedule stops the run [default: 8].
    #[arg(long)]
    pub max_halvings: Option<usize>,
    /// Seed of every random draw [default: 1].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Worker threads, 0 = all cores [default: 0]. Results are bitwise reproducible for a given seed and thread count.
    #[arg(long, value_parser = thread_count)]
    pub threads: Option<usize>,
    /// The paper's dropout: p = 0.1 on the input, 0.5 on hidden layers (inverted dropout).
    #[arg(long)]
    pub dropout: bool,
    /// Dropout probability of the input units (overrides --dropout's 0.1).
    #[arg(long)]
    pub dropout_input: Option<f32>,
    /// Dropout probability of the hidden units (overrides --dropout's 0.5).
    #[arg(long)]
    pub dropout_hidden: Option<f32>,
    /// Adversarial training with the fast gradient sign method (ε = 0.08, α = 0.5 unless set).
    #[arg(long)]
    pub adversarial: bool,
    /// FGSM step ε of x + ε·sign(∂J/∂x) (implies --adversarial).
    #[arg(long)]
    pub adv_epsilon: Option<f32>,
    /// Weight α of the clean loss in α·J(x) + (1−α)·J(x_adv) [default: 0.5; the paper's code: 0].
    #[arg(long)]
    pub adv_alpha: Option<f32>,
    /// Do not clip adversarial inputs to [0, 1] (the paper's code adds ε·sign(∂J/∂x) as it is).
    #[arg(long)]
    pub adv_no_clip: bool,
    /// Count the mini-batch error on the adversarial inputs, not the clean ones (the paper's code).
    #[arg(long)]
    pub adv_batch_error: bool,
    /// Measure alignment angles (rule vs true gradient, per hidden layer) every N mini-batches
    /// and log them in metrics.jsonl.
    #[arg(long)]
    pub align_every: Option<usize>,
    /// Hold out the last N training samples as a validation set (MNIST: 10000).
    #[arg(long)]
    pub validation: Option<usize>,
    /// The error the learning-rate schedule watches [default: train].
    #[arg(long, value_parser = choice::<ScheduleOn>())]
    pub schedule_on: Option<ScheduleOn>,
    /// How stride-1 convolutions are computed: Winograd minimal filtering where it was measured
    /// faster, or always im2col + GEMM (the plain path), or Winograd wherever it serves
    /// [default: auto].
    #[arg(long, value_parser = choice::<ConvAlgo>())]
    pub conv_algo: Option<ConvAlgo>,
    /// Halve the learning rate only after N epochs in a row without a new best watched error
    /// (0: the paper's running-mean rule) [default: 0].
    #[arg(long)]
    pub patience: Option<usize>,
    /// Start the running mean of the paper's rule at this error (%) instead of the first
    /// epoch's; the paper's code uses 100.
    #[arg(long, value_name = "PERCENT")]
    pub schedule_start: Option<f64>,
    /// A fixed schedule instead of the adaptive rule: halve the learning rate after each of
    /// these epochs (comma-separated, increasing).
    #[arg(long, value_name = "EPOCHS", value_delimiter = ',')]
    pub halve_at: Vec<usize>,
    /// Follow the schedule of a finished run: its first learning rate, the epochs after which
    /// it lowered the rate (as --halve-at) and its number of epochs (as --max-epochs), unless
    /// --lr, --halve-at or --max-epochs say otherwise; e.g. to retrain on all the training data
    /// with the decay and training time chosen on a validation split.
    #[arg(long, value_name = "RUN_DIR")]
    pub schedule_from: Option<PathBuf>,
    /// Train on the first N training samples.
    #[arg(long)]
    pub train_subset: Option<usize>,
    /// Test on the first N test samples.
    #[arg(long)]
    pub test_subset: Option<usize>,
}

impl TrainArgs {
    /// The configuration: defaults, then the `--config` file, then the flags.
    pub fn resolve(&self) -> Result<TrainConfig> {
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
        if let Some(path) = &self.data {
            c.data = Some(std::path::absolute(path).unwrap_or(path.clone()));
            if self.dataset.is_none() {
                c.dataset = DatasetKind::File;
            }
        }
        if self.feedback_bound.is_some() {
            c.feedback_bound = self.feedback_bound;
        }
        if self.weight_decay.is_some() {
            c.weight_decay = self.weight_decay;
        }
        if let Some(k) = self.feedback_density {
            c.feedback_density = k;
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
        set!(conv_algo => conv_algo);
        if self.schedule_start.is_some() {
            c.schedule_start = self.schedule_start;
        }
        set!(dropout_input => dropout_input, dropout_hidden => dropout_hidden,
             adv_epsilon => adversarial_epsilon, adv_alpha => adversarial_alpha);
        if self.adv_no_clip {
            c.adversarial_clip = false;
        }
        c.adversarial_batch_error |= self.adv_batch_error;
        if self.no_bias {
            c.bias = false;
        }
        if self.no_full_pass {
            c.full_pass = false;
        }
        if self.flush_subnormals {
            c.flush_subnormals = true;
        }
        if self.no_early_stop {
            c.early_stop = false;
        }
        if self.no_lr_schedule {
            c.lr_schedule = false;
        }
        if let Some(dir) = &self.schedule_from {
            let followed =
                record::followed_schedule(dir).with_context(|| format!("--schedule-from {}", dir.display()))?;
            let lr = c.learning_rate;
            followed.apply(&mut c);
            if self.lr.is_some() {
                c.learning_rate = lr;
            }
            if self.max_epochs.is_none() {
                c.max_epochs = followed.epochs;
            }
        }
        if !self.halve_at.is_empty() {
            c.halve_at = self.halve_at.clone();
            // the followed run may have had no halvings (no schedule); the listed ones are one
            if self.schedule_from.is_some() && !self.no_lr_schedule {
                c.lr_schedule = true;
            }
        }
        c.data_dir = Some(data::resolve_data_dir(c.data_dir.as_deref()));
        c.threads = resolve_threads(c.threads);
        c.validate()?;
        Ok(c)
    }
}
