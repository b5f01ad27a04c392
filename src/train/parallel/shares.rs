//! Every layer of a net shared by the threads of a fused phase ([`super::overlap`],
//! [`super::pipeline`]), behind `unsafe` accessors whose callers keep the access protocol.

use super::updates::{Batch, Learner, Mode, Shared, gradient_buffer, update_layer};
use crate::layers::activation::Activation;
use crate::layers::{Dense, Gradients, Workspace};
use crate::optim::UpdateRule;
use crate::rules::{self, Feedback};

/// Every layer of a net with its gradient, optimiser state and hidden direction, shared by the
/// threads of `chain_and_update` and `update_beside_forward`. Those hand every layer's update to
/// exactly one thread and order the other accesses with atomics; the methods are `unsafe`
/// because the borrow checker cannot see that protocol.
pub(super) struct LayerShares<'a> {
    layers: Shared<Dense>,
    grads: Shared<Gradients>,
    /// [`Workspace::scratch`] and its length.
    scratch: (Shared<Gradients>, usize),
    states: Shared<Gradients>,
    hidden: Shared<Vec<f32>>,
    pub(super) depth: usize,
    n_out: usize,
    /// The output error `e`.
    e: &'a [f32],
    pub(super) ws: &'a Workspace,
    x: &'a [f32],
    pub(super) rows: usize,
    update: UpdateRule,
}

impl LayerShares<'_> {
    /// Runs `f` with the layers of the learner's net shared; the batch's workspace holds its
    /// forward pass and output error.
    pub(super) fn with<R>(learner: &mut Learner<'_>, batch: Batch<'_>, f: impl FnOnce(&LayerShares<'_>) -> R) -> R {
        let Batch { ws, x, rows } = batch;
        let net = &mut *learner.net;
        let depth = net.depth();
        let (update, states) = learner.optimiser.layer_states(learner.learning_rate);
        // moved out (no allocation) so that the rest of the workspace can be shared
        let mut grads = std::mem::take(&mut ws.grads);
        let mut deltas = std::mem::take(&mut ws.deltas);
        let mut scratch = std::mem::take(&mut ws.scratch);
        let (hidden, output) = deltas.split_at_mut(depth - 1);
        let result = f(&LayerShares {
            layers: Shared(net.layers.as_mut_ptr()),
            grads: Shared(grads.as_mut_ptr()),
            scratch: (Shared(scratch.as_mut_ptr()), scratch.len()),
            states: Shared(states.as_mut_ptr()),
            hidden: Shared(hidden.as_mut_ptr()),
            depth,
            n_out: net.n_outputs(),
            e: &output[0],
            ws,
            x,
            rows,
            update,
        });
        ws.grads = grads;
        ws.deltas = deltas;
        ws.scratch = scratch;
        result
    }

    /// The dropout masks of the batch, when it has them.
    pub(super) fn masks(&self) -> Option<&[Vec<f32>]> {
        self.ws.dropout_active.then_some(self.ws.masks.as_slice())
    }

    /// Layer `l`, to read.
    ///
    /// SAFETY: nobody may be updating layer `l`.
    pub(super) unsafe fn layer(&self, l: usize) -> &Dense {
        assert!(l < self.depth);
        unsafe { &*self.layers.0.add(l) }
    }

    /// The direction `δa_l` of layer `l` (`e` for the output layer), to read.
    ///
    /// SAFETY: nobody may be writing it.
    pub(super) unsafe fn direction(&self, l: usize) -> &[f32] {
        assert!(l < self.depth);
        if l == self.depth - 1 { self.e } else { unsafe { &*self.hidden.0.add(l) } }
    }

    /// The direction `δa_l` of hidden layer `l`, to write.
    ///
    /// SAFETY: nobody else may be reading or writing it.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn direction_mut(&self, l: usize) -> &mut Vec<f32> {
        assert!(l + 1 < self.depth);
        unsafe { &mut *self.hidden.0.add(l) }
    }

    /// Layer `j`'s weight gradient and update on one thread; with `dfa`, its direction is first
    /// computed from `e` ([`rules::direct_delta`]), as `update_layers` does.
    ///
    /// SAFETY: nobody else may touch layer `j`, its gradient, state or direction meanwhile.
    pub(super) unsafe fn update(&self, j: usize, dfa: Option<(&Feedback, Activation)>) {
        assert!(j < self.depth);
        let (layer, g, state) =
            unsafe { (&mut *self.layers.0.add(j), &mut *self.grads.0.add(j), &mut *self.states.0.add(j)) };
        if layer.frozen {
            return;
        }
        let delta: &[f32] = match dfa {
            Some((feedback, f)) if j + 1 < self.depth => {
                let d = unsafe { self.direction_mut(j) };
                let (e, masks) = (self.e, self.masks());
                let outputs = &self.ws.outputs;
                rules::direct_delta(
                    feedback,
                    (f, outputs, masks),
                    (e, &self.ws.target),
                    (self.n_out, self.rows),
                    j,
                    layer.fan_out,
                    d,
                );
                d
            }
            _ => unsafe { self.direction(j) },
        };
        let input = self.ws.gradient_input(self.x, j);
        // SAFETY: an update on one thread makes no call that could start another on it
        let g = unsafe { gradient_buffer(&self.scratch, g, true) };
        update_layer(layer, (delta, input, self.rows), g, state, (self.update, Mode::STEP), 1);
    }
}
