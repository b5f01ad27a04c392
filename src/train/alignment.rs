//! Alignment diagnostics (`--align-every N`): how far each hidden layer's update direction is
//! from the true gradient, measured on a mini-batch before its update.
//!
//! For hidden layer `k` (1-based, as in the paper) and the rule's update direction `δa_k`:
//!
//! - `delta_angle_mean`: the angle between the rule's `δa_k` and back-propagation's `δa_k`, per
//!   sample, averaged over the samples where both are non-zero;
//! - `delta_angle_batch`: the same angle between the two whole-batch matrices (flattened);
//! - `update_angle`: the angle between the rule's weight update `δa_kᵀ h_{k-1}` and the true
//!   gradient (flattened, batch-summed);
//! - `criterion_positive`: the fraction of samples where Theorem 1's `L_k = δh_kᵀ c_k / ‖δh_k‖` is
//!   positive, with `δh_k` the rule's signal arriving at `h_k` (before `⊙ f'`) and
//!   `c_k = W_{k+1}ᵀ δa_{k+1}` the gradient back-propagated from the rule's update of the layer
//!   above (`δa_L = e` at the top); `L_k > 0` means `δh_k` is within 90° of `c_k`;
//! - `feedback_angle` (rules whose `B_k` stands for `W_{k+1}ᵀ`, FA): the angle between the two.
//!
//! Angles are in degrees, in `[0, 180]`; absent (`null`) where a vector is zero. BP measures 0° everywhere.
//! The measurement works on copies of the step's buffers (allocated once, when enabled) and does
//! not change the training: runs with and without it give the same numbers.

use crate::base::linalg::{gemm_nn, gemm_tn};
use crate::layers::{Network, Workspace};
use crate::rules::{self, Feedback, Rule, Source};
use serde::{Deserialize, Serialize};

/// The angle between two vectors, in degrees (`NaN` when one is zero); sums in f64.
pub fn angle(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        return f64::NAN;
    }
    // sqrt(fl(x²)) = x exactly, so a vector against itself gives cos = 1 and exactly 0°
    (ab / (aa * bb).sqrt()).clamp(-1.0, 1.0).acos().to_degrees()
}

fn defined(a: f64) -> Option<f64> {
    a.is_finite().then_some(a)
}

/// Diagnostics of one hidden layer on one mini-batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerAlignment {
    /// Hidden layer, 1-based.
    pub layer: usize,
    /// `None` where the angle is undefined (a zero vector, e.g. at the first step from zero init).
    pub delta_angle_mean: Option<f64>,
    pub delta_angle_batch: Option<f64>,
    pub update_angle: Option<f64>,
    pub criterion_positive: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback_angle: Option<f64>,
}

/// The diagnostics of one measured mini-batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlignmentRecord {
    /// Mini-batch index within the epoch (0-based).
    pub batch: usize,
    /// Mini-batches in the epoch (so that `batch` can be placed on an epoch axis).
    #[serde(default)]
    pub batches: usize,
    pub layers: Vec<LayerAlignment>,
}

/// Buffers for the measurement, sized once.
#[derive(Clone, Debug)]
pub struct Scratch {
    bp: Workspace,
    signal: Vec<f32>,
    back: Vec<f32>,
    grad_rule: Vec<f32>,
    grad_bp: Vec<f32>,
    transposed: Vec<f32>,
}

impl Scratch {
    pub fn new(net: &Network, ws: &Workspace) -> Self {
        let widest = net.layers.iter().map(|l| l.fan_out.max(l.fan_in)).max().unwrap_or(0);
        let largest = net.layers.iter().map(|l| l.weight.len()).max().unwrap_or(0);
        Scratch {
            bp: ws.clone(),
            signal: vec![0.0; ws.max_rows * widest],
            back: vec![0.0; ws.max_rows * widest],
            grad_rule: vec![0.0; largest],
            grad_bp: vec![0.0; largest],
            transposed: vec![0.0; largest],
        }
    }
}

