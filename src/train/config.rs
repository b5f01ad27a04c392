//! The configuration of a training run: everything that decides its numbers.
//!
//! A run folder stores the fully resolved configuration as `config.toml`; `dfa train --config
//! FILE` reads the same format, and command-line flags override what the file says.

use crate::base::error::{Error, Result};
use crate::data::DatasetKind;
use crate::layers::Init;
use crate::layers::activation::Activation;
use crate::layers::spec::{LayerSpec, hidden_layers, parse_layers};
use crate::optim::OptimiserKind;
use crate::rules::{FeedbackOptions, Rule, RuleSet};
use crate::train::parallel::Plan;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The thread count a configuration asks for (`0`: all cores).
pub fn resolve_threads(threads: usize) -> usize {
    if threads > 0 { threads } else { std::thread::available_parallelism().map_or(1, |n| n.get()) }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub dataset: DatasetKind,
    /// The inputs: `scale` (`[0, 1]`, the dense nets) or `gcn-zca` (whitened, the conv nets).
    /// Not written when it is the default, so that run folders stay readable by older versions.
    #[serde(skip_serializing_if = "crate::data::preprocess::Preprocess::is_scale")]
    pub preprocess: crate::data::preprocess::Preprocess,
    /// The data folder (resolved from `--data-dir`, `DFA_DATA` or `./data` when a run starts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Your own data (`dataset = "file"`): an `.npz` file or a folder of `.npy` files with
    /// `x_train`, `y_train` and optionally `x_test`, `y_test` (see `data::arrays`); recorded
    /// absolute when a run starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    /// Hidden layers: `DxW` (`2x800`: two layers of 800) or a list of widths (`800,400,200`).
    pub model: String,
    pub activation: Activation,
    pub rule: Rule,
    /// A rule per hidden layer, bottom to top, instead of `rule` everywhere (BP, FA or DFA each;
    /// e.g. `["dfa", "bp", "bp"]`: the first hidden layer learns from the direct feedback `B_1 e`,
    /// the layers above by back-propagation). Empty: `rule` for every layer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layer_rules: Vec<Rule>,
    /// Layers (1-based, the output layer is the last) whose weights and biases stay as they start.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub freeze: Vec<usize>,
    /// Start from the weights and optimiser state in this run folder's checkpoint (same model
    /// shape) and continue its epoch count; feedback matrices and random streams come from `seed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_from: Option<PathBuf>,
    /// DFA only: hidden layers of equal width share one feedback matrix.
    pub shared_feedback: bool,
    /// Layers have biases (without: biases stay zero and are never trained).
    pub bias: bool,
    pub init: Init,
    /// Bound of the uniform feedback matrices; default `1/√n_i` (`n_i`: the receiving width).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feedback_bound: Option<f32>,
    /// Non-zeros per row of sparse feedback (`sdfa`); 1 by default.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub feedback_density: usize,
    pub optimiser: OptimiserKind,
    pub learning_rate: f32,
    /// RMSprop's decay `ρ` of the running mean of squared gradients.
    pub rms_decay: f32,
    /// RMSprop's `ε`, added after the square root.
    pub rms_epsilon: f32,
    /// Decoupled weight decay `λ` of the weights (`θ ← θ − u − lr·λ·θ`; see `optim`); unset:
    /// the rule's (0.01 for Kolen–Pollack, else 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f32>,
    pub batch_size: usize,
    /// Epochs of this run (a run started with `init_from` counts its own epochs, not the source's).
    pub max_epochs: usize,
    /// Stop once the training error (percent, measured after the epoch) is at or below this.
    pub stop_train_error: f64,
    /// Whether the run stops at `stop_train_error` (off: it runs on until the schedule or
    /// `max_epochs` ends it). Not written when on, so that run folders stay readable by older
    /// versions.
    #[serde(skip_serializing_if = "is_true")]
    pub early_stop: bool,
    /// Whether the training error is measured by a full pass over the training split after every
    /// epoch. Off (the paper's code protocol): the training error is the one counted on the
    /// epoch's mini-batches as they were trained (`batch_error`), which the stopping rule then
    /// uses; `train_error` is written `null`, and the schedule must watch the batch or the
    /// validation error. Saves a forward pass over the training set per epoch.
    #[serde(skip_serializing_if = "is_true")]
    pub full_pass: bool,
    /// The paper's schedule: halve the learning rate when the epoch's training error is not below
    /// its running mean (`0.75·mean + 0.25·new`), at most `max_halvings` times, then stop.
    pub lr_schedule: bool,
    pub max_halvings: usize,
    pub seed: u64,
    /// Worker threads (0: all cores). Part of the configuration because results are guaranteed
    /// bitwise identical only for the same seed *and* thread count.
    pub threads: usize,
    /// Flush subnormal floats to zero on the run's threads (x86-64: MXCSR's FTZ and DAZ bits;
    /// `base::subnormal`). Off by default, as in PyTorch; on, a net whose values decay below
    /// 1.2e-38 no longer slows down ten-fold, and numbers change only where a value would have
    /// been subnormal. Not written when off, so that older run folders read the same.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub flush_subnormals: bool,
    /// Dropout probability of the input units (0: none; the paper's DO: 0.1). Inverted dropout:
    /// kept units are scaled by `1/(1−p)` during training, nothing changes at test time.
    pub dropout_input: f32,
    /// Dropout probability of every hidden unit (0: none; the paper's DO: 0.5).
    pub dropout_hidden: f32,
    /// Adversarial training (fast gradient sign method): `ε` of `x + ε·sign(∂J/∂x)` (0: off).
    pub adversarial_epsilon: f32,
    /// Weight of the clean loss in `α·J(x) + (1−α)·J(x_adv)` (0: train on the adversarial
    /// inputs alone, as the paper's code does by default).
    pub adversarial_alpha: f32,
    /// Whether the adversarial inputs are clipped to the pixel range, `clip(x + ε·sign(∂J/∂x), 0,
    /// 1)`. Off: `x + ε·sign(∂J/∂x)` as it is, as the paper's code does. Not written when on, so
    /// that older run folders read the same.
    #[serde(skip_serializing_if = "is_true")]
    pub adversarial_clip: bool,
    /// Under adversarial training, count the mini-batch error (`batch_error`, which the paper's
    /// code schedule watches) on the adversarial inputs instead of the clean ones, as the paper's
    /// code does (its error count sees the step's last forward pass). Not written when off.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub adversarial_batch_error: bool,
    /// Measure alignment angles every N mini-batches (0: never); see `alignment`.
    pub align_every: usize,
    /// Hold out the last N training samples as a validation set (0: none); its error is
    /// measured after every epoch.
    pub validation: usize,
    /// What the learning-rate schedule watches: the training error after the epoch, the error on
    /// the epoch's mini-batches as they were trained (what the paper's code watches), or the
    /// validation error (the paper's choice for its dropout runs).
    pub schedule_on: ScheduleOn,
    /// 0: the paper's running-mean rule. N > 0: halve when the watched error has not improved on
    /// its best for N epochs in a row (a plateau rule, robust to a noisy validation error).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub patience: usize,
    /// Where the running mean of the paper's rule starts (%): `None` (default) at the first
    /// epoch's error; the paper's code starts it at 100, so that the rate cannot be halved until
    /// the mean has come down to the error, ~10 epochs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_start: Option<f64>,
    /// A fixed schedule in place of the adaptive rule: halve the learning rate after each of these
    /// epochs (e.g. the epochs at which a run on a validation split halved it, to retrain on all
    /// the data with the decay chosen there); the run then ends at `max_epochs` or the stop
    /// error. Empty (default): the adaptive rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub halve_at: Vec<usize>,
    /// How stride-1 convolutions are computed: im2col + GEMM, or Winograd's minimal filtering
    /// (`layers::winograd`; fewer multiplications, slightly larger rounding error).
    #[serde(default, skip_serializing_if = "ConvAlgo::is_default")]
    pub conv_algo: ConvAlgo,
    /// Train on the first N training samples only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_subset: Option<usize>,
    /// Test on the first N test samples only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_subset: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            dataset: DatasetKind::Mnist,
            preprocess: Default::default(),
            data_dir: None,
            data: None,
            model: "2x800".into(),
            activation: Activation::Tanh,
            rule: Rule::DFA,
            layer_rules: Vec::new(),
            freeze: Vec::new(),
            init_from: None,
            shared_feedback: false,
            bias: true,
            init: Init::Auto,
            feedback_bound: None,
            feedback_density: 1,
            optimiser: OptimiserKind::Rmsprop,
            learning_rate: DEFAULT_LEARNING_RATE,
            rms_decay: 0.99,
            rms_epsilon: 1e-8,
            weight_decay: None,
            batch_size: 64,
            max_epochs: 300,
            stop_train_error: 0.01,
            early_stop: true,
            full_pass: true,
            flush_subnormals: false,
            lr_schedule: true,
            max_halvings: 8,
            seed: 1,
            threads: 0,
            dropout_input: 0.0,
            dropout_hidden: 0.0,
            adversarial_epsilon: 0.0,
            adversarial_alpha: 0.5,
            adversarial_clip: true,
            adversarial_batch_error: false,
            align_every: 0,
            validation: 0,
            schedule_on: ScheduleOn::Train,
            patience: 0,
            schedule_start: None,
            halve_at: Vec::new(),
            conv_algo: ConvAlgo::default(),
            train_subset: None,
            test_subset: None,
        }
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The error the learning-rate schedule watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleOn {
    /// The training error of the network after the epoch, over the whole training split.
    Train,
    /// The error counted on the mini-batches while they were trained on (the paper's code: its
    /// `ErrTrain` is the confusion matrix filled during the training pass, dropout on).
    Batch,
    /// The error on the held-out validation set.
    Validation,
}

