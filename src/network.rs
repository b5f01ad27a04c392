//! Dense networks: layers, initialisation, the forward pass and the output error (SPEC §1).
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

use crate::activation::{Activation, sigmoid_given};
use crate::conv::{Conv2d, MaxPool, Shape};
use crate::linalg::{gemm_nt, gemm_nt_weights, gemm_tn};
use crate::rng::DfaRng;
use serde::{Deserialize, Serialize};

/// Parameters beyond this many bytes are taken to be read from memory at each use (half of
/// this machine's 32 MB L3, which also holds the optimiser state and the activations): the
/// 100x240 net (23 MB) is, 7x240 (2 MB), 2x800 (5 MB) are not.
pub const STREAMED_PARAMETER_BYTES: usize = 16 << 20;

/// One fully connected layer, `W` stored `fan_out × fan_in` (row-major, as `torch.nn.Linear`).
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    pub fan_in: usize,
    pub fan_out: usize,
    pub weight: Vec<f32>,
    /// Always `fan_out` long; stays zero and untrained when `has_bias` is false.
    pub bias: Vec<f32>,
    pub has_bias: bool,
    /// A frozen layer keeps its weights and biases: no gradient, no update (`freeze`).
    pub frozen: bool,
    /// A convolutional block (`conv → f → max-pool`) instead of a dense layer: `weight` is then
    /// `C_out × (kh·kw·C_in)`, `bias` has `C_out` values, `fan_in`/`fan_out` are the flattened
    /// sizes of the block's input and (pooled) output per sample.
    pub block: Option<Block>,
}

/// A convolutional block: a convolution, the activation, then an optional max-pooling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Block {
    pub conv: Conv2d,
    pub pool: Option<MaxPool>,
}

impl Block {
    /// Output positions of the convolution per sample (`H_out·W_out`).
    pub fn positions(&self) -> usize {
        let o = self.conv.output();
        o.h * o.w
    }

    /// Values of the convolution's output (before pooling) per sample.
    pub fn conv_len(&self) -> usize {
        self.conv.output().len()
    }

    /// The block's output shape (after pooling).
    pub fn output(&self) -> Shape {
        self.pool.map_or(self.conv.output(), |p| p.output())
    }
}

/// How the forward weights start (SPEC §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// The paper's choice: zero for FA/DFA with tanh or logistic units, uniform otherwise.
    Auto,
    /// All weights and biases zero.
    Zero,
    /// Weights and biases uniform in `[-1/√fan_in, 1/√fan_in]`.
    Uniform,
}

impl Dense {
    pub fn zeros(fan_in: usize, fan_out: usize, has_bias: bool) -> Self {
        Dense {
            fan_in,
            fan_out,
            weight: vec![0.0; fan_in * fan_out],
            bias: vec![0.0; fan_out],
            has_bias,
            frozen: false,
            block: None,
        }
    }

    /// A convolutional block, weights and biases uniform in `±1/√(kh·kw·C_in)` or zero.
    pub fn block(block: Block, has_bias: bool, uniform: bool, rng: &mut DfaRng) -> Self {
        let k = block.conv.k();
        let c_out = block.conv.out_channels;
        let mut layer = Dense {
            fan_in: block.conv.input.len(),
            fan_out: block.output().len(),
            weight: vec![0.0; c_out * k],
            bias: vec![0.0; c_out],
            has_bias,
            frozen: false,
            block: Some(block),
        };
        if uniform {
            let bound = 1.0 / (k as f32).sqrt();
            rng.fill_symmetric(&mut layer.weight, bound);
            if has_bias {
                rng.fill_symmetric(&mut layer.bias, bound);
            }
        }
        layer
    }

    /// The gradient GEMM's dimensions for a batch of `rows`: rows of `δa`, width of `δa`, width
    /// of the input (dense: `rows, fan_out, fan_in`; block: `rows·H_out·W_out, C_out, kh·kw·C_in`).
    pub fn gemm_dims(&self, rows: usize) -> (usize, usize, usize) {
        match &self.block {
            Some(b) => (rows * b.positions(), b.conv.out_channels, b.conv.k()),
            None => (rows, self.fan_out, self.fan_in),
        }
    }