/// Measures every hidden layer. `ws` holds the forward pass, the output error and the rule's
/// update directions of the batch (`rows` samples of `x`), as the step has them before the update;
/// `rules[k]` is hidden layer `k`'s rule (the same rule for every layer unless mixed).
pub fn measure(
    rules: &[Rule],
    net: &Network,
    feedback: &Feedback,
    ws: &Workspace,
    (x, rows): (&[f32], usize),
    scratch: &mut Scratch,
    threads: usize,
) -> Vec<LayerAlignment> {
    let depth = net.depth();
    let n_out = net.n_outputs();
    // the true update directions, from the same forward pass and output error
    scratch.bp.clone_from(ws);
    rules::hidden_deltas(Rule::BP, net, feedback, &mut scratch.bp, rows, threads);
    let e = &ws.deltas[depth - 1][..rows * n_out];
    let mut out = Vec::with_capacity(depth - 1);
    for (k, &rule) in rules.iter().enumerate().take(depth - 1) {
        let layer = &net.layers[k];
        let above = &net.layers[k + 1];
        let n_k = layer.fan_out;
        let d_rule = &ws.deltas[k][..rows * n_k];
        let d_bp = &scratch.bp.deltas[k][..rows * n_k];
        let per_sample: Vec<f64> = d_rule
            .chunks_exact(n_k)
            .zip(d_bp.chunks_exact(n_k))
            .map(|(a, b)| angle(a, b))
            .filter(|a| a.is_finite())
            .collect();
        let delta_angle_mean =
            (!per_sample.is_empty()).then(|| per_sample.iter().sum::<f64>() / per_sample.len() as f64);
        // δh_k, the rule's signal at h_k before ⊙ f'
        let signal = &mut scratch.signal[..rows * n_k];
        let d_above: &[f32] = if k + 1 == depth - 1 { e } else { &ws.deltas[k + 1] };
        match rule.source(k, &net.layers, feedback) {
            Source::Above(m) => rules::drive::product(signal, d_above, m, rows, threads),
            Source::Output(m) => rules::drive::product(signal, e, m, rows, threads),
            Source::Below(m) => rules::drive::product(signal, &ws.deltas[k - 1], m, rows, threads),
        }
        // c_k = W_{k+1}ᵀ δa_{k+1} (the rule's δa_{k+1})
        let back = &mut scratch.back[..rows * n_k];
        gemm_nn(back, d_above, &above.weight, (rows, above.fan_out, n_k), false, threads);
        let positive = signal
            .chunks_exact(n_k)
            .zip(back.chunks_exact(n_k))
            .filter(|(s, c)| s.iter().zip(c.iter()).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() > 0.0)
            .count();
        // weight updates: δa_kᵀ h_{k-1}, rule against BP
        let size = layer.weight.len();
        let input = ws.layer_input(x, k);
        gemm_tn(&mut scratch.grad_rule[..size], d_rule, input, (n_k, rows, layer.fan_in), false, threads);
        gemm_tn(&mut scratch.grad_bp[..size], d_bp, input, (n_k, rows, layer.fan_in), false, threads);
        let feedback_angle = rule.feedback_mirrors_weights().then(|| {
            let b = feedback.for_layer(k).expect("feedback that mirrors the weights");
            // W_{k+1}ᵀ is n_k × n_{k+1}, the shape of B_k
            let t = &mut scratch.transposed[..above.weight.len()];
            for r in 0..above.fan_out {
                for c in 0..above.fan_in {
                    t[c * above.fan_out + r] = above.weight[r * above.fan_in + c];
                }
            }
            angle(t, &b.values)
        });
        out.push(LayerAlignment {
            layer: k + 1,
            delta_angle_mean,
            delta_angle_batch: defined(angle(d_rule, d_bp)),
            update_angle: defined(angle(&scratch.grad_rule[..size], &scratch.grad_bp[..size])),
            criterion_positive: positive as f64 / rows as f64,
            feedback_angle,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn angles_of_hand_made_vectors() {
        assert_eq!(angle(&[1.0, 0.0], &[2.0, 0.0]), 0.0);
        assert!((angle(&[1.0, 0.0], &[0.0, 3.0]) - 90.0).abs() < 1e-12);
        assert!((angle(&[1.0, 2.0], &[-2.0, -4.0]) - 180.0).abs() < 1e-9);
        assert!((angle(&[1.0, 0.0], &[1.0, 1.0]) - 45.0).abs() < 1e-9);
        assert!((angle(&[1.0, 0.0, 0.0], &[-1.0, 3f32.sqrt(), 0.0]) - 120.0).abs() < 1e-5);
        assert!(angle(&[0.0, 0.0], &[1.0, 0.0]).is_nan());
    }
}
