//! The buffers of one mini-batch, sized once: layer outputs, update directions, gradients,
//! dropout masks and the convolutional blocks' scratch.

use crate::layers::conv::BlockScratch;
use crate::layers::dense::Gradients;
use crate::layers::network::{Network, output_error};

/// Buffers for one mini-batch, sized once: layer outputs, update directions and gradients.
#[derive(Clone, Debug)]
pub struct Workspace {
    pub max_rows: usize,
    /// `outputs[l]`: `h_{l+1}` (`rows × n_{l+1}`); the last one holds the logits `a_L`.
    pub outputs: Vec<Vec<f32>>,
    /// `deltas[l]`: the update direction `δa_{l+1}` of weight layer `l`; the last one is `e`.
    pub deltas: Vec<Vec<f32>>,
    /// The one-hot targets of the batch over `N`, `y/N` (`rows × n_out`), written with `e` by
    /// [`Workspace::output_error`]: the signal of a rule that learns from the target (DRTP).
    pub target: Vec<f32>,
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
                    let (n, c_out, _) = l.gemm_dims(max_rows);
                    BlockScratch {
                        patches: vec![0.0; b.patches_len(max_rows)],
                        act: vec![0.0; n * c_out],
                        argmax: vec![0; max_rows * b.output().len()],
                        signal: vec![0.0; max_rows * l.fan_out],
                        cols: vec![0.0; b.cols_len(max_rows)],
                        fast: vec![0.0; b.fast_len(max_rows)],
                    }
                })
            })
            .collect();
        let target = vec![0.0; max_rows * net.n_outputs()];
        Workspace {
            max_rows,
            outputs,
            deltas,
            target,
            grads,
            scratch: Vec::new(),
            masks: Vec::new(),
            dropped: Vec::new(),
            dropout_active: false,
            split_last: None,
            blocks,
        }
    }

    /// The loss and errors of the batch whose logits are in the last output, for `labels`
    /// ([`output_error`]): writes `e = (ŷ − y)/N` into the last direction and `y/N` into
    /// [`Workspace::target`].
    pub fn output_error(&mut self, labels: &[u8]) -> (f64, usize) {
        let depth = self.outputs.len();
        let n_out = self.target.len() / self.max_rows.max(1);
        let result = output_error(&self.outputs[depth - 1], labels, n_out, &mut self.deltas[depth - 1]);
        let inv_n = 1.0 / labels.len().max(1) as f32;
        for (row, &label) in self.target.chunks_exact_mut(n_out).zip(labels) {
            row.iter_mut().enumerate().for_each(|(k, t)| *t = if k == label as usize { inv_n } else { 0.0 });
        }
        result
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
