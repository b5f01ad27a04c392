//! What the hidden layers learned: their features (`dfa features`) and t-SNE pictures of them
//! (the paper's Fig. 3).
//!
//! Layer `0` is the input, `1..=L-1` the hidden layers' outputs `h_k = f(a_k)`, `L` the output
//! layer's pre-activations (logits). The embedding is Barnes-Hut t-SNE (van der Maaten 2014) from
//! the `bhtsne` crate, with Euclidean distances, started from small Gaussian points drawn from the
//! seed so that a picture is reproducible.

use crate::base::error::{Error, Result};
use crate::base::rng::{DfaRng, Stream};
use crate::layers::{Network, Workspace};
use std::path::Path;

/// Rows per forward chunk.
const CHUNK: usize = 500;

/// The features of `layer` (see the module doc) for the `n` samples in `x`, row-major
/// `n × width`. Errors on a layer the network does not have.
pub fn extract(net: &Network, x: &[f32], layer: usize, threads: usize) -> Result<(Vec<f32>, usize)> {
    let depth = net.depth();
    if layer > depth {
        return Err(Error::config(
            "--layer",
            format!("{layer}; expected 0 (input) to {depth} (output), the network has {} hidden layers", depth - 1),
        ));
    }
    let n_in = net.n_inputs();
    if layer == 0 {
        return Ok((x.to_vec(), n_in));
    }
    let width = net.layers[layer - 1].fan_out;
    let n = x.len() / n_in;
    let mut out = Vec::with_capacity(n * width);
    let mut ws = Workspace::new(net, CHUNK);
    for xs in x.chunks(CHUNK * n_in) {
        let rows = xs.len() / n_in;
        net.forward(xs, rows, &mut ws, threads);
        out.extend_from_slice(&ws.outputs[layer - 1][..rows * width]);
    }
    Ok((out, width))
}

/// Writes features as CSV: a header `label,f0,f1,…` and one row per sample.
pub fn write_csv(path: &Path, features: &[f32], width: usize, labels: &[u8]) -> Result<()> {
    let mut text = String::with_capacity(features.len() * 12);
    text.push_str("label");
    for j in 0..width {
        text.push_str(&format!(",f{j}"));
    }
    text.push('\n');
    for (row, label) in features.chunks_exact(width).zip(labels) {
        text.push_str(&label.to_string());
        for v in row {
            text.push(',');
            text.push_str(&v.to_string());
        }
        text.push('\n');
    }
    crate::base::io::write_atomically(path, text.as_bytes())
}

/// Writes features as `path` (an `n × width` float32 NPY array) and the labels beside it as
/// `<stem>-labels.npy` (uint8); returns the labels' path.
pub fn write_npy(path: &Path, features: &[f32], width: usize, labels: &[u8]) -> Result<std::path::PathBuf> {
    let n = labels.len();
    let data = crate::base::io::f32_bytes(features);
    crate::base::io::write_atomically(path, &crate::base::io::npy_bytes("<f4", &[n, width], &data))?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("features");
    let labels_path = path.with_file_name(format!("{stem}-labels.npy"));
    crate::base::io::write_atomically(&labels_path, &crate::base::io::npy_bytes("|u1", &[n], labels))?;
    Ok(labels_path)
}

/// Settings of a t-SNE embedding.
#[derive(Clone, Copy, Debug)]
pub struct TsneSettings {
    pub perplexity: f32,
    /// Barnes-Hut's accuracy: cells seen under an angle below `theta` are summarised.
    pub theta: f32,
    pub iterations: usize,
    pub seed: u64,
}

impl Default for TsneSettings {
    fn default() -> Self {
        TsneSettings { perplexity: 30.0, theta: 0.5, iterations: 1000, seed: 1 }
    }
}

