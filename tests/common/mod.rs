//! Shared by the integration tests: where the real data sets are.
#![allow(dead_code)]

use std::path::PathBuf;

/// The data folder: `$DFA_DATA` (CI sets it to `../shared/data`), else `../shared/data` beside
/// the checkout. Tests about learning need real data and fail loudly without it.
pub fn data_dir() -> PathBuf {
    let dir = match std::env::var_os("DFA_DATA") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"),
    };
    assert!(
        dir.join("mnist").is_dir(),
        "real MNIST not found in {}: set DFA_DATA to a folder with mnist/ (CI uses ../shared/data)",
        dir.display()
    );
    dir.canonicalize().expect("data folder resolves")
}

pub fn mnist_dir() -> PathBuf {
    data_dir().join("mnist")
}

/// Every tap of a convolution over one sample, written from the definition: `(o, kidx, input)`
/// with `o` the output position (`oy·W_out + ox`), `kidx` the weight column (`(ky·kw + kx)·C_in + c`)
/// and `input` the index of the input value it multiplies (channel-major when `chw_input`,
/// else channels-last); taps in the zero padding are left out.
pub fn conv_taps(c: &dfa::layers::conv::Conv2d) -> Vec<(usize, usize, usize)> {
    let (i, o) = (c.input, c.output());
    let mut taps = Vec::new();
    for oy in 0..o.h {
        for ox in 0..o.w {
            for ky in 0..c.kh {
                for kx in 0..c.kw {
                    let y = (oy * c.stride + ky) as isize - c.pad as isize;
                    let x = (ox * c.stride + kx) as isize - c.pad as isize;
                    if y < 0 || x < 0 || y >= i.h as isize || x >= i.w as isize {
                        continue;
                    }
                    let (y, x) = (y as usize, x as usize);
                    for ci in 0..i.c {
                        let input = if c.chw_input { (ci * i.h + y) * i.w + x } else { (y * i.w + x) * i.c + ci };
                        taps.push((oy * o.w + ox, (ky * c.kw + kx) * i.c + ci, input));
                    }
                }
            }
        }
    }
    taps
}
