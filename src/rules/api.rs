//! What a learning rule is: the one trait every rule implements, and [`Rule`], the handle the
//! rest of the crate holds (parsed from its name, stored in configurations by its name).
//!
//! A rule says, for each hidden layer, where the signal that reaches the layer's output comes
//! from ([`Source`]: the layer above's direction, the output error, or the layer below's
//! direction) and through which matrix ([`Matrix`]); which feedback matrices it needs; and a few
//! facts the trainer plans with ([`Flow`], weight transport, initialisation). The drivers in
//! [`crate::rules::drive`] turn that into the update directions `δa_i`, in the order the flow
//! allows, with `⊙ f'(a_i)` and the dropout masks; no other part of the crate matches on a rule.

use crate::base::rng::DfaRng;
use crate::layers::Dense;
pub use crate::rules::feedback::Signal;
use crate::rules::feedback::{Feedback, FeedbackMatrix};

/// The order in which a rule's update directions can be computed, which decides how the trainer
/// schedules them (`train::parallel`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// `δa_l` from `δa_{l+1}`: a chain from the top down (BP, FA). A layer's update waits for
    /// its step of the chain.
    Chain,
    /// `δa_l` from the output error `e` alone (DFA): every layer at once, each direction computed
    /// inside its layer's update from one stacked feedback matrix.
    Direct,
    /// `δa_1` from `e`, then `δa_l` from `δa_{l-1}` up the net (IFA).
    Upward,
}

/// A product with a matrix stored row-major `rows × cols`: `input · M` (`input` is `N × rows`),
/// or with `transposed`, `input · Mᵀ` (`input` is `N × cols`). A sparse feedback matrix
/// (`columns` not empty, see [`FeedbackMatrix`]) is only used transposed.
#[derive(Clone, Copy, Debug)]
pub struct Matrix<'a> {
    pub values: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub transposed: bool,
    /// The columns of a sparse matrix's values; empty for a dense one.
    pub columns: &'a [u32],
}

impl<'a> Matrix<'a> {
    /// A layer's forward weights (`W_i`, `n_i × n_{i-1}`; a block's kernels `C_out × kh·kw·C_in`),
    /// multiplied as stored: `δa_i · W_i` sends a direction down through them (BP).
    pub fn weights(layer: &'a Dense) -> Self {
        let (_, rows, cols) = layer.gemm_dims(1);
        Matrix { values: &layer.weight, rows, cols, transposed: false, columns: &[] }
    }

    /// A layer's forward weights transposed: `δa_{i-1} · W_iᵀ` sends a direction up (IFA).
    pub fn weights_transposed(layer: &'a Dense) -> Self {
        Matrix { transposed: true, ..Self::weights(layer) }
    }

    /// A feedback matrix `B` (`n_l × k`, the paper's shape) applied as `x · Bᵀ` (the batch along
    /// the rows of `x`): `B δ` for every sample.
    pub fn feedback(b: &'a FeedbackMatrix) -> Self {
        Matrix { values: &b.values, rows: b.rows, cols: b.cols, transposed: true, columns: &b.columns }
    }

    /// A feedback matrix stored in the shape of the forward weights it stands for (FA below a
    /// convolutional block: kernels `C_out × kh·kw·C_in`), multiplied as stored.
    pub fn feedback_as_weights(b: &'a FeedbackMatrix) -> Self {
        assert!(!b.is_sparse(), "a sparse feedback matrix is not a set of kernels");
        Matrix { values: &b.values, rows: b.rows, cols: b.cols, transposed: false, columns: &[] }
    }

    /// `(k, n)`: the width of the input and of the product.
    pub fn dims(&self) -> (usize, usize) {
        if self.transposed { (self.cols, self.rows) } else { (self.rows, self.cols) }
    }
}

