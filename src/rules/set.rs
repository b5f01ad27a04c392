//! The rules of a run's hidden layers, and the one place that picks the driver for them.

use crate::base::rng::DfaRng;
use crate::layers::{Network, Workspace};
use crate::rules::api::{Flow, Rule};
use crate::rules::drive::{hidden_deltas, hidden_deltas_per_layer};
use crate::rules::feedback::Feedback;

/// The rule of every hidden layer of a run: one rule throughout, or one per layer.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleSet {
    /// The rule of every layer; `None` when the layers follow different rules.
    one: Option<Rule>,
    /// The rule of every hidden layer, bottom to top.
    hidden: Vec<Rule>,
}

impl RuleSet {
    /// `one`: the rule of every layer (`None` for per-layer rules); `hidden`: the rule of every
    /// hidden layer, bottom to top.
    pub fn new(one: Option<Rule>, hidden: Vec<Rule>) -> Self {
        RuleSet { one, hidden }
    }

    /// The rule of every layer, when there is one.
    pub fn one(&self) -> Option<Rule> {
        self.one
    }

    /// The rule of every hidden layer, bottom to top.
    pub fn hidden(&self) -> &[Rule] {
        &self.hidden
    }

    /// Whether one rule whose directions come straight from the output error (DFA) trains every
    /// layer: each hidden direction can then be computed inside its layer's update.
    pub fn direct(&self) -> bool {
        self.one.is_some_and(|r| r.flow() == Flow::Direct)
    }

    /// The one rule, when it runs a chain of directions down the net (BP, FA).
    pub fn chain(&self) -> Option<Rule> {
        self.one.filter(|r| r.flow() == Flow::Chain)
    }

    /// Whether a layer's rule recomputes its feedback from the forward weights (sign symmetry).
    pub fn refreshes_feedback(&self) -> bool {
        self.hidden.iter().any(|r| r.refreshes_feedback())
    }

    /// Whether a layer's feedback learns (Kolen–Pollack).
    pub fn learns_feedback(&self) -> bool {
        self.hidden.iter().any(|r| r.learns_feedback())
    }

    /// Whether some feedback changes between steps (it follows the weights or learns): the
    /// engine then finishes each step before the next one's directions.
    pub fn feedback_changes(&self) -> bool {
        self.refreshes_feedback() || self.learns_feedback()
    }

    /// The size of each feedback matrix that learns, 0 for the fixed ones (by matrix index).
    pub fn learning_feedback(&self, feedback: &Feedback) -> Vec<usize> {
        let mut sizes = vec![0; feedback.matrices.len()];
        for (l, _) in self.hidden.iter().enumerate().filter(|(_, r)| r.learns_feedback()) {
            if let Some(k) = feedback.layer_matrix.get(l).copied().flatten() {
                sizes[k] = feedback.matrices[k].values.len();
            }
        }
        sizes
    }

    /// The weight decay the rules ask for when the run sets none: the largest of theirs.
    pub fn weight_decay(&self) -> f32 {
        self.hidden.iter().map(|r| r.weight_decay()).fold(0.0, f32::max)
    }

    /// Recomputes the feedback of every layer whose rule follows the forward weights (after a
    /// step, and when the model is built).
    pub fn refresh_feedback(&self, net: &Network, feedback: &mut Feedback, rng: &mut DfaRng) {
        for (l, rule) in self.hidden.iter().enumerate().filter(|(_, r)| r.refreshes_feedback()) {
            if let Some(k) = feedback.layer_matrix.get(l).copied().flatten() {
                rule.refresh_feedback(l, &net.layers, &mut feedback.matrices[k], rng);
            }
        }
    }

    /// The hidden update directions of the batch in `ws` (its forward pass and output error
    /// done): [`hidden_deltas`] for a dense net under one rule, else [`hidden_deltas_per_layer`]
    /// (per-layer rules, and every net with convolutional blocks).
    pub fn hidden_deltas(&self, net: &Network, feedback: &Feedback, ws: &mut Workspace, rows: usize, threads: usize) {
        match self.one {
            Some(rule) if !net.has_blocks() => hidden_deltas(rule, net, feedback, ws, rows, threads),
            _ => hidden_deltas_per_layer(&self.hidden, net, feedback, ws, rows, threads),
        }
    }
}
