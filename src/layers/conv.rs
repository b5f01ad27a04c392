//! Convolution and max-pooling for the CIFAR conv nets (issue 6): forward passes and their exact
//! backward passes, batched, on activations stored channels-last (`batch × H × W × C`, row-major).
//!
//! A convolution is im2col + one GEMM for the whole batch: every output position's receptive
//! field (`K = kh·kw·C_in` values, ordered `(ky, kx, c)`, zeros where it overhangs the padding)
//! becomes a row of `patches` (`batch·H_out·W_out × K`), and `out = patches · Wᵀ + b` with `W`
//! stored `C_out × K`. Backward: `∂W = δᵀ · patches`, `∂b = Σ δ`, and the input gradient is
//! `δ · W` (`batch·H_out·W_out × K`) scattered back over the receptive fields (col2im).
//!
//! Max-pooling takes the largest value of each window (overlapping windows allowed, e.g. 3×3 with
//! stride 2); ties go to the first position in `(ky, kx)` order, and the backward pass sends each
//! output's gradient to exactly the position the forward pass chose (the argmax is stored).

use crate::base::linalg::{gemm_nn, gemm_nt, gemm_tn};
pub use crate::base::shape::Shape;
use crate::layers::activation::Activation;
pub use crate::layers::geometry::{Conv2d, out_size};
use crate::layers::winograd::Winograd;
use rayon::prelude::*;

impl Conv2d {
    /// `patches` (`batch·H_out·W_out × K`) of the `batch` images in `x`.
    /// The images are independent: they are spread over the current rayon pool's threads.
    pub fn im2col(&self, x: &[f32], batch: usize, patches: &mut [f32]) {
        let (i, o, k) = (self.input, self.output(), self.k());
        let per_image = o.h * o.w * k;
        patches[..batch * per_image]
            .par_chunks_mut(per_image)
            .zip(x[..batch * i.len()].par_chunks(i.len()))
            .for_each(|(p, img)| self.im2col_image(img, p));
    }

    fn im2col_image(&self, img: &[f32], patches: &mut [f32]) {
        let (i, o, k) = (self.input, self.output(), self.k());
        for oy in 0..o.h {
            for ox in 0..o.w {
                let row = &mut patches[(oy * o.w + ox) * k..][..k];
                for ky in 0..self.kh {
                    let y = (oy * self.stride + ky) as isize - self.pad as isize;
                    for kx in 0..self.kw {
                        let xx = (ox * self.stride + kx) as isize - self.pad as isize;
                        let dst = &mut row[(ky * self.kw + kx) * i.c..][..i.c];
                        if y < 0 || xx < 0 || y >= i.h as isize || xx >= i.w as isize {
                            dst.fill(0.0);
                        } else if self.chw_input {
                            for (c, d) in dst.iter_mut().enumerate() {
                                *d = img[self.at(y as usize, xx as usize, c)];
                            }
                        } else {
                            dst.copy_from_slice(&img[self.at(y as usize, xx as usize, 0)..][..i.c]);
                        }
                    }
                }
            }
        }
    }

    /// Adds the rows of `cols` (`batch·H_out·W_out × K`, gradients of the patches) back onto the
    /// input positions they were read from: `dx` (`batch × input`) is overwritten.
    /// The images are independent: they are spread over the current rayon pool's threads.
    pub fn col2im(&self, cols: &[f32], batch: usize, dx: &mut [f32]) {
        let (i, o, k) = (self.input, self.output(), self.k());
        let per_image = o.h * o.w * k;
        dx[..batch * i.len()]
            .par_chunks_mut(i.len())
            .zip(cols[..batch * per_image].par_chunks(per_image))
            .for_each(|(img, c)| self.col2im_image(c, img));
    }

