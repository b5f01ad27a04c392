//! The network applied to arrays outside a training run: class scores, error and loss, and the
//! alignment angles of a batch (what `dfa.Net.predict`, `.evaluate` and `.angles` return in
//! Python). The same forward pass, loss and measurement as training (`layers::forward`,
//! `layers::network::output_error`, `train::alignment`).

use crate::base::error::{Error, Result};
use crate::layers::network::output_error;
use crate::layers::{Network, Workspace};
use crate::rules::RuleSet;
use crate::train::alignment::{self, LayerAlignment, Scratch};
use crate::train::model::{EVAL_ROWS, Model};
use crate::train::parallel::Pool;

fn chunks<'a>(net: &Network, x: &'a [f32]) -> impl Iterator<Item = &'a [f32]> {
    x.chunks(EVAL_ROWS * net.n_inputs())
}

/// The outputs `ŷ = σ(a_L)` (rows × classes) of the network for the rows of `x`.
pub fn scores(net: &Network, x: &[f32], threads: usize) -> Result<Vec<f32>> {
    let (n_in, n_out) = (net.n_inputs(), net.n_outputs());
    let mut ws = Workspace::new(net, EVAL_ROWS);
    let mut out = Vec::with_capacity(x.len() / n_in * n_out);
    Pool::new(threads)?.install(|| {
        for xs in chunks(net, x) {
            let rows = xs.len() / n_in;
            net.forward(xs, rows, &mut ws, threads);
            let logits = &ws.outputs[net.layers.len() - 1][..rows * n_out];
            out.extend(logits.iter().map(|&a| 1.0 / (1.0 + (-a).exp())));
        }
    });
    Ok(out)
}

/// The classification error (%) and the mean loss per sample (the training loss: binary
/// cross-entropy of the sigmoid outputs, summed over the classes) on the rows of `x`.
pub fn error_and_loss(net: &Network, x: &[f32], labels: &[u8], threads: usize) -> Result<(f64, f64)> {
    let (n_in, n_out) = (net.n_inputs(), net.n_outputs());
    let mut ws = Workspace::new(net, EVAL_ROWS);
    let mut e = vec![0.0; EVAL_ROWS * n_out];
    let (mut loss, mut errors) = (0.0, 0);
    Pool::new(threads)?.install(|| {
        for (xs, ys) in chunks(net, x).zip(labels.chunks(EVAL_ROWS)) {
            let rows = xs.len() / n_in;
            net.forward(xs, rows, &mut ws, threads);
            let (l, k) = output_error(&ws.outputs[net.layers.len() - 1], ys, n_out, &mut e[..rows * n_out]);
            loss += l;
            errors += k;
        }
    });
    let n = labels.len().max(1) as f64;
    Ok((100.0 * errors as f64 / n, loss / n))
}

/// The alignment of every hidden layer's update direction with back-propagation's, measured on
/// one batch made of all the rows of `x` (see `train::alignment::measure`; dense nets only).
pub fn angles(model: &Model, rules: &RuleSet, x: &[f32], labels: &[u8], threads: usize) -> Result<Vec<LayerAlignment>> {
    let net = &model.net;
    if net.has_blocks() {
        return Err(Error::config("model", "alignment angles are measured on dense nets only"));
    }
    let rows = labels.len();
    if rows == 0 {
        return Err(Error::config("x", "no samples to measure the angles on"));
    }
    let mut ws = Workspace::new(net, rows);
    Pool::new(threads)?.install(|| {
        net.forward(x, rows, &mut ws, threads);
        ws.output_error(labels);
        rules.hidden_deltas(net, &model.feedback, &mut ws, rows, threads);
        let mut scratch = Scratch::new(net, &ws);
        Ok(alignment::measure(rules.hidden(), net, &model.feedback, &ws, (x, rows), &mut scratch, threads))
    })
}
