//! The shape of an image or feature map.

/// The shape of one image or feature map: height, width, channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

impl Shape {
    /// A flat vector of `n` values (`1×1×n`): the input of a dense net.
    pub fn flat(n: usize) -> Self {
        Shape { h: 1, w: n, c: 1 }
    }

    pub fn len(&self) -> usize {
        self.h * self.w * self.c
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
