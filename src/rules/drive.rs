//! The drivers: a rule's [`Source`]s turned into the hidden layers' update directions `δa_i`,
//! in the order its [`Flow`] allows, with `⊙ f'(a_i)` and the dropout masks.
//!
//! Every rule then updates with `δW_i = -δa_i h_{i-1}ᵀ`, `δb_i = -δa_i` (batch mean), and the
//! output layer always uses `e`. With the batch along the rows, `B_i e` becomes `E B_iᵀ`.
//!
//! Two paths: [`hidden_deltas`] for a dense net under one rule (the chain's products read the
//! weights ahead on nets that stream them; a direct rule's projections are one fused pass over
//! the stacked feedback), and [`hidden_deltas_per_layer`] for nets whose layers follow different
//! rules or that have convolutional blocks (plain products; a block receives the signal at its
//! pooled output and takes it back inside itself).

use crate::base::linalg::{gemm_nn, gemm_nn_weights, gemm_nt, gemm_nt_weights};
use crate::layers::activation::{Activation, Columns};
use crate::layers::{Network, Workspace};
use crate::rules::api::{Flow, Matrix, Rule, Signal, Source};
use crate::rules::feedback::Feedback;

/// Projections of a direct rule below this many multiply-adds run on one thread (the 2x800 and
/// 7x240 nets' take ~10 µs; 100x240's 15 M are worth spreading over the layers).
const PARALLEL_PROJECTION: usize = 1 << 22;

/// `out = input · M` (or `· Mᵀ`) for `rows` samples, plain (the matrix is in cache).
pub fn product(out: &mut [f32], input: &[f32], m: Matrix<'_>, rows: usize, threads: usize) {
    let (k, n) = m.dims();
    if !m.columns.is_empty() {
        sparse_product(out, input, m, rows);
    } else if m.transposed {
        gemm_nt(out, input, m.values, (rows, k, n), false, threads);
    } else {
        gemm_nn(out, input, m.values, (rows, k, n), false, threads);
    }
}

/// [`product`] for a matrix that may come from memory: each thread's block is read ahead when
/// `streamed` (see `base::linalg`). The same bits.
fn product_streamed(out: &mut [f32], input: &[f32], m: Matrix<'_>, rows: usize, threads: usize, streamed: bool) {
    let (k, n) = m.dims();
    if !m.columns.is_empty() {
        sparse_product(out, input, m, rows);
    } else if m.transposed {
        gemm_nt_weights(out, input, m.values, (rows, k, n), threads, streamed);
    } else {
        gemm_nn_weights(out, input, m.values, (rows, k, n), threads, streamed);
    }
}

/// `out = input · Bᵀ` for a sparse `B` (`m.columns` given): `out[r][i] = Σ_t v_{i,t}
/// input[r][c_{i,t}]` over row `i`'s `k` non-zeros, in their stored order.
fn sparse_product(out: &mut [f32], input: &[f32], m: Matrix<'_>, rows: usize) {
    assert!(m.transposed, "a sparse feedback matrix is used transposed");
    let (n, cols) = (m.rows, m.cols);
    let k = m.values.len() / n.max(1);
    for (o, x) in out[..rows * n].chunks_exact_mut(n).zip(input.chunks_exact(cols)) {
        for ((o, v), c) in o.iter_mut().zip(m.values.chunks_exact(k)).zip(m.columns.chunks_exact(k)) {
            *o = v.iter().zip(c).fold(0.0, |acc, (&v, &c)| v.mul_add(x[c as usize], acc));
        }
    }
}

/// `d ⊙= m`: the mask that silenced a unit on the way up also silences its update, under every
/// rule.
fn mask(d: &mut [f32], m: &[f32]) {
    d.iter_mut().zip(m).for_each(|(d, m)| *d *= m);
}

