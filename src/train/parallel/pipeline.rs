//! Pipelined steps: each mini-batch's layer updates run beside the next mini-batch's forward
//! pass, which takes each layer as soon as its update is done.

use super::plan::Plan;
use super::shares::LayerShares;
use super::updates::{Batch, Learner, Mode, layers_balance, update_layers};
use crate::layers::{Network, Workspace};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Pipelining starts at this many weight layers. Measured on this machine (2 threads, one
/// process, alternating blocks of steps, min µs per step, sequential → pipelined), DFA: 3x400
/// 1037 → 1231, 2x800 2973 → 3094, 4x800 5261 → 5429, 7x240 993 → 965, 20x240 2972 → 2944,
/// 100x240 14 504 → 12 603. With few layers the next forward pass waits for the largest update
/// (the first layer's) where splitting each product over the threads keeps both busy; with many
/// it reads each layer's weights right after their update, still in cache, instead of from
/// memory. BP, FA, IFA against their own schedules (median µs per step): 100x240 BP 16 340 →
/// 15 795 and 21 315 → 19 617, FA 19 220 → 16 847, IFA 16 489 → 15 663; 7x240 BP 1150 → 1161
/// (no gain), 2x800 BP 2514 → 2802.
const PIPELINE_DEPTH: usize = 16;

/// Whether a run of `plan` on `threads` threads pipelines its steps: each mini-batch's layer
/// updates run beside the next mini-batch's forward pass, which takes each layer as soon as its
/// update is done (and reads its weights while they are still in cache). Any rule (DFA computes
/// each direction inside its update; BP, FA and IFA compute all directions first, each chain
/// product split over the threads), on a dense net of at least [`PIPELINE_DEPTH`] layers without
/// dropout, alignment measurement or adversarial training, on several threads, where the layers
/// balance over the threads (see [`update_layers`]).
pub fn pipelines(plan: &Plan, net: &Network, threads: usize) -> bool {
    !net.has_blocks()
        && !plan.rules.feedback_changes()
        && !plan.dropout
        && !plan.adversarial
        && !plan.measures_alignment
        && threads > 1
        && net.depth() >= PIPELINE_DEPTH
        && layers_balance(net, threads)
}

/// The second set of buffers of a pipelined run: the next mini-batch's forward pass fills
/// them while the current one's updates run ([`update_beside_forward`]). Its workspace has no
/// gradients: the updates always use those of the trainer's workspace.
pub(super) struct Ahead {
    ws: Workspace,
    x: Vec<f32>,
    y: Vec<u8>,
    /// Per layer, the number of the last fused phase whose update of that layer is done.
    updated: Vec<AtomicUsize>,
    phase: usize,
}

impl Ahead {
    /// Buffers for mini-batches of up to `rows` samples of `dim` values.
    pub(super) fn new(net: &Network, rows: usize, dim: usize) -> Self {
        Ahead {
            // the next batch's forward pass needs no gradients: the one set (and the update
            // buffers) stay in the trainer's workspace
            ws: Workspace { grads: Vec::new(), ..Workspace::new(net, rows) },
            x: vec![0.0; rows * dim],
            y: vec![0; rows],
            updated: (0..net.depth()).map(|_| AtomicUsize::new(0)).collect(),
            phase: 0,
        }
    }
}

/// The current mini-batch's buffers of a pipelined run: workspace, input and labels. They end up
/// holding the last mini-batch.
pub struct Buffers<'a> {
    pub ws: &'a mut Workspace,
    pub x: &'a mut Vec<f32>,
    pub y: &'a mut Vec<u8>,
}

/// Copies mini-batch `indices` into an input and a label buffer.
pub type Loader<'a> = &'a dyn Fn(&[u32], &mut [f32], &mut [u8]);