    fn col2im_image(&self, cols: &[f32], img: &mut [f32]) {
        let (i, o, k) = (self.input, self.output(), self.k());
        img.fill(0.0);
        for oy in 0..o.h {
            for ox in 0..o.w {
                let row = &cols[(oy * o.w + ox) * k..][..k];
                for ky in 0..self.kh {
                    let y = (oy * self.stride + ky) as isize - self.pad as isize;
                    if y < 0 || y >= i.h as isize {
                        continue;
                    }
                    for kx in 0..self.kw {
                        let xx = (ox * self.stride + kx) as isize - self.pad as isize;
                        if xx < 0 || xx >= i.w as isize {
                            continue;
                        }
                        let src = &row[(ky * self.kw + kx) * i.c..][..i.c];
                        for (c, s) in src.iter().enumerate() {
                            img[self.at(y as usize, xx as usize, c)] += s;
                        }
                    }
                }
            }
        }
    }

    /// `out = patches · Wᵀ + b` (`batch·H_out·W_out × C_out`, i.e. `batch × output` channels-last);
    /// `patches` is filled from `x`.
    pub fn forward(
        &self,
        (x, batch): (&[f32], usize),
        (weight, bias): (&[f32], &[f32]),
        patches: &mut [f32],
        out: &mut [f32],
        threads: usize,
    ) {
        let rows = batch * self.output().h * self.output().w;
        self.im2col(x, batch, patches);
        gemm_nt(out, patches, weight, (rows, self.k(), self.out_channels), false, threads);
        for row in out[..rows * self.out_channels].chunks_exact_mut(self.out_channels) {
            row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
        }
    }

    /// From `delta` (`∂J/∂out`, `batch × output`): `grad_w` (`C_out × K`), `grad_b`, and, when
    /// given, `dx` (`∂J/∂x`, using `cols` as scratch of `batch·H_out·W_out × K`).
    pub fn backward(
        &self,
        (delta, batch): (&[f32], usize),
        weight: &[f32],
        patches: &[f32],
        (grad_w, grad_b): (&mut [f32], &mut [f32]),
        dx: Option<(&mut [f32], &mut [f32])>,
        threads: usize,
    ) {
        let (rows, k, c_out) = (batch * self.output().h * self.output().w, self.k(), self.out_channels);
        gemm_tn(grad_w, delta, patches, (c_out, rows, k), false, threads);
        grad_b[..c_out].fill(0.0);
        for row in delta[..rows * c_out].chunks_exact(c_out) {
            grad_b.iter_mut().zip(row).for_each(|(g, d)| *g += d);
        }
        if let Some((dx, cols)) = dx {
            gemm_nn(cols, delta, weight, (rows, c_out, k), false, threads);
            self.col2im(cols, batch, dx);
        }
    }
}

/// Max-pooling's geometry (no padding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPool {
    pub input: Shape,
    pub k: usize,
    pub stride: usize,
}

impl MaxPool {
    pub fn output(&self) -> Shape {
        let h = out_size(self.input.h, self.k, self.stride, 0).expect("window larger than the input");
        let w = out_size(self.input.w, self.k, self.stride, 0).expect("window larger than the input");
        Shape { h, w, c: self.input.c }
    }

    /// `out` (`batch × output`) and, per output value, the index in `x` it came from (`argmax`).
    /// The images are independent: they are spread over the current rayon pool's threads.
    pub fn forward(&self, x: &[f32], batch: usize, out: &mut [f32], argmax: &mut [u32]) {
        let o = self.output();
        out[..batch * o.len()]
            .par_chunks_mut(o.len())
            .zip(argmax[..batch * o.len()].par_chunks_mut(o.len()))
            .enumerate()
            .for_each(|(b, (out, argmax))| self.forward_image(x, b, out, argmax));
    }

