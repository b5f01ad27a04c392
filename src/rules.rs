//! The four learning rules: how each hidden layer's update direction `δa_i` is produced
//! (SPEC §1). This file is the whole difference between BP, FA, DFA and IFA.
//!
//! | rule | `δa_i` |
//! | --- | --- |
//! | BP  | `(W_{i+1}ᵀ δa_{i+1}) ⊙ f'(a_i)`, `δa_L = e` (the true gradient) |
//! | FA  | `(B_i δa_{i+1}) ⊙ f'(a_i)`, `B_i` fixed random, shape of `W_{i+1}ᵀ` |
//! | DFA | `(B_i e) ⊙ f'(a_i)`, `B_i` fixed random, `n_i × n_out` |
//! | IFA | `δa_1 = (B_1 e) ⊙ f'(a_1)`; `δa_i = (W_i δa_{i-1}) ⊙ f'(a_i)` for `i ≥ 2` |
//!
//! Every rule then updates with `δW_i = -δa_i h_{i-1}ᵀ`, `δb_i = -δa_i` (batch mean), and the
//! output layer always uses `e`. With the batch along the rows, `B_i e` becomes `E B_iᵀ`.

use crate::activation::Activation;
use crate::linalg::{gemm_nn, gemm_nn_weights, gemm_nt, gemm_nt_weights};
use crate::network::{Network, Workspace};
use crate::rng::DfaRng;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Rule {
    /// Back-propagation: the error travels back through the transposed forward weights.
    Bp,
    /// Feedback alignment: back through fixed random matrices of the same shapes.
    Fa,
    /// Direct feedback alignment: the output error straight to every hidden layer.
    Dfa,
    /// Indirect feedback alignment: the output error into the first hidden layer, then forward.
    Ifa,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::Bp => "bp",
            Rule::Fa => "fa",
            Rule::Dfa => "dfa",
            Rule::Ifa => "ifa",
        }
    }
}

/// A fixed random feedback matrix `B`, stored row-major `rows × cols` in the paper's shape
/// (`rows` = the width `n_i` of the layer that receives the feedback).
#[derive(Clone, Debug, PartialEq)]
pub struct FeedbackMatrix {
    pub rows: usize,
    pub cols: usize,
    pub values: Vec<f32>,
}

/// The fixed feedback of a network: the matrices and, per hidden layer, which matrix it uses
/// (`None`: the rule sends no feedback to that layer).
///
/// Nøkland's `dfa-torch` places one feedback module, with its own `B`, after every hidden
/// activation; we do the same, and `share` (DFA only) lets layers of equal width use one `B`.
#[derive(Clone, Debug, PartialEq)]
pub struct Feedback {
    /// The rule of a network that follows one rule throughout (`None`: a rule per layer).
    pub rule: Option<Rule>,
    pub matrices: Vec<FeedbackMatrix>,
    pub layer_matrix: Vec<Option<usize>>,
    /// DFA: every hidden layer's `B_i` stacked along the rows and transposed (`n_out × Σ n_i`,
    /// row-major), so that one pass projects `e` onto every layer (`B_i e` in the columns of
    /// layer `i`). Derived from `matrices` by [`Feedback::restack`].
    stacked: Vec<f32>,
    /// DFA: where each hidden layer's columns start in `stacked`.
    offsets: Vec<usize>,
}

impl Feedback {
    /// Draws the feedback for `rule` on a network of `sizes = [n_in, n_1, …, n_out]`, uniform in
    /// `[-bound, bound]` with `bound = 1/√n_i` unless `bound_override` is given.
    pub fn new(rule: Rule, sizes: &[usize], share: bool, bound_override: Option<f32>, rng: &mut DfaRng) -> Self {
        let rules = vec![rule; sizes.len().saturating_sub(2)];
        let mut feedback = Self::per_layer(&rules, sizes, share, bound_override, rng);
        feedback.rule = Some(rule);
        feedback.restack();
        feedback
    }

