//! Optimisers: RMSprop as in the paper's code, and plain SGD.
//!
//! RMSprop (`optim.rmsprop` of Torch7, which `anokland/dfa-torch` uses; identical to
//! `torch.optim.RMSprop` without momentum, centring or weight decay), per parameter `θ` with
//! gradient `g`:
//!
//! ```text
//! v ← ρ v + (1 − ρ) g²          ρ = 0.99, v starts at 0
//! θ ← θ − lr · g / (√v + ε)     ε = 1e-8, added after the square root
//! ```
//!
//! SGD: `θ ← θ − lr · g`.
//!
//! Weight decay `λ` (`--weight-decay`, 0 unless set or a rule asks for it: Kolen–Pollack) is
//! decoupled (Loshchilov & Hutter 2019, as `torch.optim.AdamW` does it) and acts on the weights,
//! not the biases: `θ ← θ − (u + lr·λ·θ)` with `u` the step above (`lr·g/(√v+ε)` or `lr·g`).
//! Decoupled, the decay is the same fraction `lr·λ` of every weight whatever its gradient's
//! history; that is what makes Kolen–Pollack's `B − Wᵀ` shrink by exactly `(1 − lr·λ)` per step
//! (see `rules::kp`). With `λ = 0` the update is the one above, bit for bit.
//!
//! A feedback matrix that learns (Kolen–Pollack's `B_l`) is updated with the transposed gradient
//! of the forward weights it stands for, through the same rule with its own state
//! ([`UpdateRule::apply_feedback`]): its mean squares are those of `W_{l+1}` transposed, bit for
//! bit, so that `B_l` receives exactly `W_{l+1}`'s step `u`, transposed.

use crate::layers::{Dense, Gradients, Network};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimiserKind {
    Rmsprop,
    Sgd,
}

crate::choices!(OptimiserKind { Rmsprop => "rmsprop", Sgd => "sgd" });

/// Elements per parallel task in the update: large enough that a task costs far more than its
/// scheduling, small enough to split a 800×800 layer over both cores.
const CHUNK: usize = 1 << 14;

#[derive(Clone, Debug)]
pub struct Optimiser {
    pub kind: OptimiserKind,
    pub decay: f32,
    pub epsilon: f32,
    /// RMSprop's running mean of squared gradients, per layer (empty for SGD).
    pub mean_square: Vec<Gradients>,
    /// Decoupled weight decay `λ` of the weights (0: none).
    pub weight_decay: f32,
    /// RMSprop's mean squares of each feedback matrix that learns (Kolen–Pollack), by matrix
    /// index; empty for fixed matrices and under SGD.
    pub feedback_mean_square: Vec<Vec<f32>>,
}

impl Optimiser {
    pub fn new(kind: OptimiserKind, decay: f32, epsilon: f32, net: &Network) -> Self {
        // one state per layer; SGD keeps none, so its states are empty
        let size = |n: usize| if kind == OptimiserKind::Rmsprop { n } else { 0 };
        let mean_square = net
            .layers
            .iter()
            .map(|l| Gradients { weight: vec![0.0; size(l.weight.len())], bias: vec![0.0; size(l.bias.len())] })
            .collect();
        Optimiser { kind, decay, epsilon, mean_square, weight_decay: 0.0, feedback_mean_square: Vec::new() }
    }

    /// With decoupled weight decay `λ` on the weights.
    pub fn with_weight_decay(mut self, weight_decay: f32) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// With a state for each feedback matrix that learns: `sizes[k]` entries for matrix `k`
    /// (0 for a fixed one).
    pub fn with_feedback_states(mut self, sizes: &[usize]) -> Self {
        let rmsprop = self.kind == OptimiserKind::Rmsprop;
        self.feedback_mean_square = sizes.iter().map(|&n| vec![0.0; if rmsprop { n } else { 0 }]).collect();
        self
    }

    /// Applies one update at `learning_rate` to every layer.
    pub fn step(&mut self, net: &mut Network, grads: &[Gradients], learning_rate: f32, threads: usize) {
        let (rule, states) = self.layer_states(learning_rate);
        for (l, (layer, g)) in net.layers.iter_mut().zip(grads).enumerate() {
            rule.apply(layer, g, &mut states[l], threads);
        }
    }

    /// The hyper-parameters of an update at `learning_rate` (the schedule's, passed per step)
    /// and the per-layer states, split so that each layer's update can run on its own thread.
    pub fn layer_states(&mut self, learning_rate: f32) -> (UpdateRule, &mut [Gradients]) {
        (self.rule(learning_rate), &mut self.mean_square)
    }

    /// The hyper-parameters of an update at `learning_rate`.
    pub fn rule(&self, learning_rate: f32) -> UpdateRule {
        UpdateRule {
            kind: self.kind,
            learning_rate,
            decay: self.decay,
            epsilon: self.epsilon,
            weight_decay: self.weight_decay,
        }
    }
}