/// Where the signal arriving at hidden layer `l`'s output (before `⊙ f'(a_l)`) comes from.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// `δa_{l+1} · M` (the layer above's direction; `e` above the last hidden layer).
    Above(Matrix<'a>),
    /// `e · M` (the output error).
    Output(Matrix<'a>),
    /// `δa_{l-1} · M` (the layer below's direction).
    Below(Matrix<'a>),
}

/// The layers a rule may read when it says where a hidden layer's signal comes from.
///
/// Inside a fused step of the parallel engine, other layers are being updated meanwhile: there
/// only layer `l` and — for a rule that [transports weights](LearningRule::transports_weights)
/// — layer `l + 1` may be read (the engine's view panics on any other).
pub trait Layers {
    /// Layer `i` (0-based).
    fn layer(&self, i: usize) -> &Dense;
    /// Whether layer `i` is a convolutional block.
    fn is_block(&self, i: usize) -> bool;
}

impl Layers for Vec<Dense> {
    fn layer(&self, i: usize) -> &Dense {
        &self[i]
    }

    fn is_block(&self, i: usize) -> bool {
        self[i].block.is_some()
    }
}

/// Where a feedback matrix for hidden layer `l` would go: the facts a rule needs to give its
/// shape.
#[derive(Clone, Copy, Debug)]
pub struct Place {
    /// Hidden layer, 0-based.
    pub l: usize,
    /// `n_l`: the width of layer `l`'s output.
    pub width: usize,
    /// `n_{l+1}`: the width of the layer above's output.
    pub above: usize,
    /// The layer above is a convolutional block with kernels `C_out × kh·kw·C_in`.
    pub above_kernels: Option<(usize, usize)>,
    /// `n_out`: the number of outputs.
    pub n_out: usize,
}

/// A random feedback matrix to draw: `rows × cols`, uniform in `±1/√fan` (unless the run sets
/// the bound).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FeedbackShape {
    pub rows: usize,
    pub cols: usize,
    pub fan: usize,
}

/// How the entries of a rule's feedback matrices are drawn. Every kind has the variance of the
/// uniform draw in `±b` (`b²/3`, `b = 1/√fan` unless the run sets it), so that the projections
/// `B δ` have the same scale whichever is chosen (under RMSprop the scale hardly matters anyway).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Draw {
    /// Uniform in `±b` (the paper's).
    Uniform,
    /// `±s` with equal odds, `s = b/√3` (binary DFA).
    Binary,
    /// `−s`, `0`, `+s` with equal odds, `s = b/√2` (ternary DFA).
    Ternary,
    /// `k` non-zeros per row at distinct random columns, uniform in `±b·√(cols/k)` (sparse DFA:
    /// each unit hears `k` of the outputs); `k` is the run's `--feedback-density` (1 by default).
    Sparse,
}