/// One step down a chain rule's chain: `δa_l = (δa_{l+1} · M) ⊙ f'(a_l)`, then layer `l`'s
/// dropout mask when `masks` is given. `d_above` is `δa_{l+1}` (`rows × n_{l+1}`), `d` receives
/// `δa_l`; `streamed`: the matrix is probably not in cache ([`Network::streams_weights`]).
pub fn chain_step(
    f: Activation,
    m: Matrix<'_>,
    d_above: &[f32],
    (outputs, masks): (&[Vec<f32>], Option<&[Vec<f32>]>),
    (l, rows): (usize, usize),
    d: &mut [f32],
    (threads, streamed): (usize, bool),
) {
    product_streamed(d, d_above, m, rows, threads, streamed);
    let d = &mut d[..rows * m.dims().1];
    f.scale_by_derivative(d, &outputs[l]);
    if let Some(masks) = masks {
        mask(d, &masks[l + 1]);
    }
}

/// Fills the hidden update directions `ws.deltas[0..L-1]` of a dense net under one rule from
/// the output error already in `ws.deltas[L-1]`. `rows` is the mini-batch size.
pub fn hidden_deltas(rule: Rule, net: &Network, feedback: &Feedback, ws: &mut Workspace, rows: usize, threads: usize) {
    let depth = net.depth();
    let f = net.activation;
    let n_out = net.n_outputs();
    let (hidden, output) = ws.deltas.split_at_mut(depth - 1);
    let e = &output[0][..rows * n_out];
    let target = &ws.target[..rows * n_out];
    let signal = if rule.signal() == Signal::Target { target } else { e };
    let masks = ws.dropout_active.then_some(ws.masks.as_slice());
    let outputs = &ws.outputs;
    let streamed = net.streams_weights();
    let source = |l: usize| rule.source(l, &net.layers, feedback);
    match rule.flow() {
        Flow::Chain => {
            for l in (0..depth - 1).rev() {
                let (lower, upper) = hidden.split_at_mut(l + 1);
                let d_above: &[f32] = if l + 1 == depth - 1 { e } else { &upper[0] };
                let Source::Above(m) = source(l) else { panic!("{rule}: a chain rule's signal comes from above") };
                chain_step(f, m, d_above, (outputs, masks), (l, rows), &mut lower[l], (threads, streamed));
            }
        }
        Flow::Direct => {
            let delta = |l: usize, d: &mut Vec<f32>| {
                direct_delta(feedback, (f, outputs, masks), (e, target), (n_out, rows), l, net.layers[l].fan_out, d)
            };
            let work: usize = (0..depth - 1).filter_map(|l| feedback.for_layer(l)).map(|b| b.values.len()).sum();
            if threads > 1 && rows * work >= PARALLEL_PROJECTION {
                use rayon::prelude::*;
                hidden.par_iter_mut().enumerate().for_each(|(l, d)| delta(l, d));
            } else {
                hidden.iter_mut().enumerate().for_each(|(l, d)| delta(l, d));
            }
        }
        Flow::Upward => {
            for l in 0..depth - 1 {
                let (lower, upper) = hidden.split_at_mut(l);
                match source(l) {
                    Source::Output(m) => product(&mut upper[0], signal, m, rows, threads),
                    Source::Below(m) => product_streamed(&mut upper[0], &lower[l - 1], m, rows, threads, streamed),
                    Source::Above(_) => panic!("{rule}: an upward rule's signal comes from the output or below"),
                }
                let d = &mut upper[0][..rows * net.layers[l].fan_out];
                f.scale_by_derivative(d, &outputs[l]);
                if let Some(masks) = masks {
                    mask(d, &masks[l + 1]);
                }
            }
        }
    }
}

