//! The layer updates of a step: each layer's weight gradient and optimiser step, spread over the
//! threads when the layers balance, and the choice of the layer that goes last, split.

use crate::layers::{Dense, Gradients, Network, Workspace};
use crate::optim::{Optimiser, UpdateRule};
use crate::rules::{self, Feedback, RuleSet};

/// What learns in a step, and at what rate: the forward weights, the optimiser's state, the
/// feedback and the rules that read it.
pub struct Learner<'a> {
    pub net: &'a mut Network,
    pub optimiser: &'a mut Optimiser,
    pub feedback: &'a Feedback,
    pub rules: &'a RuleSet,
    /// The schedule's rate for this step.
    pub learning_rate: f32,
}

/// A mini-batch in flight: its workspace (forward pass, output error, directions, gradients),
/// its input and its size.
pub struct Batch<'a> {
    pub ws: &'a mut Workspace,
    pub x: &'a [f32],
    pub rows: usize,
}

/// What [`update_layers`] does with the gradients it computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    /// Add them to the ones already in `ws.grads` (the second pass of adversarial training).
    pub accumulate: bool,
    /// Let the optimiser apply them.
    pub apply: bool,
    /// Compute each hidden direction inside its layer's update, from `e` (one direct rule).
    pub direct: bool,
}

impl Mode {
    /// The usual step: this batch's gradients, applied, with the directions already in `ws`.
    pub const STEP: Mode = Mode { accumulate: false, apply: true, direct: false };
    /// [`Mode::STEP`] for a direct rule.
    pub const DIRECT: Mode = Mode { accumulate: false, apply: true, direct: true };
    /// The gradients kept for a second pass, not applied.
    pub const KEEP: Mode = Mode { accumulate: false, apply: false, direct: false };
    /// Added to the kept ones, then applied.
    pub const ADD_AND_APPLY: Mode = Mode { accumulate: true, apply: true, direct: false };
}