/// A learning rule. One file under `src/rules/` implements it; `rules::ALL` registers it.
pub trait LearningRule: Send + Sync {
    /// The name on the command line and in configurations (lowercase).
    fn name(&self) -> &'static str;
    /// What it does, in one line (`--help`).
    fn about(&self) -> &'static str;
    /// The order its directions can be computed in.
    fn flow(&self) -> Flow;
    /// Where hidden layer `l`'s signal comes from. A rule that reads `layers.layer(l + 1)` must
    /// say that it [transports weights](LearningRule::transports_weights).
    fn source<'a>(&self, l: usize, layers: &'a dyn Layers, feedback: &'a Feedback) -> Source<'a>;
    /// What its `Source::Output` carries: the output error (the default) or the target.
    fn signal(&self) -> Signal {
        Signal::Error
    }
    /// The feedback matrix this rule needs for a hidden layer (`None`: none).
    fn feedback_shape(&self, place: &Place) -> Option<FeedbackShape>;
    /// How its feedback matrices' entries are drawn (default: uniform, the paper's).
    fn feedback_draw(&self) -> Draw {
        Draw::Uniform
    }
    /// Whether layers of equal width may use one feedback matrix (`--shared-feedback`).
    fn shares_feedback(&self) -> bool {
        false
    }
    /// Whether its signal reads the forward weights of the layer above (weight transport): the
    /// layer above may only be updated once the signal has been computed.
    fn transports_weights(&self) -> bool {
        false
    }
    /// Whether its feedback follows the forward weights (sign symmetry): it is then recomputed
    /// by [`LearningRule::refresh_feedback`] when the model is built and after every step, and
    /// the engine does not overlap a step's updates with the next step's directions.
    fn refreshes_feedback(&self) -> bool {
        false
    }
    /// Recomputes hidden layer `l`'s feedback matrix `b` (drawn in [`LearningRule::feedback_shape`])
    /// from the forward weights in `layers`, after a step and when the model is built.
    /// `rng`: the run's stream for random values drawn at a refresh (saved in checkpoints).
    fn refresh_feedback(&self, _l: usize, _layers: &dyn Layers, _b: &mut FeedbackMatrix, _rng: &mut DfaRng) {}
    /// Whether its feedback matrix `B_l` learns (Kolen–Pollack): after every step it receives
    /// the transposed update of the forward weights `W_{l+1}` it stands for, through the
    /// optimiser (with its own state, saved in checkpoints) and the run's weight decay. The
    /// engine then does not overlap a step's updates with the next step's directions.
    fn learns_feedback(&self) -> bool {
        false
    }
    /// The decoupled weight decay `λ` a run with this rule gets unless it sets one
    /// (`--weight-decay`); 0 for most rules.
    fn weight_decay(&self) -> f32 {
        0.0
    }
    /// Whether it can be one of several rules in a net (`--layer-rules`) and run on conv nets.
    fn per_layer(&self) -> bool {
        true
    }
    /// Whether the paper's automatic initialisation starts the forward weights at zero with tanh
    /// or logistic units (FA, DFA: yes; a rule whose signal passes through `W` cannot).
    fn starts_from_zero(&self) -> bool;
    /// Why zero initialisation cannot train a net with `hidden` layers under this rule, if so.
    fn zero_init_warning(&self, _hidden: usize) -> Option<&'static str> {
        None
    }
    /// Whether its feedback matrix `B_l` stands for `W_{l+1}ᵀ` (same shape), so that the angle
    /// between the two is a diagnostic (FA).
    fn feedback_mirrors_weights(&self) -> bool {
        false
    }
}

/// A learning rule, as the rest of the crate holds it: cheap to copy, compared and stored by
/// name; it dereferences to the [`LearningRule`] it stands for. Parse one with `str::parse`
/// (`"dfa".parse::<Rule>()`) or take it from [`Rule::all`].
#[derive(Clone, Copy)]
pub struct Rule(pub(crate) &'static dyn LearningRule);

impl std::ops::Deref for Rule {
    type Target = dyn LearningRule;

    fn deref(&self) -> &Self::Target {
        self.0
    }
}

impl Rule {
    /// Multiply-adds per sample of its signals on a net whose layers do `work[i]` multiply-adds
    /// per sample forward and have `widths[i]` outputs (the last is `n_out`): BP and FA send the
    /// direction through every layer above the first (`Σ_{i≥1} work_i`), DFA projects `e` onto
    /// every hidden layer (`n_out Σ n_i`), IFA onto the first and then up (`n_out n_1 + Σ_{1≤i<L-1}
    /// work_i`). The same count as `../shared/tools/ref_bench.py`.
    pub fn signal_macs(self, work: &[usize], widths: &[usize]) -> usize {
        let depth = work.len();
        let n_out = widths.last().copied().unwrap_or(0);
        let hidden = &widths[..depth.saturating_sub(1)];
        match self.flow() {
            Flow::Chain => work[1..].iter().sum(),
            Flow::Direct => n_out * hidden.iter().sum::<usize>(),
            Flow::Upward => {
                n_out * hidden.first().copied().unwrap_or(0) + work[1..depth.saturating_sub(1)].iter().sum::<usize>()
            }
        }
    }
}

impl PartialEq for Rule {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Rule {}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