/// The hyper-parameters of one update, copied out of an [`Optimiser`].
#[derive(Clone, Copy, Debug)]
pub struct UpdateRule {
    pub kind: OptimiserKind,
    pub learning_rate: f32,
    pub decay: f32,
    pub epsilon: f32,
    /// Decoupled weight decay of the weights (not the biases).
    pub weight_decay: f32,
}

impl UpdateRule {
    /// Updates one layer with its state (RMSprop's mean squares; unused by SGD).
    pub fn apply(&self, layer: &mut Dense, g: &Gradients, state: &mut Gradients, threads: usize) {
        self.apply_parts(layer, &g.weight, &g.bias, state, threads);
    }

    /// [`UpdateRule::apply`] with the weight and bias gradients given apart (`weight.len()` and
    /// `bias.len()` of the layer long).
    pub fn apply_parts(&self, layer: &mut Dense, gw: &[f32], gb: &[f32], state: &mut Gradients, threads: usize) {
        update(self, layer, (gw, gb), state, threads);
    }

    /// Updates a feedback matrix `b` that learns (Kolen–Pollack) with the gradient `gw` of the
    /// forward weights it stands for, decayed like them; `state`: its RMSprop mean squares
    /// (empty under SGD). `transposed`: `b` is `rows × cols` and `gw` is `cols × rows` (a dense
    /// layer's `W_{l+1}` and its `B_l`; `gw` is then transposed into `scratch`, at least as long
    /// as `b`); else the two share one layout (a block's kernels). The update is the weights'
    /// vectorised one ([`rmsprop_decayed`]), the same operations per entry, hence `B`'s step is
    /// `W`'s transposed bit for bit.
    pub fn apply_feedback(
        &self,
        b: &mut [f32],
        (rows, cols): (usize, usize),
        (gw, scratch): (&[f32], &mut [f32]),
        state: &mut [f32],
        (transposed, threads): (bool, usize),
    ) {
        let n = b.len();
        assert!(n == rows * cols && gw.len() == n, "one gradient per feedback entry");
        let g: &[f32] = if transposed {
            // g[i][j] = gw[j][i], in tiles so that reads and writes stay in cache
            let g = &mut scratch[..n];
            const TILE: usize = 32;
            for i0 in (0..rows).step_by(TILE) {
                for j0 in (0..cols).step_by(TILE) {
                    for i in i0..(i0 + TILE).min(rows) {
                        for j in j0..(j0 + TILE).min(cols) {
                            g[i * cols + j] = gw[j * rows + i];
                        }
                    }
                }
            }
            g
        } else {
            gw
        };
        let UpdateRule { kind, learning_rate: lr, decay: rho, epsilon: eps, weight_decay: wd } = *self;
        match kind {
            OptimiserKind::Rmsprop => {
                assert!(state.len() == n, "one mean square per feedback entry");
                rmsprop_decayed(b, g, state, (lr, rho, eps, lr * wd), threads);
            }
            OptimiserKind::Sgd => {
                for (t, g) in b.iter_mut().zip(g) {
                    *t -= lr * g + (lr * wd) * *t;
                }
            }
        }
    }
}

fn update(rule: &UpdateRule, layer: &mut Dense, (gw, gb): (&[f32], &[f32]), ms: &mut Gradients, threads: usize) {
    let UpdateRule { kind, learning_rate: lr, decay: rho, epsilon: eps, weight_decay: wd } = *rule;
    assert!(gw.len() == layer.weight.len() && gb.len() == layer.bias.len(), "one gradient per parameter");
    if wd != 0.0 {
        // decoupled decay of the weights, the biases as without it
        match kind {
            OptimiserKind::Rmsprop => {
                rmsprop_decayed(&mut layer.weight, gw, &mut ms.weight, (lr, rho, eps, lr * wd), threads);
                rmsprop(&mut layer.bias, gb, &mut ms.bias, lr, rho, eps, threads);
            }
            OptimiserKind::Sgd => {
                for (t, g) in layer.weight.iter_mut().zip(gw) {
                    *t -= lr * g + (lr * wd) * *t;
                }
                sgd(&mut layer.bias, gb, lr);
            }
        }
        return;
    }
    match kind {
        OptimiserKind::Rmsprop => {
            rmsprop(&mut layer.weight, gw, &mut ms.weight, lr, rho, eps, threads);
            rmsprop(&mut layer.bias, gb, &mut ms.bias, lr, rho, eps, threads);
        }
        OptimiserKind::Sgd => {
            sgd(&mut layer.weight, gw, lr);
            sgd(&mut layer.bias, gb, lr);
        }
    }
}

crate::multiversion! {
    fn rmsprop_chunk(theta: &mut [f32], g: &[f32], v: &mut [f32], lr: f32, rho: f32, eps: f32) {
        for ((t, &g), v) in theta.iter_mut().zip(g).zip(v.iter_mut()) {
            *v = rho * *v + (1.0 - rho) * g * g;
            *t -= lr * g / (v.sqrt() + eps);
        }
    }
}