crate::choices!(ScheduleOn {
    Train => "train": "The training error of the network after the epoch, over the whole training split",
    Batch => "batch": "The error counted on the mini-batches while they were trained on (the paper's code: its `ErrTrain` is the confusion matrix filled during the training pass, dropout on)",
    Validation => "validation": "The error on the held-out validation set",
});

/// How a network's convolutions are computed (`layers::winograd`, `docs/conv.md`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvAlgo {
    /// Winograd F(4×4, r×r) where it serves the layer and was measured faster (stride 1, square
    /// 3×3 or 5×5 kernel, at least 32 input channels: conv-tanh's second and third layers),
    /// im2col elsewhere (`docs/conv.md`).
    #[default]
    Auto,
    /// im2col + one GEMM for every convolution (the plain path).
    Im2col,
    /// Winograd F(2×2, r×r) wherever it serves the layer, im2col elsewhere.
    Winograd2,
    /// Winograd F(4×4, r×r) wherever it serves the layer, im2col elsewhere.
    Winograd4,
}

crate::choices!(ConvAlgo {
    Auto => "auto": "Winograd F(4×4, r×r) where it serves the layer and was measured faster (at least 32 input channels), im2col elsewhere",
    Im2col => "im2col": "im2col + one GEMM for every convolution (the plain path)",
    Winograd2 => "winograd2": "Winograd F(2×2, r×r) wherever it serves the layer (stride 1, square kernel), im2col elsewhere",
    Winograd4 => "winograd4": "Winograd F(4×4, r×r) wherever it serves the layer (stride 1, square kernel), im2col elsewhere",
});