/// Weight gradients and, with `mode.apply`, the optimiser's update of every layer (see [`Mode`]).
/// With `mode.direct` (a DFA net) each hidden layer's update direction is computed first, inside
/// its own task ([`rules::direct_delta`]); otherwise the directions are already in `ws.deltas`.
///
/// All update directions are known at this point (computed from the weights before this step),
/// so the layers are independent. With several threads each layer's gradient GEMM and update
/// run as one task on one thread, the tasks spread over the threads — unless one layer holds
/// so much of the work that the others cannot balance it (the 3072-wide first layer of the CIFAR
/// nets), in which case the layers go one after another with each GEMM split over the threads.
/// Either way the bits are the same: the GEMM's sums do not depend on how it is split.
pub fn update_layers(learner: &mut Learner<'_>, batch: Batch<'_>, mode: Mode, threads: usize) {
    let Batch { ws, x, rows } = batch;
    let net = &mut *learner.net;
    let direct = mode.direct.then_some(learner.feedback);
    let layer_parallel = threads > 1 && layers_balance(net, threads);
    // a layer too large for the others to balance goes last, split over the threads (decided
    // once per workspace and thread count)
    let last = match ws.split_last {
        Some((t, last)) if t == threads => last,
        _ => {
            let last = split_last(net, threads);
            ws.split_last = Some((threads, last));
            last
        }
    };
    let (rule, states) = learner.optimiser.layer_states(learner.learning_rate);
    // the gradient and delta buffers are taken out for the loop (moves, no allocation), so that
    // the layer inputs can be borrowed from the rest of the workspace
    let mut grads = std::mem::take(&mut ws.grads);
    let mut deltas = std::mem::take(&mut ws.deltas);
    let mut scratch = std::mem::take(&mut ws.scratch);
    let scratch_shared = (Shared(scratch.as_mut_ptr()), scratch.len());
    let depth = deltas.len();
    let (hidden, output) = deltas.split_at_mut(depth - 1);
    let e: &[f32] = &output[0];
    let shared: &Workspace = ws;
    let masks = shared.dropout_active.then_some(shared.masks.as_slice());
    let (activation, n_out) = (net.activation, net.n_outputs());
    let (accumulate, apply) = (mode.accumulate, mode.apply);
    let task = |l: usize,
                layer: &mut Dense,
                delta: Option<&mut Vec<f32>>,
                g: &mut Gradients,
                state: &mut Gradients,
                t: usize| {
        if layer.frozen {
            return;
        }
        let delta: &[f32] = match (delta, direct) {
            (Some(d), Some(fb)) => {
                rules::direct_delta(
                    fb,
                    (activation, &shared.outputs, masks),
                    (e, &shared.target),
                    (n_out, rows),
                    l,
                    layer.fan_out,
                    d,
                );
                d
            }
            (Some(d), None) => d,
            (None, _) => e,
        };
        // SAFETY: each thread runs one update at a time (a task with `t` threads is the only one)
        let g = unsafe { gradient_buffer(&scratch_shared, g, apply && !accumulate) };
        let input = shared.gradient_input(x, l);
        update_layer(layer, (delta, input, rows), g, state, (rule, mode), t);
    };
    if layer_parallel {
        use rayon::prelude::*;
        net.layers
            .par_iter_mut()
            .zip(hidden.par_iter_mut().map(Some).chain(rayon::iter::once(None)))
            .zip(grads.par_iter_mut())
            .zip(states.par_iter_mut())
            .enumerate()
            .with_max_len(1)
            .filter(|(l, _)| Some(*l) != last)
            .for_each(|(l, (((layer, d), g), state))| task(l, layer, d, g, state, 1));
        if let Some(l) = last {
            task(l, &mut net.layers[l], hidden.get_mut(l), &mut grads[l], &mut states[l], threads);
        }
    } else {
        let hidden = hidden.iter_mut().map(Some).chain(std::iter::once(None));
        for (l, (((layer, d), g), state)) in
            net.layers.iter_mut().zip(hidden).zip(grads.iter_mut()).zip(states.iter_mut()).enumerate()
        {
            task(l, layer, d, g, state, threads);
        }
    }
    ws.grads = grads;
    ws.deltas = deltas;
    ws.scratch = scratch;
}

/// The buffer an update computes a layer's gradient in: when the update applies it at once
/// (`at_once`), the calling thread's buffer of [`Workspace::scratch`] (the first one outside a
/// pool), hot from the thread's previous update; else (the gradient is kept, as adversarial
/// training's two passes need), or without buffers, the layer's own `own`.
///
/// SAFETY: `scratch` points to `scratch.1` buffers that outlive `'a`, and no other update may be
/// using the calling thread's buffer meanwhile (an update on one thread makes no rayon call; one
/// split over the threads is the only update in flight, its parts writing disjoint blocks).
pub(super) unsafe fn gradient_buffer<'a>(
    scratch: &(Shared<Gradients>, usize),
    own: &'a mut Gradients,
    at_once: bool,
) -> &'a mut Gradients {
    let (buffers, n) = (scratch.0.0, scratch.1);
    match rayon::current_thread_index().unwrap_or(0) {
        i if at_once && i < n => unsafe { &mut *buffers.add(i) },
        _ => own,
    }
}