    /// Image `b` of `x`; `argmax` holds indices into the whole batch `x`. Per output position
    /// the window is scanned in `(ky, kx)` order over all channels at once (a vector of
    /// channels, channels-last), taking a value only when it is strictly larger: ties keep the
    /// first position, as the scan channel by channel did.
    fn forward_image(&self, x: &[f32], b: usize, out: &mut [f32], argmax: &mut [u32]) {
        let n = self.input.len();
        pool_image(self, &x[b * n..][..n], b * n, out, argmax);
    }

    /// `dx` (`batch × input`, overwritten): each output's gradient added at its argmax.
    /// The images are independent (an output's argmax lies in its own image): they are spread
    /// over the current rayon pool's threads.
    pub fn backward(&self, delta: &[f32], batch: usize, argmax: &[u32], dx: &mut [f32]) {
        let (i, o) = (self.input.len(), self.output().len());
        dx[..batch * i]
            .par_chunks_mut(i)
            .zip(delta[..batch * o].par_chunks(o))
            .zip(argmax[..batch * o].par_chunks(o))
            .enumerate()
            .for_each(|(b, ((dx, delta), argmax))| self.backward_image((delta, argmax), b * i, dx));
    }

    /// [`MaxPool::backward`] of one image: `dx` (`input.len()` values) from the image's `delta`
    /// and `argmax`; `base` is the index of `dx[0]` in the batch.
    fn backward_image(&self, (delta, argmax): (&[f32], &[u32]), base: usize, dx: &mut [f32]) {
        dx.fill(0.0);
        for (d, &at) in delta.iter().zip(argmax) {
            dx[at as usize - base] += d;
        }
    }
}

