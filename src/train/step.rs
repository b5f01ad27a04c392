//! One training step: dropout masks, the forward pass, the output error, the rule's directions
//! and the updates (adversarial training's two passes in [`crate::train::adversarial`]).

use crate::base::rng::DfaRng;
use crate::train::adversarial;
use crate::train::alignment::{self, AlignmentRecord, Scratch};
use crate::train::parallel::{Batch, Mode};
use crate::train::protocol::Trainer;

impl Trainer {
    /// One update on the mini-batch in `self.x`/`self.y` (`rows` samples). Returns the summed
    /// loss and the misclassified samples before the update.
    ///
    /// With dropout, fresh masks are drawn for the batch; they gate the forward pass and every
    /// layer's update (see `rules::hidden_deltas`). A plain DFA net computes each hidden
    /// direction inside its layer's update; BP and FA on two threads may overlap their chain with
    /// the updates; otherwise all directions come first, then (on the batches `align_every`
    /// asks for) the alignment measurement, then the updates.
    pub(super) fn step(&mut self, rows: usize) -> (f64, usize) {
        let result = self.update(rows);
        if self.rules.learns_feedback() {
            self.learn_feedback(rows);
        }
        if self.rules.refreshes_feedback() {
            self.rules.refresh_feedback(&self.model.net, &mut self.model.feedback, &mut self.refresh_rng);
        }
        result
    }

    /// The step's forward pass, directions and updates (see [`Trainer::step`]).
    fn update(&mut self, rows: usize) -> (f64, usize) {
        self.draw_masks(rows);
        let threads = self.threads();
        let Trainer { model, ws, x, y, .. } = self;
        model.net.forward(x, rows, ws, threads);
        let (loss, errors) = ws.output_error(&y[..rows]);
        if self.config.adversarial() {
            return self.adversarial_step(rows, (loss, errors));
        }
        let Trainer { model, ws, x, rules, engine, progress, measure_batch, align, alignment_log, .. } = self;
        let lr = progress.learning_rate;
        // the alignment measurement needs every direction before any update
        let measured = measure_batch.is_some();
        if !measured && rules.direct() && !model.net.has_blocks() {
            engine.update(model.learner(rules, lr), Batch { ws, x, rows }, Mode::DIRECT);
            return (loss, errors);
        }
        if !measured && engine.chain_and_update(model.learner(rules, lr), Batch { ws: &mut *ws, x, rows }) {
            return (loss, errors);
        }
        rules.hidden_deltas(&model.net, &model.feedback, ws, rows, threads);
        if let Some(b) = measure_batch.take() {
            let (net, feedback) = (&model.net, &model.feedback);
            let scratch = align.get_or_insert_with(|| Scratch::new(net, ws));
            let layers = alignment::measure(rules.hidden(), net, feedback, ws, (x, rows), scratch, threads);
            alignment_log.push(AlignmentRecord { batch: b, batches: 0, layers });
        }
        engine.update(model.learner(rules, lr), Batch { ws, x, rows }, Mode::STEP);
        (loss, errors)
    }

    /// The update of every feedback matrix that learns (Kolen–Pollack's `B_l`, see `rules::kp`):
    /// the transposed gradient of `W_{l+1}` of this step through the optimiser (`B_l`'s own
    /// state) and the decay. The gradient is the one `W_{l+1}` was updated with: adversarial
    /// training's two passes (`α > 0`) leave it in the layer's buffer; otherwise it is computed
    /// again from the same direction and input (the same product, the same bits), since the
    /// update wrote it to a thread's scratch buffer.
    fn learn_feedback(&mut self, rows: usize) {
        let threads = self.threads();
        let kept = adversarial::keeps_gradients(&self.config);
        let Trainer { model, ws, x, rules, progress, .. } = self;
        let update = model.optimiser.rule(progress.learning_rate);
        let mut grads = std::mem::take(&mut ws.grads);
        let mut scratch = std::mem::take(&mut ws.scratch);
        for (l, _) in rules.hidden().iter().enumerate().filter(|(_, r)| r.learns_feedback()) {
            let (Some(k), above) = (model.feedback.layer_matrix[l], &model.net.layers[l + 1]) else { continue };
            if above.frozen {
                continue;
            }
            let g = &mut grads[l + 1];
            let (gw, gb) = (&mut g.weight[..above.weight.len()], &mut g.bias[..above.bias.len()]);
            if !kept {
                let input = ws.gradient_input(x, l + 1);
                above.gradients_into((&ws.deltas[l + 1], input, rows), (gw, gb), false, threads);
            }
            let b = &mut model.feedback.matrices[k];
            let state = &mut model.optimiser.feedback_mean_square[k];
            let transposed = above.block.is_none();
            let t = &mut scratch[0].weight;
            update.apply_feedback(&mut b.values, (b.rows, b.cols), (gw, t), state, (transposed, threads));
        }
        ws.grads = grads;
        ws.scratch = scratch;
    }

    /// Fresh dropout masks for a batch of `rows` samples (runs with dropout only).
    fn draw_masks(&mut self, rows: usize) {
        let Trainer { model, ws, config, dropout_rng, .. } = self;
        if !ws.dropout_active {
            return;
        }
        let net = &model.net;
        for (l, mask) in ws.masks.iter_mut().enumerate() {
            let (p, width) = match l {
                0 => (config.dropout_input, net.n_inputs()),
                _ => (config.dropout_hidden, net.layers[l - 1].fan_out),
            };
            draw_mask(&mut mask[..rows * width], p, dropout_rng);
        }
    }
}

/// Fills `mask` for inverted dropout with probability `p`: 0 (dropped) or `1/(1−p)` (kept).
pub fn draw_mask(mask: &mut [f32], p: f32, rng: &mut DfaRng) {
    let keep = 1.0 / (1.0 - p);
    for m in mask {
        *m = if rng.unit() < p { 0.0 } else { keep };
    }
}