fn rmsprop(theta: &mut [f32], g: &[f32], v: &mut [f32], lr: f32, rho: f32, eps: f32, threads: usize) {
    if threads > 1 && theta.len() > 2 * CHUNK {
        theta
            .par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(|((t, g), v)| rmsprop_chunk(t, g, v, lr, rho, eps));
    } else {
        rmsprop_chunk(theta, g, v, lr, rho, eps);
    }
}

crate::multiversion! {
    fn rmsprop_decayed_chunk(theta: &mut [f32], g: &[f32], v: &mut [f32], lr: f32, rho: f32, eps: f32, d: f32) {
        for ((t, &g), v) in theta.iter_mut().zip(g).zip(v.iter_mut()) {
            *v = rho * *v + (1.0 - rho) * g * g;
            *t -= lr * g / (v.sqrt() + eps) + d * *t;
        }
    }
}

/// RMSprop with decoupled decay `d = lr·λ`: `θ ← θ − (lr·g/(√v+ε) + d·θ)`.
fn rmsprop_decayed(
    theta: &mut [f32],
    g: &[f32],
    v: &mut [f32],
    (lr, rho, eps, d): (f32, f32, f32, f32),
    threads: usize,
) {
    if threads > 1 && theta.len() > 2 * CHUNK {
        theta
            .par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(|((t, g), v)| rmsprop_decayed_chunk(t, g, v, lr, rho, eps, d));
    } else {
        rmsprop_decayed_chunk(theta, g, v, lr, rho, eps, d);
    }
}

fn sgd(theta: &mut [f32], g: &[f32], lr: f32) {
    for (t, g) in theta.iter_mut().zip(g) {
        *t -= lr * g;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Five RMSprop steps on one parameter against the formula evaluated by hand in f64:
    /// θ0 = 0.5, g_t = 0.1·t, ρ = 0.99, ε = 1e-8, lr = 0.01.
    /// Step 1 by hand: v1 = 0.01·0.1² = 1e-4, θ1 = 0.5 − 0.01·0.1/(0.01 + 1e-8) ≈ 0.4
    /// (the first step is lr/√(1−ρ) = 10·lr whatever the gradient's size).
    #[test]
    fn rmsprop_matches_the_formula_for_five_steps() {
        let (lr, rho, eps) = (0.01f64, 0.99f64, 1e-8f64);
        let (mut theta, mut v) = (0.5f64, 0.0f64);
        let mut t32 = [0.5f32];
        let mut v32 = [0.0f32];
        for t in 1..=5 {
            let g = 0.1 * t as f64;
            v = rho * v + (1.0 - rho) * g * g;
            theta -= lr * g / (v.sqrt() + eps);
            rmsprop(&mut t32, &[g as f32], &mut v32, lr as f32, rho as f32, eps as f32, 1);
            assert!((t32[0] as f64 - theta).abs() < 1e-6, "step {t}: {} vs {theta}", t32[0]);
            if t == 1 {
                assert!((t32[0] - 0.4).abs() < 1e-6);
            }
        }
    }

    /// SGD moves every parameter by exactly `lr·g`, through the optimiser's per-layer states.
    #[test]
    fn sgd_steps_by_lr_times_gradient() {
        let mut rng = crate::base::rng::DfaRng::new(1, crate::base::rng::Stream::Weights);
        let mut net = Network::new(&[3, 2], crate::layers::activation::Activation::Tanh, true, true, &mut rng);
        let before = net.layers[0].clone();
        let mut opt = Optimiser::new(OptimiserKind::Sgd, 0.99, 1e-8, &net);
        let g = vec![Gradients { weight: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], bias: vec![-1.0, 1.0] }];
        opt.step(&mut net, &g, 0.5, 1);
        for (k, (a, b)) in before.weight.iter().zip(&net.layers[0].weight).enumerate() {
            assert_eq!(*b, a - 0.5 * (k + 1) as f32);
        }
        assert_eq!(net.layers[0].bias, vec![before.bias[0] + 0.5, before.bias[1] - 0.5]);
    }

    #[test]
    fn parallel_and_serial_updates_are_bitwise_equal() {
        let n = 5 * CHUNK + 17;
        let g: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5).collect();
        let (mut a, mut va) = (vec![0.1f32; n], vec![0.0f32; n]);
        let (mut b, mut vb) = (a.clone(), va.clone());
        rmsprop(&mut a, &g, &mut va, 1e-3, 0.99, 1e-8, 1);
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap()
            .install(|| rmsprop(&mut b, &g, &mut vb, 1e-3, 0.99, 1e-8, 2));
        assert_eq!(a, b);
        assert_eq!(va, vb);
    }
}