/// A convolutional block: a convolution, the activation, then an optional max-pooling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Block {
    pub conv: Conv2d,
    pub pool: Option<MaxPool>,
    /// The convolution by Winograd's minimal filtering (`None`: im2col + GEMM); chosen by the
    /// run's `conv_algo`.
    pub fast: Option<Winograd>,
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

    /// The block's forward pass over `rows` samples of `input`: the convolution (im2col + GEMM,
    /// the patches kept in `s` for the weight gradient), bias and `f` in one pass (`s.act`), then
    /// the pool (its argmax kept in `s`) into `out`. `params`: the kernels (`C_out × kh·kw·C_in`)
    /// and biases.
    pub fn forward(
        &self,
        f: Activation,
        (weight, bias): (&[f32], &[f32]),
        (input, rows): (&[f32], usize),
        s: &mut BlockScratch,
        out: &mut [f32],
        threads: usize,
    ) {
        let (n, c_out, k) = (rows * self.positions(), self.conv.out_channels, self.conv.k());
        match &self.fast {
            Some(wg) => {
                let (u, rest) = s.fast.split_at_mut(wg.kernel_len(&self.conv));
                let mt = &mut rest[..wg.tile_len(&self.conv, rows)];
                wg.forward(&self.conv, (input, rows), weight, (u, &mut s.patches, mt), &mut s.act, threads);
            }
            None => {
                self.conv.im2col(input, rows, &mut s.patches);
                gemm_nt(&mut s.act, &s.patches, weight, (n, k, c_out), false, threads);
            }
        }
        // bias, f and the pool image by image, spread over the threads: each image's `act` is
        // pooled while it is still in cache
        let per = self.conv_len();
        match &self.pool {
            Some(pool) => {
                let o = pool.output().len();
                s.act[..n * c_out]
                    .par_chunks_mut(per)
                    .zip(out[..rows * o].par_chunks_mut(o))
                    .zip(s.argmax[..rows * o].par_chunks_mut(o))
                    .enumerate()
                    .for_each(|(b, ((act, out), argmax))| {
                        f.bias_apply(act, bias);
                        pool_image(pool, act, b * per, out, argmax);
                    });
            }
            None => {
                s.act[..n * c_out].par_chunks_mut(per).for_each(|act| f.bias_apply(act, bias));
                out[..n * c_out].copy_from_slice(&s.act[..n * c_out]);
            }
        }
    }

    /// The block's backward pass inside the block: the signal that arrived at its (pooled)
    /// output (`s.signal`) goes back through the pool's argmax and `⊙ f'` to the convolution's
    /// update direction `δa` (`d`, `rows·H_out·W_out × C_out`).
    pub fn backward(&self, f: Activation, s: &BlockScratch, rows: usize, d: &mut [f32]) {
        let per = self.conv_len();
        let (d, act) = (&mut d[..rows * per], &s.act[..rows * per]);
        // image by image over the threads, `⊙ f'` while the image's `δa` is in cache
        match &self.pool {
            Some(pool) => {
                let o = pool.output().len();
                d.par_chunks_mut(per)
                    .zip(act.par_chunks(per))
                    .zip(s.signal[..rows * o].par_chunks(o).zip(s.argmax[..rows * o].par_chunks(o)))
                    .enumerate()
                    .for_each(|(b, ((d, act), below))| {
                        pool.backward_image(below, b * per, d);
                        f.scale_by_derivative(d, act);
                    });
            }
            None => {
                d.copy_from_slice(&s.signal[..d.len()]);
                d.par_chunks_mut(per).zip(act.par_chunks(per)).for_each(|(d, act)| f.scale_by_derivative(d, act));
            }
        }
    }

    /// The signal this block sends to the layer below: `col2im(δa · M)` into `target`, with `M`
    /// its kernels (BP) or feedback kernels of the same shape (FA), `d` its `δa`, `cols` scratch
    /// ([`Block::cols_len`]); by Winograd when the block's convolution uses it.
    pub fn send_below(
        &self,
        kernels: &[f32],
        d: &[f32],
        rows: usize,
        cols: &mut [f32],
        target: &mut [f32],
        threads: usize,
    ) {
        if let Some(wg) = &self.fast {
            let (u, rest) = cols.split_at_mut(wg.kernel_len(&self.conv));
            let (v, mt) = rest.split_at_mut(wg.tile_len(&self.conv, rows));
            wg.input_gradient(&self.conv, (d, rows), kernels, (u, v, mt), target, threads);
            return;
        }
        let (n, c_out, k) = (rows * self.positions(), self.conv.out_channels, self.conv.k());
        gemm_nn(cols, d, kernels, (n, c_out, k), false, threads);
        self.conv.col2im(cols, rows, target);
    }

    /// Floats of what the forward pass keeps for the weight gradient over `rows` samples: the
    /// im2col patches, or Winograd's transformed input.
    pub fn patches_len(&self, rows: usize) -> usize {
        match &self.fast {
            Some(wg) => wg.tile_len(&self.conv, rows),
            None => rows * self.positions() * self.conv.k(),
        }
    }

    /// Floats of the per-thread scratch of [`Block::weight_gradient`] over `rows` samples (0 for
    /// im2col).
    pub fn weight_scratch_len(&self, rows: usize) -> usize {
        self.fast.map_or(0, |wg| wg.tile_len(&self.conv, rows) + wg.hat_len(&self.conv))
    }

    /// Floats of [`Block::send_below`]'s scratch over `rows` samples.
    pub fn cols_len(&self, rows: usize) -> usize {
        match &self.fast {
            Some(wg) => wg.kernel_len(&self.conv) + 2 * wg.tile_len(&self.conv, rows),
            None => rows * self.positions() * self.conv.k(),
        }
    }

    /// Floats of the forward pass's Winograd scratch (transformed kernels and products; empty
    /// for im2col).
    pub fn fast_len(&self, rows: usize) -> usize {
        self.fast.map_or(0, |wg| wg.kernel_len(&self.conv) + wg.tile_len(&self.conv, rows))
    }

    /// The weight gradient `gw` (`C_out × kh·kw·C_in`, added to when `accumulate`) of `δa`
    /// (`delta`) and what the forward pass kept (`patches`: im2col rows or Winograd's transformed
    /// input).
    pub fn weight_gradient(
        &self,
        (delta, patches, rows): (&[f32], &[f32], usize),
        gw: &mut [f32],
        accumulate: bool,
        threads: usize,
    ) {
        match &self.fast {
            Some(wg) => {
                let (tiles, hat) = (wg.tile_len(&self.conv, rows), wg.hat_len(&self.conv));
                WEIGHT_SCRATCH.with_borrow_mut(|buf| {
                    if buf.len() < tiles + hat {
                        buf.resize(tiles + hat, 0.0);
                    }
                    let (dt, rest) = buf.split_at_mut(tiles);
                    wg.weight_gradient(
                        &self.conv,
                        (delta, rows),
                        patches,
                        (dt, &mut rest[..hat]),
                        gw,
                        accumulate,
                        threads,
                    );
                });
            }
            None => {
                let (n, c_out, k) = (rows * self.positions(), self.conv.out_channels, self.conv.k());
                gemm_tn(gw, delta, patches, (c_out, n, k), accumulate, threads);
            }
        }
    }
}