impl ConvAlgo {
    fn is_default(&self) -> bool {
        *self == ConvAlgo::default()
    }

    /// The Winograd tile size this choice gives `conv`, or `None` for im2col.
    pub fn tile_for(self, conv: &crate::layers::conv::Conv2d) -> Option<usize> {
        use crate::layers::winograd::Winograd;
        let m = match self {
            ConvAlgo::Im2col => return None,
            ConvAlgo::Winograd2 => 2,
            ConvAlgo::Winograd4 | ConvAlgo::Auto => 4,
        };
        let measured_faster = conv.input.c >= 32;
        (Winograd::serves(m, conv) && (self != ConvAlgo::Auto || measured_faster)).then_some(m)
    }
}

/// The default RMSprop learning rate, chosen by measurement (see `docs/learning-rate.md`).
pub const DEFAULT_LEARNING_RATE: f32 = 1e-4;

impl TrainConfig {
    /// Checks every field; the error names the field and what was expected.
    pub fn validate(&self) -> Result<()> {
        self.validate_structure(hidden_layers(&self.model)?)?;
        self.validate_optimisation()?;
        self.validate_regularisation()
    }

    /// The rules, frozen layers and what convolutional nets support, for `depth` hidden layers.
    fn validate_structure(&self, depth: usize) -> Result<()> {
        match (self.dataset, &self.data) {
            (crate::data::DatasetKind::File, None) => {
                return Err(Error::config("data", "dataset 'file' needs the path of its arrays (--data my.npz)"));
            }
            (kind, Some(path)) if kind != crate::data::DatasetKind::File => {
                return Err(Error::config(
                    "data",
                    format!(
                        "{} is given with dataset '{}'; own data go with dataset 'file'",
                        path.display(),
                        kind.name()
                    ),
                ));
            }
            _ => {}
        }
        let conv = self.is_conv();
        if conv {
            let refuse = |field: &str, what: &str| {
                Err(Error::config(field, format!("{what} is not supported on convolutional nets yet")))
            };
            if let Some(r) = self.hidden_rules().into_iter().find(|r| !r.per_layer()) {
                return refuse("rule", &r.name().to_uppercase());
            }
            if self.adversarial() {
                return refuse("adversarial_epsilon", "adversarial training");
            }
            if self.align_every > 0 {
                return refuse("align_every", "alignment measurement");
            }
            if self.shared_feedback {
                return refuse("shared_feedback", "sharing feedback");
            }
        }
        if !self.layer_rules.is_empty() {
            if self.layer_rules.len() != depth {
                return Err(Error::config(
                    "layer_rules",
                    format!(
                        "{} rules for {depth} hidden layers; expected one per hidden layer",
                        self.layer_rules.len()
                    ),
                ));
            }
            if let Some(r) = self.layer_rules.iter().find(|r| !r.per_layer()) {
                let mixable: Vec<&str> = crate::rules::ALL.iter().filter(|r| r.per_layer()).map(|r| r.name()).collect();
                return Err(Error::config(
                    "layer_rules",
                    format!("'{r}' is a whole-network rule; expected one of {} for each layer", mixable.join(", ")),
                ));
            }
        }
        if let Some(&bad) = self.freeze.iter().find(|&&k| k == 0 || k > depth + 1) {
            return Err(Error::config(
                "freeze",
                format!("layer {bad}; expected layers 1 to {} (1-based, the output layer last)", depth + 1),
            ));
        }
        Ok(())
    }