    /// A dense layer's forward pass over `rows` samples: `out = f(input Wᵀ + b)`, or the logits
    /// `input Wᵀ + b` when `last`. `streamed`: the weights are probably not in cache
    /// ([`Network::streams_weights`]).
    #[allow(clippy::too_many_arguments)]
    pub fn forward_dense(
        &self,
        activation: Activation,
        last: bool,
        input: &[f32],
        out: &mut [f32],
        rows: usize,
        threads: usize,
        streamed: bool,
    ) {
        gemm_nt_weights(out, input, &self.weight, (rows, self.fan_in, self.fan_out), threads, streamed);
        let out = &mut out[..rows * self.fan_out];
        if last {
            for row in out.chunks_exact_mut(self.fan_out) {
                for (a, b) in row.iter_mut().zip(&self.bias) {
                    *a += b;
                }
            }
        } else {
            activation.bias_apply(out, &self.bias);
        }
    }

    /// Multiply-adds of one sample's forward pass through this layer.
    pub fn work(&self) -> usize {
        self.weight.len() * self.block.map_or(1, |b| b.positions())
    }

    /// The length of `δa` per sample (the convolution's output for a block).
    pub fn delta_len(&self) -> usize {
        self.block.map_or(self.fan_out, |b| b.conv_len())
    }

    /// Weights (and biases, if any) uniform in `[-1/√fan_in, 1/√fan_in]`.
    pub fn uniform(fan_in: usize, fan_out: usize, has_bias: bool, rng: &mut DfaRng) -> Self {
        let mut layer = Dense::zeros(fan_in, fan_out, has_bias);
        let bound = 1.0 / (fan_in as f32).sqrt();
        rng.fill_symmetric(&mut layer.weight, bound);
        if has_bias {
            rng.fill_symmetric(&mut layer.bias, bound);
        }
        layer
    }

    /// Weight gradients from an update direction: `∂W = Dᵀ H_in`, `∂b = Σ_rows D` (added to
    /// `grad` when `accumulate`). `D` already carries the batch mean's `1/N`. For a block, `D` is
    /// the convolution's `δa` and `input` the patches of the forward pass (`Workspace::gradient_input`).
    #[allow(clippy::too_many_arguments)]
    pub fn gradients(
        &self,
        delta: &[f32],
        input: &[f32],
        rows: usize,
        grad: &mut Gradients,
        accumulate: bool,
        threads: usize,
    ) {
        self.gradients_into(delta, input, rows, &mut grad.weight, &mut grad.bias, accumulate, threads);
    }

    /// [`Dense::gradients`] into the weight and bias gradients given apart (`weight.len()` and
    /// `bias.len()` long).
    #[allow(clippy::too_many_arguments)]
    pub fn gradients_into(
        &self,
        delta: &[f32],
        input: &[f32],
        rows: usize,
        gw: &mut [f32],
        gb: &mut [f32],
        accumulate: bool,
        threads: usize,
    ) {
        assert!(gw.len() == self.weight.len() && gb.len() == self.bias.len(), "one gradient per parameter");
        let (rows, width, k) = self.gemm_dims(rows);
        gemm_tn(gw, delta, input, width, rows, k, accumulate, threads);
        if !accumulate {
            gb.fill(0.0);
        }
        if !self.has_bias {
            return;
        }
        for row in delta[..rows * width].chunks_exact(width) {
            for (g, d) in gb.iter_mut().zip(row) {
                *g += d;
            }
        }
    }
}