/// Sizes the calling thread's Winograd weight-gradient scratch to at least `len` floats (a
/// trainer does it on every thread of its pool, so that no step allocates).
pub fn reserve_weight_scratch(len: usize) {
    WEIGHT_SCRATCH.with_borrow_mut(|buf| {
        if buf.len() < len {
            buf.resize(len, 0.0);
        }
    });
}

thread_local! {
    /// Scratch of the Winograd weight gradient (the transformed `δa` and `∂Ŵ`), per thread: an
    /// update may run on any thread of the pool. Grown on first use, then reused.
    static WEIGHT_SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The buffers of one convolutional block for a batch.
#[derive(Clone, Debug)]
pub struct BlockScratch {
    /// The forward pass's im2col rows (`rows·H_out·W_out × kh·kw·C_in`), or Winograd's transformed
    /// input ([`Block::patches_len`]), kept for the weight gradient.
    pub patches: Vec<f32>,
    /// `f(a)` of the convolution, before pooling (`rows·H_out·W_out × C_out`).
    pub act: Vec<f32>,
    /// Per pooled output, the index in `act` it came from.
    pub argmax: Vec<u32>,
    /// The signal arriving at the block's output (`rows × fan_out`), before the pool's backward.
    pub signal: Vec<f32>,
    /// Scratch of `δa·M` for the signal sent below the block ([`Block::cols_len`]).
    pub cols: Vec<f32>,
    /// The forward pass's Winograd scratch ([`Block::fast_len`]; empty for im2col).
    pub fast: Vec<f32>,
}

crate::multiversion! {
    /// [`MaxPool::forward`] of one image `x` (`p.input` values), whose first value has index
    /// `base` in the batch (the argmax holds indices into the batch).
    fn pool_image(p: &MaxPool, x: &[f32], base: usize, out: &mut [f32], argmax: &mut [u32]) {
        let (i, o) = (p.input, p.output());
        let c = i.c;
        for oy in 0..o.h {
            for ox in 0..o.w {
                let o_at = (oy * o.w + ox) * c;
                let (best, arg) = (&mut out[o_at..o_at + c], &mut argmax[o_at..o_at + c]);
                for ky in 0..p.k {
                    for kx in 0..p.k {
                        let at = ((oy * p.stride + ky) * i.w + ox * p.stride + kx) * c;
                        let window = &x[at..at + c];
                        let at = base + at;
                        if ky == 0 && kx == 0 {
                            best.copy_from_slice(window);
                            arg.iter_mut().enumerate().for_each(|(ch, a)| *a = (at + ch) as u32);
                            continue;
                        }
                        for (ch, ((v, bv), a)) in window.iter().zip(best.iter_mut()).zip(arg.iter_mut()).enumerate() {
                            if *v > *bv {
                                *bv = *v;
                                *a = (at + ch) as u32;
                            }
                        }
                    }
                }
            }
        }
    }
}
