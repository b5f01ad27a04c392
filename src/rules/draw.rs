//! Drawing a network's feedback for its rules.
//!
//! Nøkland's `dfa-torch` places one feedback module, with its own `B`, after every hidden
//! activation; we do the same, and `share` (a rule that allows it, DFA) lets layers of equal
//! width use one `B`. The rule says each matrix's shape ([`LearningRule::feedback_shape`]).
//!
//! [`LearningRule::feedback_shape`]: crate::rules::api::LearningRule::feedback_shape

use crate::base::rng::DfaRng;
use crate::layers::Network;
use crate::rules::api::{Draw, FeedbackShape, Flow, Place, Rule, Signal};
use crate::rules::feedback::{Feedback, FeedbackMatrix};

/// What a run sets about its feedback draws: the uniform bound (`--feedback-bound`; default
/// `1/√fan`) and the non-zeros per row of sparse feedback (`--feedback-density`; default 1). An
/// `Option<f32>` is the bound alone.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FeedbackOptions {
    pub bound: Option<f32>,
    pub nonzeros: usize,
}

impl From<Option<f32>> for FeedbackOptions {
    fn from(bound: Option<f32>) -> Self {
        FeedbackOptions { bound, nonzeros: 1 }
    }
}

impl Feedback {
    /// Draws the feedback for `rule` on a dense network of `sizes = [n_in, n_1, …, n_out]`,
    /// uniform in `[-bound, bound]` with `bound = 1/√n_i` unless `options` set the bound.
    pub fn new(
        rule: Rule,
        sizes: &[usize],
        share: bool,
        options: impl Into<FeedbackOptions>,
        rng: &mut DfaRng,
    ) -> Self {
        let rules = vec![rule; sizes.len().saturating_sub(2)];
        let mut feedback = Self::per_layer(&rules, sizes, share, options, rng);
        feedback.direct = rule.flow() == Flow::Direct;
        feedback.signal = rule.signal();
        feedback.restack();
        feedback
    }

    /// Draws the feedback of a dense network whose hidden layer `i` follows `rules[i]`. For equal
    /// rules the draws are those of [`Feedback::new`].
    pub fn per_layer(
        rules: &[Rule],
        sizes: &[usize],
        share: bool,
        options: impl Into<FeedbackOptions>,
        rng: &mut DfaRng,
    ) -> Self {
        let n_out = *sizes.last().expect("sizes has an output layer");
        let hidden = &sizes[1..sizes.len() - 1];
        assert_eq!(rules.len(), hidden.len(), "one rule per hidden layer");
        let shapes = hidden.iter().zip(rules).enumerate().map(|(l, (&width, &rule))| {
            let place = Place { l, width, above: sizes[l + 2], above_kernels: None, n_out };
            rule.feedback_shape(&place).map(|s| (s, share && rule.shares_feedback(), rule.feedback_draw()))
        });
        Self::draw(shapes, options.into(), rng)
    }

    /// Draws the feedback of any network (dense layers and convolutional blocks), hidden layer
    /// `l` following `rules[l]`; nothing is shared. On a dense network the draws are those of
    /// [`Feedback::per_layer`].
    pub fn for_network(rules: &[Rule], net: &Network, options: impl Into<FeedbackOptions>, rng: &mut DfaRng) -> Self {
        assert_eq!(rules.len(), net.depth() - 1, "one rule per hidden layer");
        let shapes = rules.iter().enumerate().map(|(l, &rule)| {
            let above = &net.layers[l + 1];
            let place = Place {
                l,
                width: net.layers[l].fan_out,
                above: above.fan_out,
                above_kernels: above.block.map(|b| (b.conv.out_channels, b.conv.k())),
                n_out: net.n_outputs(),
            };
            rule.feedback_shape(&place).map(|s| (s, false, rule.feedback_draw()))
        });
        Self::draw(shapes, options.into(), rng)
    }

    /// One matrix per hidden layer and whether it may be shared (`None`: no feedback), uniform in `±1/√fan` (or
    /// `±options.bound`), drawn bottom to top; a shareable layer reuses an earlier matrix of its
    /// shape instead of drawing one.
    fn draw(
        shapes: impl Iterator<Item = Option<(FeedbackShape, bool, Draw)>>,
        options: FeedbackOptions,
        rng: &mut DfaRng,
    ) -> Self {
        let mut matrices: Vec<FeedbackMatrix> = Vec::new();
        let mut layer_matrix = Vec::new();
        for shape in shapes {
            let Some((FeedbackShape { rows, cols, fan }, shareable, kind)) = shape else {
                layer_matrix.push(None);
                continue;
            };
            let shared = shareable.then(|| matrices.iter().position(|m| m.rows == rows && m.cols == cols)).flatten();
            if let Some(k) = shared {
                layer_matrix.push(Some(k));
                continue;
            }
            let bound = options.bound.unwrap_or(1.0 / (fan as f32).sqrt());
            matrices.push(draw_matrix(kind, (rows, cols), (bound, options.nonzeros), rng));
            layer_matrix.push(Some(matrices.len() - 1));
        }
        Feedback {
            direct: false,
            signal: Signal::Error,
            matrices,
            layer_matrix,
            stacked: Vec::new(),
            offsets: Vec::new(),
        }
    }
}

/// A `rows × cols` matrix of `kind` with uniform bound `bound` (see [`Draw`]). The uniform draw
/// is the paper's and the draws of every earlier version; binary and ternary entries are read
/// off the same uniform draws (the same random stream), sparse rows draw their columns and then
/// their values, and keep only those (`k` values and columns per row).
fn draw_matrix(
    kind: Draw,
    (rows, cols): (usize, usize),
    (bound, nonzeros): (f32, usize),
    rng: &mut DfaRng,
) -> FeedbackMatrix {
    if kind == Draw::Sparse {
        let k = nonzeros.clamp(1, cols.max(1));
        let b = bound * (cols as f32 / k as f32).sqrt();
        let mut order: Vec<usize> = (0..cols).collect();
        let (mut values, mut columns) = (Vec::with_capacity(rows * k), Vec::with_capacity(rows * k));
        for _ in 0..rows {
            // the first k of a partial Fisher–Yates shuffle: k distinct columns
            for i in 0..k {
                let j = i + rng.below((cols - i) as u32) as usize;
                order.swap(i, j);
            }
            for &c in &order[..k] {
                columns.push(c as u32);
                values.push(rng.symmetric(b));
            }
        }
        return FeedbackMatrix { rows, cols, values, columns };
    }
    let mut values = vec![0.0; rows * cols];
    match kind {
        Draw::Uniform => rng.fill_symmetric(&mut values, bound),
        Draw::Binary => {
            rng.fill_symmetric(&mut values, bound);
            let s = bound / 3f32.sqrt();
            values.iter_mut().for_each(|v| *v = if *v < 0.0 { -s } else { s });
        }
        Draw::Ternary => {
            rng.fill_symmetric(&mut values, bound);
            let s = bound / 2f32.sqrt();
            let third = bound / 3.0;
            values.iter_mut().for_each(|v| {
                *v = if *v < -third {
                    -s
                } else if *v > third {
                    s
                } else {
                    0.0
                }
            });
        }
        Draw::Sparse => unreachable!("drawn above"),
    }
    FeedbackMatrix::dense(rows, cols, values)
}
