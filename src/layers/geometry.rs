//! The geometry of a 2-D convolution (sizes, padding, stride, layout), shared by the im2col
//! path (`conv.rs`) and the Winograd path (`winograd.rs`).

pub use crate::base::shape::Shape;

/// Output size of a window of `k` with `stride` and `pad` over `n` positions (floor, as cuDNN,
/// PyTorch and Caffe's convolutions do). `None` when the window does not fit.
pub fn out_size(n: usize, k: usize, stride: usize, pad: usize) -> Option<usize> {
    (n + 2 * pad).checked_sub(k).map(|span| span / stride + 1)
}

/// A 2-D convolution's geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2d {
    pub input: Shape,
    pub out_channels: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
    /// The input is channel-major (`C × H × W` per image, as the CIFAR loader keeps its pixels)
    /// instead of channels-last; only a network's first layer reads such input.
    pub chw_input: bool,
}

impl Conv2d {
    /// Where input value `(y, x, c)` of one image sits in its slice.
    pub(crate) fn at(&self, y: usize, x: usize, c: usize) -> usize {
        let i = self.input;
        if self.chw_input { (c * i.h + y) * i.w + x } else { (y * i.w + x) * i.c + c }
    }

    pub fn output(&self) -> Shape {
        let h = out_size(self.input.h, self.kh, self.stride, self.pad).expect("kernel larger than the padded input");
        let w = out_size(self.input.w, self.kw, self.stride, self.pad).expect("kernel larger than the padded input");
        Shape { h, w, c: self.out_channels }
    }

    /// Values per receptive field (`kh·kw·C_in`): the columns of `patches` and of `W`.
    pub fn k(&self) -> usize {
        self.kh * self.kw * self.input.c
    }
}