    /// The optimiser, the protocol's numbers, threads and subsets.
    fn validate_optimisation(&self) -> Result<()> {
        let positive = |field: &str, v: f32| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::config(field, format!("{v}; expected a finite number > 0")))
            }
        };
        positive("learning_rate", self.learning_rate)?;
        positive("rms_epsilon", self.rms_epsilon)?;
        if let Some(b) = self.feedback_bound {
            positive("feedback_bound", b)?;
        }
        if let Some(wd) = self.weight_decay.filter(|wd| !(wd.is_finite() && *wd >= 0.0)) {
            return Err(Error::config("weight_decay", format!("{wd}; expected a finite number ≥ 0")));
        }
        if self.feedback_density == 0 {
            return Err(Error::config("feedback_density", "0; expected at least 1 non-zero per row"));
        }
        if !(0.0..1.0).contains(&self.rms_decay) {
            return Err(Error::config("rms_decay", format!("{}; expected a number in [0, 1)", self.rms_decay)));
        }
        if self.batch_size == 0 || self.batch_size > 1 << 16 {
            return Err(Error::config("batch_size", format!("{}; expected 1 to 65536", self.batch_size)));
        }
        if self.max_epochs == 0 {
            return Err(Error::config("max_epochs", "0; expected at least 1"));
        }
        if !(self.stop_train_error >= 0.0 && self.stop_train_error <= 100.0) {
            return Err(Error::config(
                "stop_train_error",
                format!("{}; expected a percentage in [0, 100]", self.stop_train_error),
            ));
        }
        if self.threads > 1024 {
            return Err(Error::config("threads", format!("{}; expected 0 (all cores) to 1024", self.threads)));
        }
        if self.train_subset == Some(0) || self.test_subset == Some(0) {
            return Err(Error::config("train_subset/test_subset", "0; expected at least 1 sample"));
        }
        Ok(())
    }

    /// Dropout, adversarial training, the schedule's watched error and shared feedback.
    fn validate_regularisation(&self) -> Result<()> {
        for (field, p) in [("dropout_input", self.dropout_input), ("dropout_hidden", self.dropout_hidden)] {
            if !(0.0..1.0).contains(&p) {
                return Err(Error::config(field, format!("{p}; expected a probability in [0, 1)")));
            }
        }
        if !(self.adversarial_epsilon >= 0.0 && self.adversarial_epsilon.is_finite()) {
            return Err(Error::config(
                "adversarial_epsilon",
                format!("{}; expected a number ≥ 0", self.adversarial_epsilon),
            ));
        }
        if !(0.0..=1.0).contains(&self.adversarial_alpha) {
            return Err(Error::config(
                "adversarial_alpha",
                format!("{}; expected a number in [0, 1]", self.adversarial_alpha),
            ));
        }
        if !self.adversarial() {
            if !self.adversarial_clip {
                return Err(Error::config(
                    "adversarial_clip",
                    "applies to adversarial training only; set adversarial_epsilon > 0",
                ));
            }
            if self.adversarial_batch_error {
                return Err(Error::config(
                    "adversarial_batch_error",
                    "applies to adversarial training only; set adversarial_epsilon > 0",
                ));
            }
        }
        if self.adversarial() && self.dropout() {
            return Err(Error::config(
                "adversarial_epsilon",
                "adversarial training and dropout are not combined (the paper uses them separately)",
            ));
        }
        if let Some(start) = self.schedule_start
            && !(0.0..=100.0).contains(&start)
        {
            return Err(Error::config("schedule_start", format!("must be an error in % (0 to 100), got {start}")));
        }
        if !self.full_pass && self.schedule_on == ScheduleOn::Train {
            return Err(Error::config(
                "schedule_on",
                "'train' watches the full-pass training error, which full_pass = false turns off; use 'batch' or 'validation'",
            ));
        }
        if self.flush_subnormals && !crate::base::subnormal::SUPPORTED {
            return Err(Error::config(
                "flush_subnormals",
                "only x86-64 machines can flush subnormals; set it to false",
            ));
        }
        if !self.halve_at.is_empty() {
            if !self.lr_schedule {
                return Err(Error::config("halve_at", "is a learning-rate schedule; lr_schedule = false turns it off"));
            }
            if self.patience > 0 {
                return Err(Error::config(
                    "halve_at",
                    "replaces the adaptive rule, which patience configures; set one",
                ));
            }
            if self.halve_at[0] == 0 || self.halve_at.windows(2).any(|w| w[0] >= w[1]) {
                return Err(Error::config(
                    "halve_at",
                    format!("expected epochs ≥ 1 in increasing order, got {:?}", self.halve_at),
                ));
            }
        }
        if self.schedule_on == ScheduleOn::Validation && self.validation == 0 {
            return Err(Error::config("schedule_on", "'validation' needs a validation set (validation = N > 0)"));
        }
        if self.shared_feedback && self.hidden_rules().iter().any(|r| !r.shares_feedback()) {
            let can: Vec<&str> = crate::rules::ALL.iter().filter(|r| r.shares_feedback()).map(|r| r.name()).collect();
            return Err(Error::config(
                "shared_feedback",
                format!(
                    "only {} can share feedback matrices, the rule is {}",
                    can.join(", ").to_uppercase(),
                    self.rule_name()
                ),
            ));
        }
        Ok(())
    }

    pub fn dropout(&self) -> bool {
        self.dropout_input > 0.0 || self.dropout_hidden > 0.0
    }

    pub fn adversarial(&self) -> bool {
        self.adversarial_epsilon > 0.0
    }

    /// Whether the model has convolutional blocks.
    pub fn is_conv(&self) -> bool {
        parse_layers(&self.model).is_ok_and(|l| l.iter().any(|s| matches!(s, LayerSpec::Conv { .. })))
    }

    /// The rule of every hidden layer, bottom to top (`layer_rules`, else `rule` everywhere).
    pub fn hidden_rules(&self) -> Vec<Rule> {
        if self.layer_rules.is_empty() {
            vec![self.rule; hidden_layers(&self.model).unwrap_or(0)]
        } else {
            self.layer_rules.clone()
        }
    }

    /// The feedback draws' settings (`--feedback-bound`, `--feedback-density`).
    pub fn feedback_options(&self) -> FeedbackOptions {
        FeedbackOptions { bound: self.feedback_bound, nonzeros: self.feedback_density }
    }

    /// The decoupled weight decay of the run: `weight_decay`, or the rules' when unset.
    pub fn resolved_weight_decay(&self) -> f32 {
        self.weight_decay.unwrap_or_else(|| self.rule_set().weight_decay())
    }

    /// The rules of the hidden layers, as the trainer uses them.
    pub fn rule_set(&self) -> RuleSet {
        RuleSet::new(self.layer_rules.is_empty().then_some(self.rule), self.hidden_rules())
    }

    /// What the parallel engine needs to know of this run to pick its schedules.
    pub fn plan(&self) -> Plan {
        Plan {
            rules: self.rule_set(),
            dropout: self.dropout(),
            adversarial: self.adversarial(),
            measures_alignment: self.align_every > 0,
        }
    }

    /// The name of the learning rule for reports: `rule`, or the per-layer rules joined by `+`.
    pub fn rule_name(&self) -> String {
        if self.layer_rules.is_empty() {
            self.rule.name().to_string()
        } else {
            self.layer_rules.iter().map(|r| r.name()).collect::<Vec<_>>().join("+")
        }
    }

    /// Whether the forward weights start uniform (else zero), after resolving `Init::Auto`:
    /// zero when every hidden layer learns by FA or DFA with tanh or logistic units, uniform for
    /// BP, IFA, mixtures with BP and every ReLU net.
    pub fn uniform_init(&self) -> bool {
        match self.init {
            Init::Zero => false,
            Init::Uniform => true,
            Init::Auto => {
                !(self.hidden_rules().iter().all(|r| r.starts_from_zero()) && self.activation != Activation::Relu)
            }
        }
    }

    /// Choices that cannot learn, in words (empty when all is well).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let depth = hidden_layers(&self.model).unwrap_or(0);
        if !self.uniform_init() {
            if self.activation == Activation::Relu {
                w.push("ReLU from zero initialisation cannot learn: f'(0) = 0 and h = 0, so no hidden layer ever receives an update (use --init uniform)".into());
            }
            if let Some(why) = self.rule.zero_init_warning(depth) {
                w.push(why.into());
            }
        }
        w
    }

    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let config: TrainConfig = toml::from_str(text).map_err(|e| {
            Error::config(
                origin,
                format!("not a valid training configuration: {}", crate::base::io::toml_error(&e, text)),
            )
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a TrainConfig always serialises")
    }
}

