//! Adversarial training with the fast gradient sign method (Goodfellow et al. 2015).

use crate::base::linalg::gemm_nn;
use crate::layers::{Network, Workspace};
use crate::rules::{Feedback, Rule, hidden_deltas};
use crate::train::config::TrainConfig;
use crate::train::parallel::{Batch, Mode};
use crate::train::protocol::Trainer;

impl Trainer {
    /// The rest of a step under adversarial training, after the clean forward pass and output
    /// error (whose summed loss is `loss` and misclassified samples `errors`); returns the step's
    /// loss and its misclassified samples: the clean ones, or the adversarial ones with
    /// `adversarial_batch_error`.
    ///
    /// The true input gradient `∂J/∂x` is back-propagated through the current network whatever
    /// the rule, `x_adv = clip(x + ε·sign(∂J/∂x), 0, 1)` (unclipped without `adversarial_clip`),
    /// and the update is the rule's update of `α·J(x) + (1−α)·J(x_adv)`: the two passes'
    /// gradients, with `e` scaled by `α` and `1−α`, summed before one optimiser step.
    pub(super) fn adversarial_step(&mut self, rows: usize, (loss, errors): (f64, usize)) -> (f64, usize) {
        let threads = self.threads();
        let Trainer { model, ws, x, y, config, x_adv, rules, engine, progress, .. } = self;
        let lr = progress.learning_rate;
        let depth = model.net.depth();
        let n_out = model.net.n_outputs();
        let (alpha, epsilon) = (config.adversarial_alpha, config.adversarial_epsilon);
        let fgsm = (epsilon, config.adversarial_clip);
        fast_gradient_sign(&model.net, &model.feedback, ws, (x, rows), fgsm, x_adv, threads);
        // the clean pass: the rule's gradients of α·J(x); with α = 0 they are zero and skipped
        // (the paper's code: the step trains on `x_adv` alone), which gives the same bits as
        // adding them (0 + g = g) in two thirds of the time
        let clean = keeps_gradients(config);
        if clean {
            ws.deltas[depth - 1][..rows * n_out].iter_mut().for_each(|e| *e *= alpha);
            ws.target[..rows * n_out].iter_mut().for_each(|t| *t *= alpha);
            rules.hidden_deltas(&model.net, &model.feedback, ws, rows, threads);
            engine.update(model.learner(rules, lr), Batch { ws: &mut *ws, x, rows }, Mode::KEEP);
        }
        // the adversarial pass: + the gradients of (1−α)·J(x_adv), then one update
        model.net.forward(x_adv, rows, ws, threads);
        let (loss_adv, errors_adv) = ws.output_error(&y[..rows]);
        if clean {
            ws.deltas[depth - 1][..rows * n_out].iter_mut().for_each(|e| *e *= 1.0 - alpha);
            ws.target[..rows * n_out].iter_mut().for_each(|t| *t *= 1.0 - alpha);
        }
        rules.hidden_deltas(&model.net, &model.feedback, ws, rows, threads);
        let mode = if clean { Mode::ADD_AND_APPLY } else { Mode::STEP };
        engine.update(model.learner(rules, lr), Batch { ws, x: x_adv, rows }, mode);
        let errors = if config.adversarial_batch_error { errors_adv } else { errors };
        (alpha as f64 * loss + (1.0 - alpha as f64) * loss_adv, errors)
    }
}

/// Whether an adversarial step sums two passes' gradients in the layers' own buffers (where
/// they stay after the step), rather than updating from the adversarial pass alone (`α = 0`,
/// gradients in a thread's scratch buffer like a plain step's).
pub(super) fn keeps_gradients(config: &TrainConfig) -> bool {
    config.adversarial() && config.adversarial_alpha != 0.0
}

/// The fast gradient sign method (Goodfellow et al. 2015):
/// `x_adv = clip(x + ε·sign(∂J/∂x), 0, 1)` (`(ε, clip)`; without `clip`, `x + ε·sign(∂J/∂x)`),
/// with `∂J/∂x = W_1ᵀ δa_1` and the true (BP) `δa_1` back-propagated through the current network,
/// whatever rule trains it. Expects the forward pass and the output error of `x` in `ws`;
/// overwrites the hidden deltas.
pub fn fast_gradient_sign(
    net: &Network,
    feedback: &Feedback,
    ws: &mut Workspace,
    (x, rows): (&[f32], usize),
    (epsilon, clip): (f32, bool),
    x_adv: &mut [f32],
    threads: usize,
) {
    let n_in = net.n_inputs();
    hidden_deltas(Rule::BP, net, feedback, ws, rows, threads);
    let first = &net.layers[0];
    gemm_nn(x_adv, &ws.deltas[0], &first.weight, (rows, first.fan_out, n_in), false, threads);
    for (a, &v) in x_adv[..rows * n_in].iter_mut().zip(&x[..rows * n_in]) {
        let sign = if *a > 0.0 {
            1.0
        } else if *a < 0.0 {
            -1.0
        } else {
            0.0
        };
        let moved = v + epsilon * sign;
        *a = if clip { moved.clamp(0.0, 1.0) } else { moved };
    }
}