/// The gradient (or update) of one layer's parameters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Gradients {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

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

    /// A network from model items (`config::parse_layers`) on inputs of `input` shape (given
    /// channel-major, as the loaders keep images), with `n_out` sigmoid outputs.
    pub fn from_specs(
        input: Shape,
        specs: &[crate::config::LayerSpec],
        n_out: usize,
        activation: Activation,
        uniform: bool,
        bias: bool,
        rng: &mut DfaRng,
    ) -> Self {
        use crate::config::LayerSpec;
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
                    let block = Block { conv, pool };
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

    /// Forward pass over `rows` samples of `x`: fills `ws.outputs[l]` with `h_{l+1}` for the
    /// hidden layers and with the logits `a_L` for the last layer.
    ///
    /// With `ws.dropout_active`, the masks in `ws.masks` are applied to the input and to every
    /// hidden output on the way up (`ws.dropped`); `ws.outputs` keeps the unmasked `h`, from which
    /// the rules take `f'`.
    pub fn forward(&self, x: &[f32], rows: usize, ws: &mut Workspace, threads: usize) {
        let last = self.layers.len() - 1;
        let streamed = self.streams_weights();
        if ws.dropout_active {
            apply_mask(&mut ws.dropped[0], x, &ws.masks[0], rows * self.n_inputs());
        }
        for (l, layer) in self.layers.iter().enumerate() {
            let (before, rest) = ws.outputs.split_at_mut(l);
            let input: &[f32] = if ws.dropout_active {
                &ws.dropped[l]
            } else if l == 0 {
                x
            } else {
                &before[l - 1]
            };
            let out = &mut rest[0];
            if let Some(block) = &layer.block {
                // conv (im2col + GEMM), bias and f in one pass, then the pool
                let s = ws.blocks[l].as_mut().expect("block scratch");
                let (n, c_out, k) = layer.gemm_dims(rows);
                block.conv.im2col(input, rows, &mut s.patches);
                gemm_nt(&mut s.act, &s.patches, &layer.weight, n, k, c_out, false, threads);
                self.activation.bias_apply(&mut s.act[..n * c_out], &layer.bias);
                match &block.pool {
                    Some(pool) => pool.forward(&s.act, rows, out, &mut s.argmax),
                    None => out[..n * c_out].copy_from_slice(&s.act[..n * c_out]),
                }
                if ws.dropout_active {
                    apply_mask(&mut ws.dropped[l + 1], out, &ws.masks[l + 1], rows * layer.fan_out);
                }
                continue;
            }
            layer.forward_dense(self.activation, l == last, input, out, rows, threads, streamed);
            if l != last && ws.dropout_active {
                apply_mask(&mut ws.dropped[l + 1], out, &ws.masks[l + 1], rows * layer.fan_out);
            }
        }
    }

    /// Predicted classes (argmax of the logits) for `rows` samples of `x`, in chunks of the
    /// workspace's batch size.
    pub fn count_errors(&self, x: &[f32], labels: &[u8], ws: &mut Workspace, threads: usize) -> usize {
        let n_in = self.n_inputs();
        let n_out = self.n_outputs();
        let mut errors = 0;
        for (xs, ys) in x.chunks(ws.max_rows * n_in).zip(labels.chunks(ws.max_rows)) {
            let rows = ys.len();
            self.forward(xs, rows, ws, threads);
            let logits = &ws.outputs[self.layers.len() - 1][..rows * n_out];
            for (row, &y) in logits.chunks_exact(n_out).zip(ys) {
                if argmax(row) != y as usize {
                    errors += 1;
                }
            }
        }
        errors
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

/// Buffers for one mini-batch, sized once: layer outputs, update directions and gradients.
#[derive(Clone, Debug)]
pub struct Workspace {
    pub max_rows: usize,
    /// `outputs[l]`: `h_{l+1}` (`rows × n_{l+1}`); the last one holds the logits `a_L`.
    pub outputs: Vec<Vec<f32>>,
    /// `deltas[l]`: the update direction `δa_{l+1}` of weight layer `l`; the last one is `e`.
    pub deltas: Vec<Vec<f32>>,
    pub grads: Vec<Gradients>,
    /// One gradient buffer per thread, sized for the largest layer ([`Workspace::with_scratch`];
    /// empty unless asked for): an update that applies its gradient at once computes it there,
    /// in a buffer still in the thread's cache from the previous layer, instead of in the
    /// layer's own `grads` (cold on deep nets: writing it first reads it from memory). Such an
    /// update leaves `grads` as it was.
    pub scratch: Vec<Gradients>,
    /// Dropout, when the run uses it: `masks[l]` holds `m/(1−p)` (0 or `1/(1−p)`) for the input
    /// (`l = 0`) and every hidden layer, `dropped[l]` the masked values `x ⊙ m/(1−p)` and
    /// `h_l ⊙ m/(1−p)` that the layer above receives. Empty without dropout.
    pub masks: Vec<Vec<f32>>,
    pub dropped: Vec<Vec<f32>>,
    /// Whether the current pass applies the masks (training with dropout).
    pub dropout_active: bool,
    /// Per layer, the buffers of a convolutional block (`None` for dense layers).
    pub blocks: Vec<Option<BlockScratch>>,
    /// The thread count for which the trainer's updates decided which layer to run last, split
    /// over the threads, and that decision (made once, not every step; see
    /// `training::update_layers`).
    pub split_last: Option<(usize, Option<usize>)>,
}

/// The buffers of one convolutional block for a batch.
#[derive(Clone, Debug)]
pub struct BlockScratch {
    /// The forward pass's im2col rows (`rows·H_out·W_out × kh·kw·C_in`), kept for the gradient.
    pub patches: Vec<f32>,
    /// `f(a)` of the convolution, before pooling (`rows·H_out·W_out × C_out`).
    pub act: Vec<f32>,
    /// Per pooled output, the index in `act` it came from.
    pub argmax: Vec<u32>,
    /// The signal arriving at the block's output (`rows × fan_out`), before the pool's backward.
    pub signal: Vec<f32>,
    /// Scratch of `δa·M` for the signal sent below the block (`rows·H_out·W_out × kh·kw·C_in`).
    pub cols: Vec<f32>,
}

impl Workspace {
    pub fn new(net: &Network, max_rows: usize) -> Self {
        let outputs = net.layers.iter().map(|l| vec![0.0; max_rows * l.fan_out]).collect();
        let deltas = net.layers.iter().map(|l| vec![0.0; max_rows * l.delta_len()]).collect();
        let grads = net
            .layers
            .iter()
            .map(|l| Gradients { weight: vec![0.0; l.weight.len()], bias: vec![0.0; l.bias.len()] })
            .collect();
        let blocks = net
            .layers
            .iter()
            .map(|l| {
                l.block.map(|b| {
                    let (n, c_out, k) = l.gemm_dims(max_rows);
                    BlockScratch {
                        patches: vec![0.0; n * k],
                        act: vec![0.0; n * c_out],
                        argmax: vec![0; max_rows * b.output().len()],
                        signal: vec![0.0; max_rows * l.fan_out],
                        cols: vec![0.0; n * k],
                    }
                })
            })
            .collect();
        Workspace {
            max_rows,
            outputs,
            deltas,
            grads,
            scratch: Vec::new(),
            masks: Vec::new(),
            dropped: Vec::new(),
            dropout_active: false,
            split_last: None,
            blocks,
        }
    }

    /// Allocates one update gradient buffer per thread ([`Workspace::scratch`]).
    pub fn with_scratch(mut self, net: &Network, threads: usize) -> Self {
        let weight = net.layers.iter().map(|l| l.weight.len()).max().unwrap_or(0);
        let bias = net.layers.iter().map(|l| l.bias.len()).max().unwrap_or(0);
        self.scratch = (0..threads).map(|_| Gradients { weight: vec![0.0; weight], bias: vec![0.0; bias] }).collect();
        self
    }

    /// Allocates the dropout buffers (input and every hidden layer).
    pub fn with_dropout(mut self, net: &Network) -> Self {
        let widths = std::iter::once(net.n_inputs()).chain(net.layers[..net.depth() - 1].iter().map(|l| l.fan_out));
        self.masks = widths.clone().map(|w| vec![0.0; self.max_rows * w]).collect();
        self.dropped = widths.map(|w| vec![0.0; self.max_rows * w]).collect();
        self
    }

    /// What layer `l`'s weight gradient multiplies `δa` with: its input, or for a block the
    /// patches of the forward pass.
    pub fn gradient_input<'a>(&'a self, x: &'a [f32], l: usize) -> &'a [f32] {
        match &self.blocks[l] {
            Some(s) => &s.patches,
            None => self.layer_input(x, l),
        }
    }

    /// What weight layer `l` receives: the input `x` or `h_l`, masked when dropout is active.
    pub fn layer_input<'a>(&'a self, x: &'a [f32], l: usize) -> &'a [f32] {
        if self.dropout_active {
            &self.dropped[l]
        } else if l == 0 {
            x
        } else {
            &self.outputs[l - 1]
        }
    }
}

/// `out = v ⊙ m` over the first `n` elements (applying a dropout mask).
pub fn apply_mask(out: &mut [f32], v: &[f32], m: &[f32], n: usize) {
    for ((o, &v), &m) in out[..n].iter_mut().zip(&v[..n]).zip(&m[..n]) {
        *o = v * m;
    }
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
