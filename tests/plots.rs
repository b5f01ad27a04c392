//! Pictures are produced, non-empty, and labelled.

use dfa::report::plots::{Curves, RunCurves, ScatterPoint, alignment_scatter, plot};
use dfa::train::EpochMetrics;
use dfa::train::alignment::{AlignmentRecord, LayerAlignment};

fn run(label: &str, scale: f64, aligned: bool) -> RunCurves {
    run_of(8, label, scale, aligned)
}

fn run_of(epochs: usize, label: &str, scale: f64, aligned: bool) -> RunCurves {
    let metrics = (1..=epochs)
        .map(|epoch| EpochMetrics {
            epoch,
            loss: 1.0 / epoch as f64,
            train_error: scale * 10.0 / epoch as f64,
            test_error: scale * 12.0 / epoch as f64,
            alignment: if aligned {
                (0..3)
                    .map(|b| AlignmentRecord {
                        batch: b * 10,
                        batches: 30,
                        layers: (1..=2)
                            .map(|layer| LayerAlignment {
                                layer,
                                delta_angle_mean: Some(80.0 - epoch as f64 * 5.0 - layer as f64),
                                delta_angle_batch: Some(70.0),
                                update_angle: Some(60.0),
                                criterion_positive: 1.0,
                                feedback_angle: None,
                            })
                            .collect(),
                    })
                    .collect()
            } else {
                Vec::new()
            },
            validation_error: None,
            batch_error: 0.0,
            learning_rate: 1e-4,
            seconds: 1.0,
            eval_seconds: 0.1,
            samples_per_s: 1000.0,
        })
        .collect();
    RunCurves { label: label.into(), metrics }
}

#[test]
fn png_and_svg_pictures_are_drawn_with_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = [run("dfa run", 1.0, true), run("bp run", 0.5, false)];
    let png = tmp.path().join("curves.png");
    plot(&runs, &png, Curves::Both, true).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(bytes.len() > 20_000, "{} bytes", bytes.len());
    // 1400 × 560 with the alignment panel (width and height are big-endian at bytes 16..24)
    assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 1400);
    let svg = tmp.path().join("curves.svg");
    plot(&runs[1..], &svg, Curves::Train, false).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.starts_with("<svg") && text.contains("bp run train") && !text.contains("bp run test"),
        "{}",
        &text[..200]
    );
    assert!(text.contains("width=\"800\""));
    // all three curves: the batch error too
    let svg_all = tmp.path().join("all.svg");
    plot(&runs[1..], &svg_all, Curves::All, false).unwrap();
    let text = std::fs::read_to_string(&svg_all).unwrap();
    assert!(["bp run train", "bp run batch", "bp run test"].iter().all(|l| text.contains(l)));
    assert!(!std::fs::read_to_string(&svg).unwrap().contains("bp run batch"));
    let e = plot(&runs, &tmp.path().join("x.jpg"), Curves::Both, false).unwrap_err().to_string();
    assert!(e.contains(".png or .svg"), "{e}");
}

#[test]
fn a_short_run_gets_one_epoch_label_per_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let svg = tmp.path().join("short.svg");
    plot(&[run_of(3, "short", 1.0, false)], &svg, Curves::Both, false).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    // the text elements of the picture that are whole numbers between 1 and 3: the epoch labels
    let labels: Vec<&str> = text
        .split("</text>")
        .filter_map(|t| t.rsplit('>').next())
        .map(str::trim)
        .filter(|t| matches!(*t, "1" | "2" | "3"))
        .collect();
    assert_eq!(labels, ["1", "2", "3"], "epoch labels of a 3-epoch run");
}

/// A run without the full pass (training error NaN) draws its batch and test curves, and the
/// legend and caption do not promise a training curve.
#[test]
fn a_run_without_the_full_pass_has_no_training_curve_in_the_legend() {
    let tmp = tempfile::tempdir().unwrap();
    let mut conv = run_of(4, "conv", 1.0, false);
    conv.metrics.iter_mut().for_each(|m| m.train_error = f64::NAN);
    let svg = tmp.path().join("batch.svg");
    plot(&[conv], &svg, Curves::All, false).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("conv batch") && text.contains("conv test"), "{text}");
    assert!(!text.contains("conv train") && !text.contains("full pass"), "{text}");
    assert!(text.contains("Training (batches) and test error"));
}

/// The rule benchmark's figure: one panel per net, a labelled point per rule.
#[test]
fn the_alignment_scatter_has_a_panel_per_net_and_a_label_per_point() {
    let tmp = tempfile::tempdir().unwrap();
    let point = |panel: &str, label: &str, angle: f64, error: f64| ScatterPoint {
        panel: panel.into(),
        label: label.into(),
        angle,
        error,
    };
    let points = [
        point("MNIST 2x800", "BP", 0.0, 1.6),
        point("MNIST 2x800", "DFA", 60.0, 1.7),
        point("CIFAR-10 3x1000", "DRTP", 85.0, 52.0),
    ];
    let svg = tmp.path().join("angles.svg");
    alignment_scatter(&points, &svg).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    for want in ["MNIST 2x800", "CIFAR-10 3x1000", "BP", "DFA", "DRTP", "width=\"1040\""] {
        assert!(text.contains(want), "{want} missing");
    }
    let png = tmp.path().join("angles.png");
    alignment_scatter(&points, &png).unwrap();
    assert_eq!(&std::fs::read(&png).unwrap()[..4], b"\x89PNG");
}
