//! A network: its layers, initialisation, the forward pass and the output error (SPEC §1).
//!
//! ```text
//! a_i = W_i h_{i-1} + b_i,   h_0 = x,   h_i = f(a_i)          (hidden layers i = 1..L-1)
//! a_L = W_L h_{L-1} + b_L,   ŷ = sigmoid(a_L)
//! J   = -(1/N) Σ_{m,n} [y log ŷ + (1-y) log(1-ŷ)]           (binary cross-entropy)
//! e   = ∂J/∂a_L = (ŷ - y) / N                                (per sample row of the batch)
//! ```
//!
//! In code the batch runs along the rows: `H_i` is `N × n_i`, so `a_i = W_i h_{i-1}` becomes
//! `A_i = H_{i-1} W_iᵀ`. Layers know how to go forward and how to turn an update direction
//! `δa_i` into weight gradients; which rule produced `δa_i` is the business of [`crate::rules`].

use crate::base::rng::DfaRng;
use crate::layers::activation::{Activation, sigmoid_given};
use crate::layers::conv::{Block, Conv2d, MaxPool, Shape};
use crate::layers::dense::Dense;
use serde::{Deserialize, Serialize};

/// Parameters beyond this many bytes are taken to be read from memory at each use (half of
/// this machine's 32 MB L3, which also holds the optimiser state and the activations): the
/// 100x240 net (23 MB) is, 7x240 (2 MB), 2x800 (5 MB) are not.
pub const STREAMED_PARAMETER_BYTES: usize = 16 << 20;

/// How the forward weights start (SPEC §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// The paper's choice: zero for FA/DFA with tanh or logistic units, uniform otherwise.
    Auto,
    /// All weights and biases zero.
    Zero,
    /// Weights and biases uniform in `[-1/√fan_in, 1/√fan_in]`.
    Uniform,
}

crate::choices!(Init {
    Auto => "auto": "The paper's choice: zero for FA/DFA with tanh or logistic units, uniform otherwise",
    Zero => "zero": "All weights and biases zero",
    Uniform => "uniform": "Weights and biases uniform in `[-1/√fan_in, 1/√fan_in]`",
});

/// A stack of dense layers: hidden layers with activation `f`, then a sigmoid output layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    pub activation: Activation,
    pub layers: Vec<Dense>,
}

impl Network {
    /// `sizes = [n_in, n_1, …, n_{L-1}, n_out]`; weights uniform (else zero), with or without
    /// biases.
    pub fn new(sizes: &[usize], activation: Activation, uniform: bool, bias: bool, rng: &mut DfaRng) -> Self {
        let layers = sizes
            .windows(2)
            .map(|w| if uniform { Dense::uniform(w[0], w[1], bias, rng) } else { Dense::zeros(w[0], w[1], bias) })
            .collect();
        Network { activation, layers }
    }

    /// A network from model items (`spec::parse_layers`) on inputs of `input` shape (given
    /// channel-major, as the loaders keep images), with `n_out` sigmoid outputs.
    pub fn from_specs(
        input: Shape,
        specs: &[crate::layers::spec::LayerSpec],
        n_out: usize,
        activation: Activation,
        uniform: bool,
        bias: bool,
        rng: &mut DfaRng,
    ) -> Self {
        use crate::layers::spec::LayerSpec;
        let mut layers: Vec<Dense> = Vec::new();
        let mut shape = input;
        let mut flat = input.len();
        for (i, spec) in specs.iter().enumerate() {
            match *spec {
                LayerSpec::Conv { filters, size, stride, pad } => {
                    let conv = Conv2d {
                        input: shape,
                        out_channels: filters,
                        kh: size,
                        kw: size,
                        stride,
                        pad,
                        chw_input: layers.is_empty(),
                    };
                    let pool = match specs.get(i + 1) {
                        Some(&LayerSpec::Pool { size, stride }) => {
                            Some(MaxPool { input: conv.output(), k: size, stride })
                        }
                        _ => None,
                    };
                    let block = Block { conv, pool, fast: None };
                    shape = block.output();
                    flat = shape.len();
                    layers.push(Dense::block(block, bias, uniform, rng));
                }
                LayerSpec::Pool { .. } => {}
                LayerSpec::Dense(width) => {
                    layers.push(if uniform {
                        Dense::uniform(flat, width, bias, rng)
                    } else {
                        Dense::zeros(flat, width, bias)
                    });
                    flat = width;
                }
            }
        }
        layers.push(if uniform { Dense::uniform(flat, n_out, bias, rng) } else { Dense::zeros(flat, n_out, bias) });
        Network { activation, layers }
    }

    /// Whether any layer is a convolutional block.
    pub fn has_blocks(&self) -> bool {
        self.layers.iter().any(|l| l.block.is_some())
    }

    pub fn sizes(&self) -> Vec<usize> {
        let mut s = vec![self.layers[0].fan_in];
        s.extend(self.layers.iter().map(|l| l.fan_out));
        s
    }

    pub fn depth(&self) -> usize {
        self.layers.len()
    }

    pub fn n_inputs(&self) -> usize {
        self.layers[0].fan_in
    }

    pub fn n_outputs(&self) -> usize {
        self.layers.last().map_or(0, |l| l.fan_out)
    }

    pub fn parameter_count(&self) -> usize {
        self.layers.iter().map(|l| l.weight.len() + l.bias.len()).sum()
    }

    /// Whether this net's weights are read from memory at each use: more than
    /// [`STREAMED_PARAMETER_BYTES`] of parameters, whose optimiser state (as large again for
    /// RMSprop) and activations pass through the cache between two uses of a layer. The products
    /// with weights then read them ahead (see `linalg`'s module doc).
    pub fn streams_weights(&self) -> bool {
        self.parameter_count() * size_of::<f32>() > STREAMED_PARAMETER_BYTES
    }
}

pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// Binary cross-entropy of the sigmoid outputs against one-hot labels, and the output error
/// `e = (ŷ - y)/N` written into `e`. Returns `(Σ_samples J_m, errors)` where `J_m` is the
/// per-sample loss (`J` of the batch is the sum over `N`), and the number of misclassified rows.
///
/// The loss is computed from the logits as `softplus(a) - y·a`, which never takes `log 0`.
pub fn output_error(logits: &[f32], labels: &[u8], n_out: usize, e: &mut [f32]) -> (f64, usize) {
    let rows = labels.len();
    let inv_n = 1.0 / rows as f32;
    let mut loss = 0.0f64;
    let mut errors = 0;
    for ((a_row, e_row), &label) in
        logits[..rows * n_out].chunks_exact(n_out).zip(e.chunks_exact_mut(n_out)).zip(labels)
    {
        if argmax(a_row) != label as usize {
            errors += 1;
        }
        for (k, (&a, e)) in a_row.iter().zip(e_row.iter_mut()).enumerate() {
            let y = if k == label as usize { 1.0f32 } else { 0.0 };
            // one exp for both: e^{−|a|} gives softplus(a) and σ(a)
            let t = (-a.abs()).exp();
            let softplus = a.max(0.0) + t.ln_1p();
            loss += (softplus - y * a) as f64;
            *e = (sigmoid_given(a, t) - y) * inv_n;
        }
    }
    (loss, errors)
}
