//! The forward pass of a network over a batch, in a [`Workspace`], and its error count.

use crate::layers::network::{Network, argmax};
use crate::layers::workspace::{Workspace, apply_mask};

impl Network {
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
                let s = ws.blocks[l].as_mut().expect("block scratch");
                block.forward(self.activation, (&layer.weight, &layer.bias), (input, rows), s, out, threads);
                if ws.dropout_active {
                    apply_mask(&mut ws.dropped[l + 1], out, &ws.masks[l + 1], rows * layer.fan_out);
                }
                continue;
            }
            layer.forward_dense((self.activation, l == last), input, out, rows, (threads, streamed));
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