/// Trains on `batches` in order with each batch's updates beside the next batch's forward pass;
/// `record(b, rows, loss, errors)` as in `Trainer::train_batches`. The numbers are those of one
/// batch after the other, and when this returns every update is made.
pub(super) fn train_pipelined<'b>(
    (ahead, threads): (&mut Ahead, usize),
    learner: &mut Learner<'_>,
    buffers: Buffers<'_>,
    mut batches: impl Iterator<Item = &'b [u32]>,
    load: Loader<'_>,
    record: &mut dyn FnMut(usize, usize, f64, usize) -> bool,
) {
    let Some(first) = batches.next() else { return };
    let Buffers { ws, x, y } = buffers;
    load(first, x, y);
    let mut rows = first.len();
    // a plain DFA net computes each layer's direction inside its update; the other rules (and
    // per-layer rules) compute every direction first, from the weights before the update
    let direct = learner.rules.direct();
    learner.net.forward(x, rows, ws, threads);
    let (loss, err) = ws.output_error(&y[..rows]);
    let mut more = record(0, rows, loss, err);
    for (b, idx) in batches.enumerate() {
        if !more {
            break;
        }
        load(idx, &mut ahead.x, &mut ahead.y);
        ahead.phase += 1;
        let next = Batch { ws: &mut ahead.ws, x: &ahead.x, rows: idx.len() };
        if !direct {
            learner.rules.hidden_deltas(learner.net, learner.feedback, ws, rows, threads);
        }
        let phase = (&ahead.updated[..], ahead.phase);
        update_beside_forward(learner, Batch { ws, x, rows }, next, phase, (direct, threads));
        let (loss, err) = ahead.ws.output_error(&ahead.y[..idx.len()]);
        std::mem::swap(ws, &mut ahead.ws);
        std::mem::swap(&mut ws.grads, &mut ahead.ws.grads);
        std::mem::swap(&mut ws.scratch, &mut ahead.ws.scratch);
        std::mem::swap(x, &mut ahead.x);
        std::mem::swap(y, &mut ahead.y);
        rows = idx.len();
        more = record(b + 1, rows, loss, err);
    }
    // the last batch's update
    if !direct {
        learner.rules.hidden_deltas(learner.net, learner.feedback, ws, rows, threads);
    }
    let mode = if direct { Mode::DIRECT } else { Mode::STEP };
    update_layers(learner, Batch { ws, x, rows }, mode, threads);
}

/// The fused phase of a pipelined run: the updates of the current mini-batch (`batch`; its output
/// error already in its workspace, and unless `direct`, every hidden direction) and the forward
/// pass of the next one (`next`), on the pool's threads. With `direct` (plain DFA) each update
/// first computes its layer's direction from `e`. The updates are handed out from the first layer
/// up; the calling thread runs the forward pass, taking layer `l` as soon as its update is done
/// (`updated[l] == phase`), and takes updates itself while it waits. Each update is the same
/// computation as in [`update_layers`] and each layer's forward product as in
/// [`Network::forward`], so the numbers are those of one step after the other.
///
/// No thread ever waits for work that nobody has taken, so this cannot deadlock: the forward pass
/// waits only for an update that is running, and the other threads only take updates.
fn update_beside_forward(
    learner: &mut Learner<'_>,
    batch: Batch<'_>,
    next: Batch<'_>,
    (updated, phase): (&[AtomicUsize], usize),
    (direct, threads): (bool, usize),
) {
    let depth = learner.net.depth();
    let activation = learner.net.activation;
    let streamed = learner.net.streams_weights();
    let feedback = learner.feedback;
    let Batch { ws: next_ws, x: next_x, rows: next_rows } = next;
    LayerShares::with(learner, batch, |shares| {
        let handed_out = AtomicUsize::new(0);
        let take = || {
            let j = handed_out.fetch_add(1, Ordering::Relaxed);
            (j < depth).then_some(j)
        };
        let run = |j: usize| {
            // SAFETY: layer j is handed out once, and the forward pass reads it only after the
            // Release store below
            unsafe { shares.update(j, direct.then_some((feedback, activation))) };
            updated[j].store(phase, Ordering::Release);
        };
        let take_updates = || {
            while let Some(j) = take() {
                run(j);
            }
        };
        let forward = || {
            let mut l = 0;
            while l < depth {
                if updated[l].load(Ordering::Acquire) == phase {
                    // SAFETY: layer l's update is done (Acquire above) and nothing writes it again
                    let layer = unsafe { shares.layer(l) };
                    let (before, rest) = next_ws.outputs.split_at_mut(l);
                    let input: &[f32] = if l == 0 { next_x } else { &before[l - 1] };
                    // with every update handed out, the other threads are free for half the product
                    let split = if handed_out.load(Ordering::Relaxed) >= depth { threads } else { 1 };
                    layer.forward_dense(
                        (activation, l == depth - 1),
                        input,
                        &mut rest[0],
                        next_rows,
                        (split, streamed),
                    );
                    l += 1;
                } else if let Some(j) = take() {
                    run(j);
                } else if rayon::yield_now() != Some(rayon::Yield::Executed) {
                    std::hint::spin_loop();
                }
            }
            take_updates();
        };
        rayon::join(forward, take_updates);
    });
}
