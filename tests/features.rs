//! Features and t-SNE (the paper's Fig. 3): extraction against the forward pass, the file
//! formats, t-SNE on clusters whose answer is known, and the picture.

use dfa::base::rng::{DfaRng, Stream};
use dfa::layers::activation::Activation;
use dfa::layers::{Network, Workspace};
use dfa::report::features::{self, TsneSettings};
use dfa::report::plots::{Embedding, tsne_grid};

fn net() -> Network {
    Network::new(&[6, 5, 4, 3], Activation::Tanh, true, true, &mut DfaRng::new(2, Stream::Weights))
}

#[test]
fn features_are_the_layer_outputs_of_the_forward_pass() {
    let net = net();
    let mut rng = DfaRng::new(3, Stream::Shuffle);
    let n = 1100; // more than one chunk of 500
    let x: Vec<f32> = (0..n * 6).map(|_| rng.unit()).collect();
    let (input, w) = features::extract(&net, &x, 0, 1).unwrap();
    assert_eq!((input.as_slice(), w), (x.as_slice(), 6));
    let mut ws = Workspace::new(&net, n);
    net.forward(&x, n, &mut ws, 1);
    for k in 1..=3 {
        let (f, width) = features::extract(&net, &x, k, 2).unwrap();
        assert_eq!(width, net.layers[k - 1].fan_out);
        assert_eq!(f, ws.outputs[k - 1][..n * width], "layer {k}");
    }
    // hidden features are tanh outputs; the last layer gives logits
    let (h1, _) = features::extract(&net, &x, 1, 1).unwrap();
    assert!(h1.iter().all(|v| v.abs() < 1.0));
    let e = features::extract(&net, &x, 4, 1).unwrap_err().to_string();
    assert!(e.contains("--layer") && e.contains("expected 0 (input) to 3"), "{e}");
}

#[test]
fn npy_and_csv_files_hold_what_numpy_expects() {
    let tmp = tempfile::tempdir().unwrap();
    let feats = [1.5f32, -2.0, 0.25, 3.0, 4.0, -0.5];
    let labels = [7u8, 2];
    let path = tmp.path().join("h1.npy");
    let labels_path = features::write_npy(&path, &feats, 3, &labels).unwrap();
    assert_eq!(labels_path, tmp.path().join("h1-labels.npy"));
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + header_len) % 64, 0, "the data must start 64-byte aligned");
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"), "{header}");
    assert!(header.ends_with('\n'));
    let data: Vec<f32> =
        bytes[10 + header_len..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert_eq!(data, feats);
    let lb = std::fs::read(&labels_path).unwrap();
    let lh = u16::from_le_bytes([lb[8], lb[9]]) as usize;
    assert!(
        std::str::from_utf8(&lb[10..10 + lh])
            .unwrap()
            .contains("'descr': '|u1', 'fortran_order': False, 'shape': (2,)")
    );
    assert_eq!(&lb[10 + lh..], &labels);

    let csv = tmp.path().join("h1.csv");
    features::write_csv(&csv, &feats, 3, &labels).unwrap();
    assert_eq!(std::fs::read_to_string(&csv).unwrap(), "label,f0,f1,f2\n7,1.5,-2,0.25\n2,3,4,-0.5\n");
}

/// Five well-separated Gaussian clusters in 10 dimensions: after t-SNE, nearly every point's
/// nearest neighbours in the plane come from its own cluster, and the same seed gives the same
/// embedding.
#[test]
fn tsne_keeps_the_neighbours_of_clusters_together() {
    let (clusters, per, dim) = (5usize, 60usize, 10usize);
    let mut rng = DfaRng::new(9, Stream::Shuffle);
    let centres: Vec<Vec<f32>> = (0..clusters).map(|_| (0..dim).map(|_| rng.symmetric(10.0)).collect()).collect();
    let mut points = Vec::new();
    let mut truth = Vec::new();
    for (c, centre) in centres.iter().enumerate() {
        for _ in 0..per {
            points.extend(centre.iter().map(|&m| m + rng.symmetric(1.0)));
            truth.push(c);
        }
    }
    let settings = TsneSettings { perplexity: 15.0, iterations: 500, ..Default::default() };
    let y = features::tsne(&points, dim, settings).unwrap();
    assert_eq!(y.len(), 2 * clusters * per);
    assert!(y.iter().all(|v| v.is_finite()));
    let n = truth.len();
    let k = 5;
    let mut same = 0;
    for i in 0..n {
        let mut d: Vec<(f32, usize)> = (0..n)
            .filter(|&j| j != i)
            .map(|j| ((y[2 * i] - y[2 * j]).powi(2) + (y[2 * i + 1] - y[2 * j + 1]).powi(2), j))
            .collect();
        d.sort_by(|a, b| a.0.total_cmp(&b.0));
        same += d[..k].iter().filter(|(_, j)| truth[*j] == truth[i]).count();
    }
    let fraction = same as f64 / (n * k) as f64;
    assert!(fraction > 0.98, "only {:.1} % of the 5 nearest neighbours share the cluster", 100.0 * fraction);
    assert!(features::tsne(&points, dim, settings).unwrap() == y, "same seed, other embedding");
    // too few points for the perplexity is an error, not a panic
    let e = features::tsne(&points[..20 * dim], dim, settings).unwrap_err().to_string();
    assert!(e.contains("perplexity"), "{e}");
}

#[test]
fn tsne_pictures_are_drawn_in_png_and_svg() {
    let tmp = tempfile::tempdir().unwrap();
    let labels: Vec<u8> = (0..200).map(|i| (i % 10) as u8).collect();
    let panel = |title: &str, s: f32| Embedding {
        title: title.into(),
        points: (0..200).flat_map(|i| [(i % 10) as f32 * s + (i as f32 * 0.01), (i / 10) as f32]).collect(),
    };
    let rows = vec![
        ("BP".to_string(), vec![panel("input", 1.0), panel("hidden layer 1", 2.0)]),
        ("DFA".to_string(), vec![panel("input", 1.0), panel("hidden layer 1", -1.0)]),
    ];
    for ext in ["png", "svg"] {
        let out = tmp.path().join(format!("t.{ext}"));
        tsne_grid(&rows, &labels, &out).unwrap();
        let size = std::fs::metadata(&out).unwrap().len();
        assert!(size > 10_000, "{ext}: {size} bytes");
    }
    let svg = std::fs::read_to_string(tmp.path().join("t.svg")).unwrap();
    for text in ["BP", "DFA", "hidden layer 1", "class"] {
        assert!(svg.contains(text), "the SVG lacks '{text}'");
    }
    let e = tsne_grid(&rows, &labels, &tmp.path().join("t.gif")).unwrap_err().to_string();
    assert!(e.contains(".png or .svg"), "{e}");
}