/// Serde's default and `skip_serializing_if` for fields that default to 1.
fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

/// Serde's `skip_serializing_if` for fields that default to true.
fn is_true(b: &bool) -> bool {
    *b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_round_trip_and_unknown_fields() {
        let c = TrainConfig { rule: Rule::IFA, model: "4x100".into(), train_subset: Some(10), ..Default::default() };
        let back = TrainConfig::from_toml(&c.to_toml(), "x").unwrap();
        assert_eq!(c, back);
        let e = TrainConfig::from_toml("lerning_rate = 1.0", "cfg.toml").unwrap_err().to_string();
        assert!(e.contains("cfg.toml") && e.contains("lerning_rate"), "{e}");
        let e = TrainConfig::from_toml("learning_rate = -1.0", "cfg.toml").unwrap_err().to_string();
        assert!(e.contains("learning_rate"), "{e}");
    }

    #[test]
    fn paper_initialisation_and_warnings() {
        let c =
            |rule, activation, init| TrainConfig { rule, activation, init, model: "2x10".into(), ..Default::default() };
        assert!(!c(Rule::DFA, Activation::Tanh, Init::Auto).uniform_init());
        assert!(!c(Rule::FA, Activation::Logistic, Init::Auto).uniform_init());
        assert!(c(Rule::DFA, Activation::Relu, Init::Auto).uniform_init());
        assert!(c(Rule::BP, Activation::Tanh, Init::Auto).uniform_init());
        assert!(c(Rule::IFA, Activation::Tanh, Init::Auto).uniform_init());
        assert!(c(Rule::DFA, Activation::Tanh, Init::Auto).warnings().is_empty());
        assert_eq!(c(Rule::IFA, Activation::Tanh, Init::Zero).warnings().len(), 1);
        assert_eq!(c(Rule::DFA, Activation::Relu, Init::Zero).warnings().len(), 1);
    }

    #[test]
    fn layer_rules_and_freeze_are_checked() {
        let c = |layer_rules: Vec<Rule>, freeze: Vec<usize>| {
            TrainConfig { model: "3x50".into(), layer_rules, freeze, ..Default::default() }.validate()
        };
        assert!(c(vec![Rule::DFA, Rule::BP, Rule::BP], vec![1, 4]).is_ok());
        for (rules, freeze, field) in [
            (vec![Rule::DFA, Rule::BP], vec![], "layer_rules"),
            (vec![Rule::IFA, Rule::BP, Rule::BP], vec![], "layer_rules"),
            (vec![], vec![0], "freeze"),
            (vec![], vec![5], "freeze"),
        ] {
            let e = c(rules, freeze).unwrap_err().to_string();
            assert!(e.contains(field) && e.contains("expected"), "{e}");
        }
        let mixed = TrainConfig {
            model: "3x50".into(),
            layer_rules: vec![Rule::DFA, Rule::BP, Rule::BP],
            ..Default::default()
        };
        assert_eq!(mixed.rule_name(), "dfa+bp+bp");
        assert!(mixed.uniform_init(), "a mixture with BP starts from random weights");
        let back = TrainConfig::from_toml(&mixed.to_toml(), "x").unwrap();
        assert_eq!(back, mixed);
        // defaults of later versions stay out of config.toml (older versions refuse unknown fields)
        assert!(!mixed.to_toml().contains("preprocess"));
        let whitened = TrainConfig { preprocess: crate::data::preprocess::Preprocess::GcnZca, ..mixed };
        assert!(whitened.to_toml().contains("preprocess = \"gcn-zca\""));
        assert_eq!(TrainConfig::from_toml(&whitened.to_toml(), "x").unwrap(), whitened);
    }
}