/// A 2-D Barnes-Hut t-SNE embedding of `n` points of `width` features (row-major), `2n` values.
/// It runs on one thread of its own, because `bhtsne`'s parallel sums are not reproducible: the
/// same points and seed give the same embedding, bit for bit.
pub fn tsne(points: &[f32], width: usize, settings: TsneSettings) -> Result<Vec<f32>> {
    let n = points.len() / width.max(1);
    let needed = (3.0 * settings.perplexity) as usize + 2;
    if n < needed {
        return Err(Error::config(
            "points",
            format!("{n} points for perplexity {}; expected at least {needed}", settings.perplexity),
        ));
    }
    let positive = |v: f32| v.is_finite() && v > 0.0;
    if !positive(settings.theta) || !positive(settings.perplexity) || settings.iterations == 0 {
        return Err(Error::config(
            "t-SNE settings",
            format!(
                "theta {}, perplexity {}, {} iterations; expected theta and perplexity > 0 and at least one iteration",
                settings.theta, settings.perplexity, settings.iterations
            ),
        ));
    }
    let samples: Vec<&[f32]> = points.chunks_exact(width).collect();
    let mut rng = DfaRng::new(settings.seed, Stream::Embedding);
    // N(0, 1e-4²) starting points, as in van der Maaten's code (Box-Muller on our own stream)
    let start: Vec<f32> = (0..n)
        .flat_map(|_| {
            let (u, v) = (1.0 - rng.unit(), rng.unit());
            let r: f32 = (-2.0 * u.ln()).sqrt() * 1e-4;
            let t = std::f32::consts::TAU * v;
            [r * t.cos(), r * t.sin()]
        })
        .collect();
    let one =
        rayon::ThreadPoolBuilder::new().num_threads(1).build().map_err(|e| Error::config("threads", e.to_string()))?;
    Ok(one.install(|| {
        let mut model: bhtsne::tSNE<f32, &[f32]> = bhtsne::tSNE::new(&samples);
        model
            .perplexity(settings.perplexity)
            .epochs(settings.iterations)
            .initial_embedding(start)
            .barnes_hut(settings.theta, |a, b| {
                a.iter().zip(b.iter()).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt()
            });
        model.embedding()
    }))
}

/// The title of layer `k` of a network with `depth` weight layers in pictures.
pub fn layer_title(k: usize, depth: usize) -> String {
    match k {
        0 => "input".into(),
        k if k == depth => "output (logits)".into(),
        k => format!("hidden layer {k}"),
    }
}

/// Whether row `r` of a t-SNE figure shows layer `k`: the input and its hidden layers always;
/// layer `depth` (the output logits) only when every row's net has that depth, so that a column
/// never mixes a hidden layer of one net with the output of another (a shallower net's panel
/// stays empty, titled so).
fn shown(nets: &[(String, &Network)], r: usize, k: usize) -> bool {
    let depth = nets[r].1.depth();
    k < depth || (k == depth && nets.iter().all(|(_, n)| n.depth() == depth))
}

/// The paper's Fig. 3: for each labelled network, t-SNE embeddings of the features of `layers`
/// for the first `points` samples of `split`, drawn as one row of panels per network. The input
/// layer's embedding is computed once and shared by the rows. Each embedding runs on one thread
/// ([`tsne`]), up to `threads` of them at a time. `progress` hears of each embedding as it starts.
pub fn tsne_figure(
    nets: &[(String, &Network)],
    (split, points): (&crate::data::Split, usize),
    layers: &[usize],
    settings: TsneSettings,
    threads: usize,
    out: &Path,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<()> {
    use rayon::prelude::*;
    let n = points.min(split.len());
    let x = &split.images[..n * split.dim];
    let labels = &split.labels[..n];
    // the embeddings to compute: (row, title, features, width); the input only once
    let mut jobs = Vec::new();
    for (r, (_, net)) in nets.iter().enumerate() {
        for &k in layers {
            if k == 0 && jobs.iter().any(|(_, title, _, _): &(usize, String, Vec<f32>, usize)| title == "input") {
                continue;
            }
            if !shown(nets, r, k) {
                continue;
            }
            let (features, width) = extract(net, x, k, threads)?;
            jobs.push((r, layer_title(k, net.depth()), features, width));
        }
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| Error::config("threads", e.to_string()))?;
    let embeddings: Vec<Vec<f32>> = pool.install(|| {
        jobs.par_iter()
            .with_max_len(1)
            .map(|(r, title, features, width)| {
                progress(&format!("t-SNE of {}, {title} ({n} points)", nets[*r].0));
                tsne(features, *width, settings)
            })
            .collect::<Result<_>>()
    })?;
    let input = jobs.iter().position(|(_, title, _, _)| title == "input");
    let mut rows = Vec::new();
    for (r, (label, net)) in nets.iter().enumerate() {
        let panels = layers
            .iter()
            .map(|&k| {
                if !shown(nets, r, k) {
                    return crate::report::plots::Embedding {
                        title: format!("no hidden layer {k}"),
                        points: Vec::new(),
                    };
                }
                let title = layer_title(k, net.depth());
                let j = if k == 0 { input } else { jobs.iter().position(|(jr, t, _, _)| *jr == r && *t == title) };
                let points = j.map(|j| embeddings[j].clone()).unwrap_or_default();
                crate::report::plots::Embedding { title, points }
            })
            .collect();
        rows.push((label.clone(), panels));
    }
    crate::report::plots::tsne_grid(&rows, labels, out)
}