/// A direct rule's update direction of hidden layer `l` (0-based) into `d`:
/// `δa_l = (E B_lᵀ) ⊙ f'(a_l)`, times the layer's dropout mask when `masks` is given, from the
/// output error `e` (`rows × n_out`) — or the target `y/N` for a rule whose signal is the target
/// ([`Feedback::signal`]) — and the layer outputs of the forward pass. One fused pass
/// over the transposed stack `[B_1; …; B_{L-1}]ᵀ`: a GEMM with `k = n_out` is mostly output
/// traffic, so the `⊙ f'` is applied while the sums are in registers and `δa` is written once
/// (the same bits as the product followed by `⊙ f'`). Each layer's direction depends only on
/// `e`, so the trainer computes it inside that layer's update task.
#[allow(clippy::type_complexity)]
pub fn direct_delta(
    feedback: &Feedback,
    (f, outputs, masks): (Activation, &[Vec<f32>], Option<&[Vec<f32>]>),
    (e, target): (&[f32], &[f32]),
    (n_out, rows): (usize, usize),
    l: usize,
    width: usize,
    d: &mut [f32],
) {
    let e = if feedback.signal == Signal::Target { target } else { e };
    let d = &mut d[..rows * width];
    if let Some(b) = feedback.for_layer(l).filter(|b| b.is_sparse()) {
        // sparse B: each unit's few non-zeros, then ⊙ f'
        sparse_product(d, &e[..rows * n_out], Matrix::feedback(b), rows);
        f.scale_by_derivative(d, &outputs[l]);
        if let Some(masks) = masks {
            mask(d, &masks[l + 1]);
        }
        return;
    }
    let (stacked, offset) = feedback.stacked(l);
    let total = stacked.len() / n_out.max(1);
    let h = &outputs[l][..rows * width];
    let columns = Columns { values: stacked, stride: total, offset };
    f.project_by_derivative(d, (&e[..rows * n_out], n_out), columns, (h, width));
    if let Some(masks) = masks {
        mask(d, &masks[l + 1]);
    }
}

/// Like [`hidden_deltas`] for a network whose hidden layers follow different rules, or that has
/// convolutional blocks: each layer `l`, from the top down, receives its rule's signal at its
/// output (`δa_{l+1} · M` or `e · M`), then the dropout mask, then `⊙ f'(a_l)`. This is the
/// frozen-layer experiment's "DFA for the unfrozen layer, BP above it". Whole-network rules
/// (IFA) are not accepted here.
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
        let (layer, above) = (&net.layers[l], &net.layers[l + 1]);
        let n_l = layer.fan_out;
        let (lower, upper) = hidden.split_at_mut(l + 1);
        let d_above: &[f32] = if l + 1 == depth - 1 { e } else { &upper[0] };
        let (blocks_lower, blocks_upper) = ws.blocks.split_at_mut(l + 1);
        // the signal at layer l's output: into δa itself (dense) or the block's signal buffer
        let target: &mut [f32] = match &mut blocks_lower[l] {
            Some(s) => &mut s.signal,
            None => &mut lower[l],
        };
        let rule = rules[l];
        assert!(rule.per_layer(), "{rule} is a whole-network rule, not a per-layer one");
        match (rule.source(l, &net.layers, feedback), &above.block) {
            (Source::Above(m), Some(block)) => {
                let s = blocks_upper[0].as_mut().expect("block scratch");
                block.send_below(m.values, d_above, rows, &mut s.cols, target, threads);
            }
            (Source::Above(m), None) => product(target, d_above, m, rows, threads),
            (Source::Output(m), _) => {
                let signal = if rule.signal() == Signal::Target { &ws.target[..rows * n_out] } else { e };
                product(target, signal, m, rows, threads)
            }
            (Source::Below(_), _) => panic!("{rule}: a per-layer rule's signal comes from above or the output"),
        }
        if let Some(m) = masks {
            mask(&mut target[..rows * n_l], &m[l + 1]);
        }
        match (&layer.block, &blocks_lower[l]) {
            (Some(block), Some(s)) => block.backward(f, s, rows, &mut lower[l]),
            _ => f.scale_by_derivative(&mut lower[l][..rows * n_l], &ws.outputs[l]),
        }
    }
}

/// The weight gradients of every layer (`∂W_i = δa_i h_{i-1}ᵀ`, batch-summed; `e` already
/// carries `1/N`), written into `ws.grads`.
pub fn gradients(net: &Network, x: &[f32], ws: &mut Workspace, rows: usize, threads: usize) {
    for (l, layer) in net.layers.iter().enumerate() {
        let mut g = std::mem::take(&mut ws.grads[l]);
        layer.gradients((&ws.deltas[l], ws.gradient_input(x, l), rows), &mut g, false, threads);
        ws.grads[l] = g;
    }
}
