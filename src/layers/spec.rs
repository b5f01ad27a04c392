//! The model string: which layers a net has (`2x800`, `800,400,200`, `c96k5p2,p3s2,…,2048`, or a
//! named model), parsed into [`LayerSpec`]s.

use crate::base::error::{Error, Result};

/// One item of a model string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerSpec {
    /// `c<filters>k<size>[s<stride>][p<pad>]`: a convolution (stride 1, no padding by default),
    /// followed by the activation.
    Conv { filters: usize, size: usize, stride: usize, pad: usize },
    /// `p<size>s<stride>`: max-pooling after the convolution before it.
    Pool { size: usize, stride: usize },
    /// A dense hidden layer of this width.
    Dense(usize),
}

/// Named models: the paper's CIFAR net (the dropout paper's, with tanh units) and a small one.
pub const NAMED_MODELS: [(&str, &str); 2] = [
    ("conv-tanh", "c96k5p2,p3s2,c128k5p2,p3s2,c256k5p2,p3s2,2048,2048"),
    ("conv-small", "c16k5p2,p3s2,c32k5p2,p3s2,128"),
];

/// Parses a model string: dense (`2x800`, `800,400,200`) or with convolutional blocks
/// (`c96k5p2,p3s2,…,2048,2048`, or a name of [`NAMED_MODELS`]). Blocks come first; every pool
/// follows a convolution.
pub fn parse_layers(model: &str) -> Result<Vec<LayerSpec>> {
    let expanded = NAMED_MODELS.iter().find(|(name, _)| *name == model).map_or(model, |(_, m)| m);
    if !expanded.starts_with('c') {
        return Ok(parse_model(model)?.into_iter().map(LayerSpec::Dense).collect());
    }
    let bad = |why: String| {
        Error::config(
            "model",
            format!("'{model}': {why}; expected items like c96k5p2 (conv), p3s2 (pool), 2048 (dense)"),
        )
    };
    // `letter number` pairs: c96k5p2 → [('c', 96), ('k', 5), ('p', 2)]
    let pairs = |item: &str| -> Result<Vec<(char, usize)>> {
        let mut out = Vec::new();
        let mut chars = item.chars().peekable();
        while let Some(letter) = chars.next() {
            let mut digits = String::new();
            while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                digits.push(*d);
                chars.next();
            }
            let n = digits.parse::<usize>().map_err(|_| bad(format!("'{item}' has '{letter}' without a number")))?;
            out.push((letter, n));
        }
        Ok(out)
    };
    let mut specs = Vec::new();
    for item in expanded.split(',').map(str::trim) {
        if let Ok(width) = item.parse::<usize>() {
            specs.push(LayerSpec::Dense(width));
            continue;
        }
        if specs.iter().any(|s| matches!(s, LayerSpec::Dense(_))) {
            return Err(bad(format!("'{item}' comes after a dense layer")));
        }
        let p = pairs(item)?;
        let get = |k: char| p.iter().find(|(l, _)| *l == k).map(|(_, n)| *n);
        let spec = match p.first().map(|(l, _)| *l) {
            Some('c') => LayerSpec::Conv {
                filters: get('c').unwrap_or(0),
                size: get('k').ok_or_else(|| bad(format!("'{item}' has no kernel size k")))?,
                stride: get('s').unwrap_or(1),
                pad: get('p').unwrap_or(0),
            },
            Some('p') => {
                if !matches!(specs.last(), Some(LayerSpec::Conv { .. })) {
                    return Err(bad(format!("the pool '{item}' does not follow a convolution")));
                }
                LayerSpec::Pool {
                    size: get('p').unwrap_or(0),
                    stride: get('s').ok_or_else(|| bad(format!("'{item}' has no stride s")))?,
                }
            }
            _ => return Err(bad(format!("'{item}' is not a layer"))),
        };
        if p.iter().any(|(l, _)| !"ckspd".contains(*l)) {
            return Err(bad(format!("'{item}' has an unknown letter")));
        }
        specs.push(spec);
    }
    let zero = specs.iter().any(|s| match *s {
        LayerSpec::Conv { filters, size, stride, .. } => filters == 0 || size == 0 || stride == 0,
        LayerSpec::Pool { size, stride } => size == 0 || stride == 0,
        LayerSpec::Dense(w) => w == 0,
    });
    if zero {
        return Err(bad("a size, stride or width of 0".into()));
    }
    Ok(specs)
}

/// The number of hidden layers (feedback points: dense layers and conv blocks) of a model string.
pub fn hidden_layers(model: &str) -> Result<usize> {
    Ok(parse_layers(model)?.iter().filter(|s| !matches!(s, LayerSpec::Pool { .. })).count())
}

/// Parses a dense model string into hidden widths: `2x800` → `[800, 800]`, `800,400,200` → as
/// listed.
pub fn parse_model(model: &str) -> Result<Vec<usize>> {
    let bad = |why: &str| {
        Error::config(
            "model",
            format!("'{model}' {why}; expected DEPTHxWIDTH (e.g. 2x800) or comma-separated widths (e.g. 800,400,200)"),
        )
    };
    let widths: Vec<usize> = if let Some((depth, width)) = model.split_once('x') {
        let depth: usize = depth.trim().parse().map_err(|_| bad("has a depth that is not a number"))?;
        let width: usize = width.trim().parse().map_err(|_| bad("has a width that is not a number"))?;
        vec![width; depth]
    } else {
        model
            .split(',')
            .map(|w| w.trim().parse::<usize>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad("is not a list of numbers"))?
    };
    if widths.is_empty() {
        return Err(bad("has no hidden layer"));
    }
    if widths.contains(&0) {
        return Err(bad("has a layer of width 0"));
    }
    if widths.len() > 10_000 || widths.iter().any(|&w| w > 1 << 20) {
        return Err(bad("is too large"));
    }
    Ok(widths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_models() {
        assert_eq!(parse_model("2x800").unwrap(), vec![800, 800]);
        assert_eq!(parse_model("800,400,200").unwrap(), vec![800, 400, 200]);
        assert_eq!(parse_model("100x240").unwrap().len(), 100);
        for bad in ["", "x800", "2x", "800,,3", "0x800", "2x0", "abc"] {
            let e = parse_model(bad).unwrap_err().to_string();
            assert!(e.contains("model") && e.contains("expected"), "{bad}: {e}");
        }
    }

    #[test]
    fn parses_conv_models() {
        use LayerSpec::*;
        let tanh = parse_layers("conv-tanh").unwrap();
        assert_eq!(tanh.len(), 8);
        assert_eq!(tanh[0], Conv { filters: 96, size: 5, stride: 1, pad: 2 });
        assert_eq!(tanh[1], Pool { size: 3, stride: 2 });
        assert_eq!(tanh[7], Dense(2048));
        assert_eq!(hidden_layers("conv-tanh").unwrap(), 5);
        assert_eq!(parse_layers("c8k3s2,64").unwrap(), [Conv { filters: 8, size: 3, stride: 2, pad: 0 }, Dense(64)]);
        assert_eq!(parse_layers("2x10").unwrap(), [Dense(10), Dense(10)]);
        for bad in ["c8,64", "p3s2,64", "c8k3,64,c8k3", "c8k3x2", "c0k3", "c8k3,p3", "c8k3q1"] {
            let e = parse_layers(bad).unwrap_err().to_string();
            assert!(e.contains("model") && e.contains("expected"), "{bad}: {e}");
        }
    }
}