/// The layer whose update [`update_layers`] runs after the others, split over the threads: the
/// largest, when there are enough other layers to keep the threads busy meanwhile (at least
/// `2·threads + 1` of a tenth of its work or more) and the largest-first greedy hand-out says
/// that ends the updates sooner (all layers as whole tasks, against the others as whole tasks
/// then the largest split evenly). Measured, two threads, min µs per step: 7x240 DFA (a 784-wide
/// first layer, 35 % of the work, beside six equal layers) 941 → 885 and 926 → 875; but 3x300
/// 706 → 711 and 1213 → 1231, which the estimate alone would have split, and 4x300 906 → 988,
/// 3x400 1065 → 1056 / 1024 → 1021 under a laxer rule.
pub(super) fn split_last(net: &Network, threads: usize) -> Option<usize> {
    let depth = net.depth();
    if !(2..=64).contains(&depth) || threads > 16 {
        return None;
    }
    let work = |l: usize| if net.layers[l].frozen { 0 } else { net.layers[l].work() };
    let big = (0..depth).max_by_key(|&l| work(l))?;
    let others = (0..depth).filter(|&l| l != big && work(l) * 10 >= work(big)).count();
    if others < 2 * threads + 1 {
        return None;
    }
    // largest-first greedy over the layers not in `skip` (a bit set), each to the least loaded
    let greedy = |skip: u64| {
        let mut loads = [0usize; 16];
        let mut done = skip;
        while let Some(l) = (0..depth).filter(|&l| done & (1 << l) == 0).max_by_key(|&l| work(l)) {
            done |= 1 << l;
            let least = (0..threads).min_by_key(|&t| loads[t]).unwrap_or(0);
            loads[least] += work(l);
        }
        loads[..threads].iter().copied().max().unwrap_or(0)
    };
    (greedy(1 << big) + work(big).div_ceil(threads) < greedy(0)).then_some(big)
}

/// Whether a net's layers can be spread over `threads` as whole tasks: no layer holds so much of
/// the work that the others cannot balance it (the 3072-wide first layer of the CIFAR nets does).
pub(super) fn layers_balance(net: &Network, threads: usize) -> bool {
    let work = net.layers.iter().map(|l| if l.frozen { 0 } else { l.work() });
    let total: usize = work.clone().sum();
    let largest = work.max().unwrap_or(0);
    net.depth() > 1 && largest * threads * 5 <= total * 6
}

/// One layer's weight gradient from its direction, input and batch size (added to `g` with
/// `mode.accumulate`) and, with `mode.apply`, its update. Callers skip frozen layers.
pub(super) fn update_layer(
    layer: &mut Dense,
    (delta, input, rows): (&[f32], &[f32], usize),
    g: &mut Gradients,
    state: &mut Gradients,
    (rule, mode): (UpdateRule, Mode),
    threads: usize,
) {
    // `g` may be a scratch buffer sized for the largest layer
    let (gw, gb) = (&mut g.weight[..layer.weight.len()], &mut g.bias[..layer.bias.len()]);
    layer.gradients_into((delta, input, rows), (gw, gb), mode.accumulate, threads);
    if mode.apply {
        rule.apply_parts(layer, gw, gb, state, threads);
    }
}

/// A pointer that crosses threads (see `shares::LayerShares`).
pub(super) struct Shared<T>(pub(super) *mut T);
// SAFETY: only dereferenced through `LayerShares` and `gradient_buffer`, whose callers give every
// element one writer at a time and no reader while it is written.
unsafe impl<T: Send> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Shared<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_layer_the_others_cannot_balance_is_split_last() {
        let net = |sizes: &[usize]| {
            Network::new(
                sizes,
                crate::Activation::Tanh,
                false,
                true,
                &mut crate::base::rng::DfaRng::new(1, crate::base::rng::Stream::Weights),
            )
        };
        let mut n7x240 = vec![784];
        n7x240.extend([240; 7]);
        n7x240.push(10);
        // 7x240: the first layer (188 k of 536 k multiply-adds) beside six of 57.6 k
        assert_eq!(split_last(&net(&n7x240), 2), Some(0));
        // too few other layers to fill both threads meanwhile (the estimate alone would split
        // 3x300's first layer; measured, that was slower)
        assert_eq!(split_last(&net(&[784, 300, 300, 300, 10]), 2), None);
        assert_eq!(split_last(&net(&[784, 300, 300, 300, 300, 10]), 2), None);
        assert_eq!(split_last(&net(&[784, 400, 400, 400, 10]), 2), None);
        assert_eq!(split_last(&net(&[784, 800, 800, 10]), 2), None);
        // no layer stands out
        let mut deep = vec![784];
        deep.extend([240; 100]);
        deep.push(10);
        assert_eq!(split_last(&net(&deep), 2), None);
        // one thread has nothing to balance
        assert_eq!(split_last(&net(&n7x240), 1), None);
    }
}
