//! BP and FA on two threads: the chain of update directions runs down the net while the layers
//! whose direction is final are already being updated.

use super::plan::Plan;
use super::shares::LayerShares;
use super::updates::{Batch, Learner, layers_balance};
use crate::layers::{Dense, Network};
use crate::rules::{self, Rule, Source};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Whether a training step of `net` under `plan` on `threads` threads runs the BP or FA chain
/// beside the layer updates ([`chain_and_update`]) instead of before them. Only on two threads
/// (see its deadlock note), for one rule throughout on a dense net, and where it pays
/// ([`overlap_pays`]); the alignment measurement needs all directions first and takes the other
/// path. Either way the numbers are the same.
pub fn overlaps_chain(plan: &Plan, net: &Network, threads: usize) -> bool {
    plan.rules.chain().is_some()
        && !plan.rules.feedback_changes()
        && !plan.adversarial
        && !net.has_blocks()
        && threads == 2
        && layers_balance(net, threads)
        && overlap_pays(net)
}

/// Whether overlapping the BP/FA chain with the updates ([`chain_and_update`]) should beat
/// splitting every product of the chain over both threads and then the updates. The first layer's
/// update can only start at the end of the chain (its direction comes last), so overlapping runs
/// the chain on one thread (`C`) then that update (`U_0`) beside the other layers' updates (`R`):
/// about `max(C + U_0, R)`; splitting the chain gives about `C/2 + max(U_0, R)`. Costs in
/// multiply-adds per sample; an update costs its gradient product plus ~50 % for RMSprop.
/// 7x240 and 100x240 overlap; 2x800 and 3x400 (one or two large chain steps) do not. (Nets that
/// pipeline, 100x240 among them, run that schedule instead.)
fn overlap_pays(net: &Network) -> bool {
    let update = |l: &Dense| if l.frozen { 0.0 } else { 1.5 * l.work() as f64 };
    let chain: f64 = net.layers[1..].iter().map(|l| l.work() as f64).sum();
    let first = update(&net.layers[0]);
    let rest: f64 = net.layers[1..].iter().map(update).sum();
    (chain + first).max(rest) < chain / 2.0 + first.max(rest)
}

/// The layers a chain rule may read at step `l` of [`chain_and_update`]: layer `l` (nobody
/// updates it before step `l` is done) and, for a rule that transports weights, layer `l + 1`
/// (not handed out before step `l` is done, [`steps_before_update`]). Any other layer may be
/// being updated meanwhile, so asking for it panics. The nets it runs on are dense.
struct ChainView<'s, 'a> {
    shares: &'s LayerShares<'a>,
    l: usize,
    transports: bool,
}

impl rules::Layers for ChainView<'_, '_> {
    fn layer(&self, i: usize) -> &Dense {
        assert!(i == self.l || (i == self.l + 1 && self.transports), "layer {i} is being updated");
        // SAFETY: see the type's doc: nobody writes layer i while this step runs
        unsafe { self.shares.layer(i) }
    }

    fn is_block(&self, _i: usize) -> bool {
        false
    }
}

/// How many steps of the BP/FA chain (step `l` computes `δa_l`; they run from `l = depth − 2`
/// down to 0) must be done before layer `j` may be updated: `δa_j` must be known (the output
/// layer's `e` always is) and — BP — the chain must be done reading `W_j` (step `j − 1`).
fn steps_before_update(rule: Rule, depth: usize, j: usize) -> usize {
    match rule.transports_weights() {
        true => (depth - j).min(depth - 1),
        _ if j == depth - 1 => 0,
        _ => depth - 1 - j,
    }
}

/// The chain and the updates of one step, overlapped.
///
/// Step `l` of the chain computes `δa_l` from `δa_{l+1}` ([`rules::chain_step`]; BP reads
/// `W_{l+1}`, FA its fixed `B_l`). Layer `j` may be updated once `δa_j` is known and — BP — once
/// the chain has read `W_j` (step `j − 1`); the output layer, with `e`, as soon as BP has read
/// `W_L`, at once under FA. The calling thread runs the chain, splitting each product with the
/// other thread when that one is idle (it polls rayon while it waits), then updates the first
/// layer (the last to become ready, and usually the largest) and joins the other thread, which
/// takes the layers from the top down as they become ready. Every product and update is the same
/// computation as in [`rules::hidden_deltas`] + `update_layers`, so the bits are the same.
///
/// Deadlock-free on a pool of two threads: the chain never waits for the other thread (a product
/// half that nobody took is run by the chain thread itself), and the only jobs the waiting
/// thread can pick up are those halves.
pub(super) fn chain_and_update(rule: Rule, learner: &mut Learner<'_>, batch: Batch<'_>) {
    let depth = learner.net.depth();
    let activation = learner.net.activation;
    let streamed = learner.net.streams_weights();
    let feedback = learner.feedback;
    LayerShares::with(learner, batch, |shares| {
        let rows = shares.rows;
        // chain steps finished (step l is the (depth − 1 − l)-th), and the next layer to hand out
        // (counted from the output layer down to layer 1; layer 0 is the chain thread's)
        let done = AtomicUsize::new(0);
        let next = AtomicUsize::new(0);
        let take_layers = || {
            loop {
                // the chain is the critical path: help with a product half it offers first
                while rayon::yield_now() == Some(rayon::Yield::Executed) {}
                let k = next.fetch_add(1, Ordering::Relaxed);
                if k + 1 >= depth {
                    return;
                }
                let j = depth - 1 - k;
                while done.load(Ordering::Acquire) < steps_before_update(rule, depth, j) {
                    // help with the chain's product halves meanwhile
                    if rayon::yield_now() != Some(rayon::Yield::Executed) {
                        std::hint::spin_loop();
                    }
                }
                // SAFETY: layer j is handed out once; the chain no longer reads W_j and δa_j is
                // final (the Acquire load of `done` pairs with its Release store)
                unsafe { shares.update(j, None) };
            }
        };
        let chain = || {
            for l in (0..depth - 1).rev() {
                let view = ChainView { shares, l, transports: rule.transports_weights() };
                let Source::Above(step) = rule.source(l, &view, feedback) else {
                    panic!("{rule}: a chain rule's signal comes from above")
                };
                // SAFETY: δa_l is written by this step only and read by nobody before `done` says
                // so; δa_{l+1} is final
                let (d, d_above) = unsafe { (shares.direction_mut(l), shares.direction(l + 1)) };
                rules::chain_step(
                    activation,
                    step,
                    d_above,
                    (&shares.ws.outputs, shares.masks()),
                    (l, rows),
                    d,
                    (2, streamed),
                );
                done.store(depth - 1 - l, Ordering::Release);
            }
            // SAFETY: layer 0 is never handed out; every step is done
            unsafe { shares.update(0, None) };
            take_layers();
        };
        rayon::join(chain, take_layers);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layer_waits_for_every_chain_step_that_touches_it() {
        // written out from what each step touches: step l writes δa_l and (BP) reads W_{l+1}; the
        // update of layer j reads δa_j and writes W_j, so it must wait for every step that writes
        // δa_j or reads W_j; step l is the (depth − 1 − l)-th
        for depth in [2, 3, 8, 101] {
            for rule in [Rule::BP, Rule::FA] {
                for j in 0..depth {
                    let touches = |l: usize| l == j || (rule == Rule::BP && l + 1 == j);
                    let want = (0..depth - 1).filter(|&l| touches(l)).map(|l| depth - 1 - l).max().unwrap_or(0);
                    assert_eq!(steps_before_update(rule, depth, j), want, "{rule:?} depth {depth} layer {j}");
                }
            }
        }
    }
}