    /// Draws the feedback of a network whose hidden layer `i` follows `rules[i]` (BP, FA or DFA
    /// per layer, see [`hidden_deltas_per_layer`]). For equal rules the draws are those of
    /// [`Feedback::new`].
    pub fn per_layer(
        rules: &[Rule],
        sizes: &[usize],
        share: bool,
        bound_override: Option<f32>,
        rng: &mut DfaRng,
    ) -> Self {
        let n_out = *sizes.last().expect("sizes has an output layer");
        let hidden = &sizes[1..sizes.len() - 1];
        assert_eq!(rules.len(), hidden.len(), "one rule per hidden layer");
        let shapes = hidden.iter().zip(rules).enumerate().map(|(i, (&n_i, &rule))| {
            let cols = match rule {
                Rule::Bp => None,
                Rule::Fa => Some(sizes[i + 2]),
                Rule::Dfa => Some(n_out),
                Rule::Ifa => (i == 0).then_some(n_out),
            };
            // DFA matrices of equal shape may be shared
            cols.map(|cols| (n_i, cols, n_i, share && rule == Rule::Dfa))
        });
        Self::draw(shapes, bound_override, rng)
    }

    /// Draws the feedback of a network with convolutional blocks, hidden layer `l` following
    /// `rules[l]` (BP, FA or DFA): DFA `B_l` is `(layer l's output size) × n_out`, bound
    /// `1/√n_l`; FA below a dense layer `n_l × n_{l+1}`, bound `1/√n_l`; FA below a block a
    /// feedback kernel of the shape of that block's kernels (`C_out × kh·kw·C_in`), bound
    /// `1/√(kh·kw·C_in)` (how those kernels are drawn). On a dense network the draws are those of
    /// [`Feedback::per_layer`].
    pub fn for_network(rules: &[Rule], net: &Network, bound_override: Option<f32>, rng: &mut DfaRng) -> Self {
        assert_eq!(rules.len(), net.depth() - 1, "one rule per hidden layer");
        let shapes = rules.iter().enumerate().map(|(l, &rule)| {
            let n_l = net.layers[l].fan_out;
            let above = &net.layers[l + 1];
            match (rule, &above.block) {
                (Rule::Bp, _) => None,
                (Rule::Dfa, _) => Some((n_l, net.n_outputs(), n_l, false)),
                (Rule::Fa, None) => Some((n_l, above.fan_out, n_l, false)),
                (Rule::Fa, Some(b)) => Some((b.conv.out_channels, b.conv.k(), b.conv.k(), false)),
                (Rule::Ifa, _) => panic!("IFA is a whole-network rule, not a per-layer one"),
            }
        });
        Self::draw(shapes, bound_override, rng)
    }

    /// One matrix per hidden layer of `(rows, cols, fan, shareable)` (`None`: no feedback),
    /// uniform in `±1/√fan` (or `±bound_override`), drawn bottom to top; a shareable layer reuses
    /// an earlier matrix of its shape instead of drawing one.
    fn draw(
        shapes: impl Iterator<Item = Option<(usize, usize, usize, bool)>>,
        bound_override: Option<f32>,
        rng: &mut DfaRng,
    ) -> Self {
        let mut matrices: Vec<FeedbackMatrix> = Vec::new();
        let mut layer_matrix = Vec::new();
        for shape in shapes {
            let Some((rows, cols, fan, shareable)) = shape else {
                layer_matrix.push(None);
                continue;
            };
            let shared = shareable.then(|| matrices.iter().position(|m| m.rows == rows && m.cols == cols)).flatten();
            if let Some(k) = shared {
                layer_matrix.push(Some(k));
                continue;
            }
            let bound = bound_override.unwrap_or(1.0 / (fan as f32).sqrt());
            let mut values = vec![0.0; rows * cols];
            rng.fill_symmetric(&mut values, bound);
            matrices.push(FeedbackMatrix { rows, cols, values });
            layer_matrix.push(Some(matrices.len() - 1));
        }
        Feedback { rule: None, matrices, layer_matrix, stacked: Vec::new(), offsets: Vec::new() }
    }

    /// Rebuilds the stacked DFA matrix after `matrices` changed (e.g. loaded from a checkpoint).
    pub fn restack(&mut self) {
        let layers: Vec<&FeedbackMatrix> = (0..self.layer_matrix.len())
            .filter(|_| self.rule == Some(Rule::Dfa))
            .filter_map(|l| self.for_layer(l))
            .collect();
        let total: usize = layers.iter().map(|b| b.rows).sum();
        let n_out = layers.first().map_or(0, |b| b.cols);
        let mut stacked = vec![0.0; n_out * total];
        let mut offset = 0;
        let mut offsets = Vec::new();
        for b in layers {
            offsets.push(offset);
            for (i, row) in b.values.chunks_exact(b.cols).enumerate() {
                for (k, &v) in row.iter().enumerate() {
                    stacked[k * total + offset + i] = v;
                }
            }
            offset += b.rows;
        }
        self.stacked = stacked;
        self.offsets = offsets;
    }

