//! One fully connected layer (or, with `block`, a convolutional block in the same place): its
//! parameters, its forward product and its weight gradients.

use crate::base::linalg::{gemm_nt_weights, gemm_tn};
use crate::base::rng::DfaRng;
use crate::layers::activation::Activation;
use crate::layers::conv::Block;

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
    pub fn forward_dense(
        &self,
        (activation, last): (Activation, bool),
        input: &[f32],
        out: &mut [f32],
        rows: usize,
        (threads, streamed): (usize, bool),
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

    /// Weight gradients from an update direction `D` (`delta`) and the layer's input over `rows`
    /// samples: `∂W = Dᵀ H_in`, `∂b = Σ_rows D` (added to `grad` when `accumulate`). `D` already
    /// carries the batch mean's `1/N`. For a block, `D` is the convolution's `δa` and `input` the
    /// patches of the forward pass (`Workspace::gradient_input`).
    pub fn gradients(
        &self,
        (delta, input, rows): (&[f32], &[f32], usize),
        grad: &mut Gradients,
        accumulate: bool,
        threads: usize,
    ) {
        self.gradients_into((delta, input, rows), (&mut grad.weight, &mut grad.bias), accumulate, threads);
    }

    /// [`Dense::gradients`] into the weight and bias gradients given apart (`weight.len()` and
    /// `bias.len()` long).
    pub fn gradients_into(
        &self,
        (delta, input, rows): (&[f32], &[f32], usize),
        (gw, gb): (&mut [f32], &mut [f32]),
        accumulate: bool,
        threads: usize,
    ) {
        assert!(gw.len() == self.weight.len() && gb.len() == self.bias.len(), "one gradient per parameter");
        let (n, width, k) = self.gemm_dims(rows);
        match &self.block {
            Some(block) => block.weight_gradient((delta, input, rows), gw, accumulate, threads),
            None => gemm_tn(gw, delta, input, (width, n, k), accumulate, threads),
        }
        let rows = n;
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
