//! What the sign-symmetry rules share (Liao, Leibo & Poggio 2016, "How important is weight
//! symmetry in backpropagation?"): a feedback matrix in the shape of FA's (`W_{i+1}ᵀ`, or the
//! kernels of a block above), whose entries take the signs of the forward weights they stand
//! for, `B_i = M ⊙ sign(W_{i+1})ᵀ`, recomputed after every step. The rules differ in the
//! magnitudes `M`.

use crate::rules::api::{FeedbackShape, Layers, Matrix, Place, Source};
use crate::rules::feedback::{Feedback, FeedbackMatrix};

/// FA's bound for the feedback matrix `b` of hidden layer `l`: `1/√fan`, the fan of [`shape`].
pub fn bound(l: usize, layers: &dyn Layers, b: &FeedbackMatrix) -> f32 {
    let fan = if layers.is_block(l + 1) { b.cols } else { b.rows };
    1.0 / (fan as f32).sqrt()
}

/// FA's shape: `n_i × n_{i+1}`, or the block's kernels `C_out × kh·kw·C_in` (FA's fans).
pub fn shape(p: &Place) -> FeedbackShape {
    match p.above_kernels {
        Some((c_out, k)) => FeedbackShape { rows: c_out, cols: k, fan: k },
        None => FeedbackShape { rows: p.width, cols: p.above, fan: p.width },
    }
}

/// FA's use of the matrix: `δa_{i+1} Bᵀ`, or below a block as the kernels are used.
pub fn source<'a>(name: &str, l: usize, layers: &'a dyn Layers, feedback: &'a Feedback) -> Source<'a> {
    let b = feedback.for_layer(l).unwrap_or_else(|| panic!("{name} feedback for hidden layer {l} was not drawn"));
    if layers.is_block(l + 1) {
        Source::Above(Matrix::feedback_as_weights(b))
    } else {
        Source::Above(Matrix::feedback(b))
    }
}

/// Sets every entry of `b` to `magnitude(b) · sign(w)` for the forward weight `w` it stands for
/// (`W_{l+1}` transposed, or a block's kernel entry for entry); `w = 0` gives `magnitude(b) · 0`
/// only when `keep_at_zero` is false (else the entry stays).
pub fn follow_signs(
    l: usize,
    layers: &dyn Layers,
    b: &mut FeedbackMatrix,
    mut magnitude: impl FnMut(f32) -> f32,
    keep_at_zero: bool,
) {
    let w = &layers.layer(l + 1).weight;
    let mut set = |v: &mut f32, w: f32| {
        if w != 0.0 {
            *v = magnitude(*v).copysign(w);
        } else if !keep_at_zero {
            *v = 0.0;
        }
    };
    if layers.is_block(l + 1) {
        b.values.iter_mut().zip(w).for_each(|(v, &w)| set(v, w));
    } else {
        // b is n_l × n_{l+1}, W_{l+1} is n_{l+1} × n_l: b[i][j] follows W[j][i]; in tiles, so
        // that the reads and the writes both stay in cache (the order of the entries does not
        // matter, except to brSF's random stream, which then follows the tiles)
        const TILE: usize = 32;
        let (rows, cols) = (b.rows, b.cols);
        for i0 in (0..rows).step_by(TILE) {
            for j0 in (0..cols).step_by(TILE) {
                for i in i0..(i0 + TILE).min(rows) {
                    for j in j0..(j0 + TILE).min(cols) {
                        set(&mut b.values[i * cols + j], w[j * rows + i]);
                    }
                }
            }
        }
    }
}