    /// The feedback matrix of hidden layer `l` (0-based).
    pub fn for_layer(&self, l: usize) -> Option<&FeedbackMatrix> {
        self.layer_matrix.get(l).copied().flatten().map(|k| &self.matrices[k])
    }
}

/// What carries the update direction from layer `l + 1` down to layer `l` (BP and FA).
#[derive(Clone, Copy)]
pub enum ChainStep<'a> {
    /// BP: the forward weights `W_{l+1}` (`n_{l+1} × n_l`, row-major) and `n_{l+1}`.
    Bp(&'a [f32], usize),
    /// FA: the fixed feedback matrix `B_l` (`n_l × n_{l+1}`).
    Fa(&'a FeedbackMatrix),
}

/// One step down the chain of BP or FA: `δa_l = (δa_{l+1} W_{l+1}) ⊙ f'(a_l)` (BP) or
/// `(δa_{l+1} B_lᵀ) ⊙ f'(a_l)` (FA, `B_l` stored `n_l × n_{l+1}`), then layer `l`'s dropout mask
/// when `masks` is given. `d_above` is `δa_{l+1}` (`rows × n_{l+1}`), `d` receives `δa_l`;
/// `streamed`: the matrix is probably not in cache ([`Network::streams_weights`]).
#[allow(clippy::too_many_arguments)]
pub fn chain_step(
    f: Activation,
    step: ChainStep<'_>,
    d_above: &[f32],
    outputs: &[Vec<f32>],
    masks: Option<&[Vec<f32>]>,
    l: usize,
    rows: usize,
    d: &mut [f32],
    threads: usize,
    streamed: bool,
) {
    let n_l = match step {
        ChainStep::Bp(w, n_above) => {
            let n_l = w.len() / n_above;
            // rows × n_{l+1} times n_{l+1} × n_l
            gemm_nn_weights(d, d_above, w, (rows, n_above, n_l), threads, streamed);
            n_l
        }
        ChainStep::Fa(b) => {
            gemm_nt_weights(d, d_above, &b.values, (rows, b.cols, b.rows), threads, streamed);
            b.rows
        }
    };
    let d = &mut d[..rows * n_l];
    f.scale_by_derivative(d, &outputs[l]);
    // the mask that silenced a unit on the way up also silences its update
    if let Some(m) = masks {
        d.iter_mut().zip(&m[l + 1]).for_each(|(d, m)| *d *= m);
    }
}

/// DFA projections below this many multiply-adds run on one thread (the 2x800 and 7x240 nets'
/// take ~10 µs; 100x240's 15 M are worth spreading over the layers).
const PARALLEL_PROJECTION: usize = 1 << 22;

/// Fills the hidden update directions `ws.deltas[0..L-1]` from the output error already in
/// `ws.deltas[L-1]`, as `rule` prescribes. `rows` is the mini-batch size.
pub fn hidden_deltas(rule: Rule, net: &Network, feedback: &Feedback, ws: &mut Workspace, rows: usize, threads: usize) {
    let depth = net.depth();
    let f = net.activation;
    let n_out = net.n_outputs();
    let (hidden, output) = ws.deltas.split_at_mut(depth - 1);
    let e = &output[0][..rows * n_out];
    // `⊙ f'(a_l)`, then the dropout mask of layer l when one is active: the mask that silenced a
    // unit on the way up also silences its update, under every rule
    let masks = ws.dropout_active.then_some(&ws.masks);
    let outputs = &ws.outputs;
    let finish = |d: &mut [f32], l: usize| {
        f.scale_by_derivative(d, &outputs[l]);
        if let Some(m) = masks {
            d.iter_mut().zip(&m[l + 1]).for_each(|(d, m)| *d *= m);
        }
    };
    let missing = |l: usize| -> ! { panic!("{} feedback for hidden layer {l} was not drawn", rule.name()) };
    match rule {
        Rule::Bp | Rule::Fa => {
            let masks = masks.map(|m| m.as_slice());
            let streamed = net.streams_weights();
            for l in (0..depth - 1).rev() {
                let (lower, upper) = hidden.split_at_mut(l + 1);
                let d_above: &[f32] = if l + 1 == depth - 1 { e } else { &upper[0] };
                let step = match rule {
                    Rule::Bp => ChainStep::Bp(&net.layers[l + 1].weight, net.layers[l + 1].fan_out),
                    _ => ChainStep::Fa(feedback.for_layer(l).unwrap_or_else(|| missing(l))),
                };
                chain_step(f, step, d_above, outputs, masks, l, rows, &mut lower[l], threads, streamed);
            }
        }
        Rule::Dfa => {
            let masks = masks.map(|m| m.as_slice());
            assert_eq!(
                feedback.stacked.len(),
                n_out * net.layers[..depth - 1].iter().map(|l| l.fan_out).sum::<usize>(),
                "DFA feedback not stacked"
            );
            let delta = |l: usize, d: &mut Vec<f32>| {
                dfa_delta(f, feedback, outputs, masks, e, n_out, l, net.layers[l].fan_out, rows, d)
            };
            if threads > 1 && rows * feedback.stacked.len() >= PARALLEL_PROJECTION {
                use rayon::prelude::*;
                hidden.par_iter_mut().enumerate().for_each(|(l, d)| delta(l, d));
            } else {
                hidden.iter_mut().enumerate().for_each(|(l, d)| delta(l, d));
            }
        }
        Rule::Ifa => {
            let streamed = net.streams_weights();
            for l in 0..depth - 1 {
                let (lower, upper) = hidden.split_at_mut(l);
                if l == 0 {
                    let b = feedback.for_layer(0).unwrap_or_else(|| missing(0));
                    gemm_nt(&mut upper[0], e, &b.values, rows, b.cols, b.rows, false, threads);
                } else {
                    // δa_i = (W_i δa_{i-1}): rows × n_{i-1} times (n_i × n_{i-1})ᵀ
                    let w = &net.layers[l];
                    gemm_nt_weights(
                        &mut upper[0],
                        &lower[l - 1],
                        &w.weight,
                        (rows, w.fan_in, w.fan_out),
                        threads,
                        streamed,
                    );
                }
                let n_l = net.layers[l].fan_out;
                finish(&mut upper[0][..rows * n_l], l);
            }
        }
    }
}

/// DFA's update direction of hidden layer `l` (0-based) into `d`: `δa_l = (E B_lᵀ) ⊙ f'(a_l)`,
/// times the layer's dropout mask when `masks` is given, from the output error `e` (`rows ×
/// n_out`) and the layer outputs of the forward pass. One fused pass over the transposed stack
/// `[B_1; …; B_{L-1}]ᵀ`: a GEMM with `k = n_out` is mostly output traffic, so the `⊙ f'` is
/// applied while the sums are in registers and `δa` is written once (the same bits as the
/// product followed by `⊙ f'`). Each layer's direction depends only on `e`, so the trainer
/// computes it inside that layer's update task.
#[allow(clippy::too_many_arguments)]
pub fn dfa_delta(
    f: Activation,
    feedback: &Feedback,
    outputs: &[Vec<f32>],
    masks: Option<&[Vec<f32>]>,
    e: &[f32],
    n_out: usize,
    l: usize,
    width: usize,
    rows: usize,
    d: &mut [f32],
) {
    let total = feedback.stacked.len() / n_out.max(1);
    let offset = *feedback.offsets.get(l).expect("DFA feedback not stacked");
    let d = &mut d[..rows * width];
    let h = &outputs[l][..rows * width];
    f.project_by_derivative(d, &e[..rows * n_out], n_out, &feedback.stacked, total, offset, h, width);
    if let Some(m) = masks {
        d.iter_mut().zip(&m[l + 1]).for_each(|(d, m)| *d *= m);
    }
}

/// Like [`hidden_deltas`] for a network whose hidden layers follow different rules, or that has
/// convolutional blocks: layer `i` (0-based) receives the signal `(W_{i+1}ᵀ δa_{i+1})` under BP,
/// `(B_i δa_{i+1})` under FA and `(B_i e)` under DFA at its output, then `⊙ f'(a_i)` (and the
/// dropout mask), from the top down. This is the frozen-layer experiment's "DFA for the unfrozen
/// layer, BP above it". IFA is a whole-network rule and is not accepted here.
///
/// A convolutional block receives the signal at its (pooled) output, as SPEC §1 asks ("inject the
/// error after each max-pooling layer"); inside the block it goes back locally: through the
/// pool's argmax and `⊙ f'` to the convolution's `δa`. Sending a signal below a block (BP, FA) is
/// `col2im(δa · M)` with `M` its kernels (BP) or feedback kernels of the same shape (FA).
pub fn hidden_deltas_per_layer(
    rules: &[Rule],
    net: &Network,
    feedback: &Feedback,
    ws: &mut Workspace,
    rows: usize,
    threads: usize,
) {
    let depth = net.depth();
    assert_eq!(rules.len(), depth - 1, "one rule per hidden layer");
    let f = net.activation;
    let n_out = net.n_outputs();
    let (hidden, output) = ws.deltas.split_at_mut(depth - 1);
    let e = &output[0][..rows * n_out];
    let masks = ws.dropout_active.then_some(&ws.masks);
    for l in (0..depth - 1).rev() {
        let layer = &net.layers[l];
        let above = &net.layers[l + 1];
        let n_l = layer.fan_out;
        let (lower, upper) = hidden.split_at_mut(l + 1);
        let d_above: &[f32] = if l + 1 == depth - 1 { e } else { &upper[0] };
        let (blocks_lower, blocks_upper) = ws.blocks.split_at_mut(l + 1);
        // the signal at layer l's output: into δa itself (dense) or the block's signal buffer
        let target: &mut [f32] = match &mut blocks_lower[l] {
            Some(s) => &mut s.signal,
            None => &mut lower[l],
        };
        let feedback_of = |rule: Rule| {
            feedback
                .for_layer(l)
                .unwrap_or_else(|| panic!("{} feedback for hidden layer {l} was not drawn", rule.name()))
        };
        match (rules[l], &above.block) {
            (Rule::Dfa, _) => {
                let b = feedback_of(Rule::Dfa);
                gemm_nt(target, e, &b.values, rows, b.cols, b.rows, false, threads);
            }
            (Rule::Bp, None) => gemm_nn(target, d_above, &above.weight, rows, above.fan_out, n_l, false, threads),
            (Rule::Fa, None) => {
                let b = feedback_of(Rule::Fa);
                gemm_nt(target, d_above, &b.values, rows, b.cols, b.rows, false, threads);
            }
            (rule @ (Rule::Bp | Rule::Fa), Some(block)) => {
                let kernels = if rule == Rule::Bp { &above.weight } else { &feedback_of(Rule::Fa).values };
                let s = blocks_upper[0].as_mut().expect("block scratch");
                let (n, c_out, k) = above.gemm_dims(rows);
                gemm_nn(&mut s.cols, d_above, kernels, n, c_out, k, false, threads);
                block.conv.col2im(&s.cols, rows, target);
            }
            (Rule::Ifa, _) => panic!("IFA is a whole-network rule, not a per-layer one"),
        }
        if let Some(m) = masks {
            target[..rows * n_l].iter_mut().zip(&m[l + 1]).for_each(|(d, m)| *d *= m);
        }
        match (&layer.block, &blocks_lower[l]) {
            (Some(block), Some(s)) => {
                let d = &mut lower[l][..rows * block.conv_len()];
                match &block.pool {
                    Some(pool) => pool.backward(&s.signal, rows, &s.argmax, d),
                    None => d.copy_from_slice(&s.signal[..d.len()]),
                }
                f.scale_by_derivative(d, &s.act);
            }
            _ => f.scale_by_derivative(&mut lower[l][..rows * n_l], &ws.outputs[l]),
        }
    }
}

/// The rule's weight gradients of every layer (`∂W_i = δa_i h_{i-1}ᵀ`, batch-summed; `e`
/// already carries `1/N`), written into `ws.grads`.
pub fn gradients(net: &Network, x: &[f32], ws: &mut Workspace, rows: usize, threads: usize) {
    for (l, layer) in net.layers.iter().enumerate() {
        let mut g = std::mem::take(&mut ws.grads[l]);
        layer.gradients(&ws.deltas[l], ws.gradient_input(x, l), rows, &mut g, false, threads);
        ws.grads[l] = g;
    }
}
