//! Your own data on the command line: `dfa train --data my.npz` (or a folder of `.npy` files).
//! The arrays are written here by a plain `.npy` encoder (NumPy's format 1.0, written out from
//! its specification), from a real MNIST subset, so that a run on them can be compared bit for
//! bit with the same run on `--dataset mnist`.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn dfa() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dfa"));
    c.env("DFA_DATA", common::data_dir()).env_remove("DFA_FAILPOINT");
    c
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A `.npy` file (version 1.0): magic, header length, the header dict padded with spaces to a
/// multiple of 64 bytes and ended by a newline, then the data in C order, little-endian.
fn npy(descr: &str, shape: &[usize], data: &[u8], fortran: bool) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
    let shape = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
        if fortran { "True" } else { "False" }
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((header.len() as u16).to_le_bytes());
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn i64_bytes(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// An `.npz` file: a zip archive with one `NAME.npy` member per array (deflated, as
/// `np.savez_compressed` writes it).
fn npz(path: &Path, members: &[(&str, Vec<u8>)]) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in members {
        zip.start_file(format!("{name}.npy"), options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

/// The first `n` MNIST images (bytes) and labels of a split, read from the IDX files.
fn mnist(train: bool, n: usize) -> (Vec<u8>, Vec<u8>) {
    let dir = common::mnist_dir();
    let read = |name: &str| {
        let gz = dir.join(format!("{name}.gz"));
        let raw = std::fs::read(&gz).or_else(|_| std::fs::read(dir.join(name))).unwrap();
        dfa::data::idx::maybe_gunzip(raw, &gz, 100 << 20).unwrap()
    };
    let (images, labels) = if train {
        (read("train-images-idx3-ubyte"), read("train-labels-idx1-ubyte"))
    } else {
        (read("t10k-images-idx3-ubyte"), read("t10k-labels-idx1-ubyte"))
    };
    (images[16..16 + n * 784].to_vec(), labels[8..8 + n].to_vec())
}

const TRAIN: usize = 1000;
const TEST: usize = 300;

/// The MNIST subset as `.npy` members: uint8 images `N×784` (or `N×1×28×28`), int64 labels.
fn members(shape4: bool) -> Vec<(&'static str, Vec<u8>)> {
    let (xt, yt) = mnist(true, TRAIN);
    let (xs, ys) = mnist(false, TEST);
    let shape = |n: usize| if shape4 { vec![n, 1, 28, 28] } else { vec![n, 784] };
    let labels = |y: &[u8]| i64_bytes(&y.iter().map(|&l| l as i64).collect::<Vec<_>>());
    vec![
        ("x_train", npy("|u1", &shape(TRAIN), &xt, false)),
        ("y_train", npy("<i8", &[TRAIN], &labels(&yt), false)),
        ("x_test", npy("|u1", &shape(TEST), &xs, false)),
        ("y_test", npy("<i8", &[TEST], &labels(&ys), false)),
    ]
}

const NET: &[&str] = &[
    "--model",
    "64",
    "--rule",
    "dfa",
    "--lr",
    "0.001",
    "--max-epochs",
    "3",
    "--threads",
    "1",
    "--seed",
    "3",
    "--no-early-stop",
];

fn train(args: &[&str], out: &Path, name: &str) -> PathBuf {
    let o = dfa()
        .arg("train")
        .args(NET)
        .args(args)
        .args(["--out", out.to_str().unwrap(), "--name", name])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    out.join(name)
}

fn tensors(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(dir.join("checkpoint.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut t: Vec<_> = st.tensors().into_iter().map(|(n, t)| (n, t.data().to_vec())).collect();
    t.sort();
    t
}

fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            for timing in ["seconds", "samples_per_s", "eval_seconds"] {
                v.as_object_mut().unwrap().remove(timing);
            }
            v
        })
        .collect()
}

#[test]
fn an_npz_of_mnist_trains_to_the_bits_of_mnist_itself() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("digits.npz");
    npz(&file, &members(false));
    let out = tmp.path().join("runs");
    let own = train(&["--data", file.to_str().unwrap()], &out, "own");
    let subset = ["--dataset", "mnist", "--train-subset", "1000", "--test-subset", "300"];
    let named = train(&subset, &out, "named");
    assert_eq!(tensors(&own), tensors(&named), "weights, feedback and optimiser state");
    assert_eq!(metrics(&own), metrics(&named));
    let m = metrics(&own);
    assert!(m[2]["test_error"].as_f64().unwrap() < 40.0, "it learns (chance: 90 %): {:?}", m[2]);

    // the run records its data: the file, absolute, with its SHA-256 (computed here by sha256sum)
    let config = std::fs::read_to_string(own.join("config.toml")).unwrap();
    assert!(
        config.contains("dataset = \"file\"") && config.contains(&format!("data = \"{}\"", file.display())),
        "{config}"
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(own.join("meta.json")).unwrap()).unwrap();
    let sum = Command::new("sha256sum").arg(&file).output().unwrap();
    let sum = String::from_utf8_lossy(&sum.stdout).split_whitespace().next().unwrap().to_string();
    assert_eq!(meta["data_files"][0]["sha256"], sum.as_str(), "{meta}");
    assert_eq!(meta["n_train"], TRAIN);
    assert_eq!(meta["n_test"], TEST);

    // a folder of .npy files is the same data; the default name comes from the file
    let folder = tmp.path().join("npy");
    std::fs::create_dir(&folder).unwrap();
    for (name, bytes) in members(false) {
        std::fs::write(folder.join(format!("{name}.npy")), bytes).unwrap();
    }
    let o = dfa()
        .arg("train")
        .args(NET)
        .args(["--data", folder.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let from_folder = out.join("npy-64-tanh-dfa-seed3");
    assert_eq!(tensors(&from_folder), tensors(&named));

    // a resume reads the file again and checks its SHA-256; a changed file is refused
    std::fs::remove_file(own.join("summary.json")).unwrap();
    let mut changed = members(false);
    changed[1].1 = npy("<i8", &[TRAIN], &i64_bytes(&vec![1; TRAIN]), false);
    npz(&file, &changed);
    let o = dfa().args(["train", "--resume", own.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("digits.npz") && text(&o).contains("SHA-256"), "{}", text(&o));
}

#[test]
fn float_inputs_images_and_no_test_set() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("runs");
    // float32 inputs equal to the bytes / 255 give the bits of the uint8 file
    let (xt, yt) = mnist(true, TRAIN);
    let scaled: Vec<f32> = xt.iter().map(|&p| p as f32 / 255.0).collect();
    let labels = i64_bytes(&yt.iter().map(|&l| l as i64).collect::<Vec<_>>());
    let mut m = members(false);
    m[0].1 = npy("<f4", &[TRAIN, 784], &f32_bytes(&scaled), false);
    let floats = tmp.path().join("floats.npz");
    npz(&floats, &m);
    let bytes = tmp.path().join("bytes.npz");
    npz(&bytes, &members(false));
    let a = train(&["--data", floats.to_str().unwrap()], &out, "floats");
    let b = train(&["--data", bytes.to_str().unwrap()], &out, "bytes");
    assert_eq!(tensors(&a), tensors(&b));

    // N×1×28×28 images feed a conv net (the shape comes from the array)
    let images = tmp.path().join("images.npz");
    npz(&images, &members(true));
    let conv = dfa()
        .args(["train", "--data", images.to_str().unwrap(), "--model", "c4k5,p2s2,32", "--rule", "dfa"])
        .args(["--train-subset", "200", "--test-subset", "100", "--max-epochs", "1", "--threads", "1"])
        .args(["--out", out.to_str().unwrap(), "--name", "conv"])
        .output()
        .unwrap();
    assert!(conv.status.success(), "{}", text(&conv));

    // without x_test/y_test: no test error (null in the records), and it says so
    let train_only = tmp.path().join("train-only.npz");
    npz(
        &train_only,
        &[
            ("x_train", npy("<f4", &[TRAIN, 784], &f32_bytes(&scaled), false)),
            ("y_train", npy("<i8", &[TRAIN], &labels, false)),
        ],
    );
    let o = dfa()
        .arg("train")
        .args(NET)
        .args(["--data", train_only.to_str().unwrap(), "--out", out.to_str().unwrap(), "--name", "no-test"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("no test set"), "{}", text(&o));
    let m = metrics(&out.join("no-test"));
    assert!(m.iter().all(|l| l["test_error"].is_null() && l["train_error"].as_f64().unwrap() < 60.0), "{m:?}");
    let summary = std::fs::read_to_string(out.join("no-test/summary.json")).unwrap();
    assert!(summary.contains("\"final_test_error\": null"), "{summary}");
    // the finished run reads back (summary and metrics with their nulls)
    let o = dfa().args(["train", "--resume", out.join("no-test").to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn bad_arrays_get_one_line_that_names_the_array() {
    let tmp = tempfile::tempdir().unwrap();
    let good = members(false);
    let x = |shape: &[usize], v: &[f32]| npy("<f4", shape, &f32_bytes(v), false);
    let y = |v: &[i64]| npy("<i8", &[v.len()], &i64_bytes(v), false);
    type Members = Vec<(&'static str, Vec<u8>)>;
    let cases: Vec<(&str, Members, &[&str])> = vec![
        ("no labels", vec![good[0].clone()], &["y_train", "x_train and y_train"]),
        (
            "negative label",
            vec![("x_train", x(&[2, 3], &[0.0; 6])), ("y_train", y(&[0, -1]))],
            &["y_train", "label -1 at position 1"],
        ),
        (
            "label 300",
            vec![("x_train", x(&[2, 3], &[0.0; 6])), ("y_train", y(&[0, 300]))],
            &["y_train", "outside 0..256"],
        ),
        (
            "NaN",
            vec![("x_train", x(&[2, 3], &[0.0, 0.0, 0.0, 0.0, f32::NAN, 0.0])), ("y_train", y(&[0, 1]))],
            &["x_train", "NaN at sample 1, feature 1", "finite"],
        ),
        (
            "lengths",
            vec![("x_train", x(&[2, 3], &[0.0; 6])), ("y_train", y(&[0, 1, 1]))],
            &["y_train", "3 labels", "2 samples"],
        ),
        (
            "one-hot",
            vec![
                ("x_train", x(&[2, 3], &[0.0; 6])),
                ("y_train", npy("<i8", &[2, 2], &i64_bytes(&[1, 0, 0, 1]), false)),
            ],
            &["y_train", "one-hot"],
        ),
        (
            "float labels",
            vec![("x_train", x(&[2, 3], &[0.0; 6])), ("y_train", x(&[2], &[0.0, 1.0]))],
            &["y_train", "floating point"],
        ),
        ("one class", vec![("x_train", x(&[2, 3], &[0.0; 6])), ("y_train", y(&[0, 0]))], &["y_train", "two classes"]),
        ("5-D", vec![("x_train", x(&[1, 1, 1, 1, 2], &[0.0; 2])), ("y_train", y(&[1]))], &["x_train", "(N, C, H, W)"]),
        ("test without labels", vec![good[0].clone(), good[1].clone(), good[2].clone()], &["x_test but no y_test"]),
        (
            "test shape",
            vec![good[0].clone(), good[1].clone(), ("x_test", x(&[1, 3], &[0.0; 3])), ("y_test", y(&[1]))],
            &["x_test", "same shape"],
        ),
        (
            "int16 inputs",
            vec![("x_train", npy("<i2", &[2, 1], &[0, 0, 1, 0], false)), ("y_train", y(&[0, 1]))],
            &["x_train", "float32, float64 or uint8"],
        ),
        (
            "Fortran order",
            vec![("x_train", npy("<f4", &[2, 3], &f32_bytes(&[0.0; 6]), true)), ("y_train", y(&[0, 1]))],
            &["x_train", "Fortran order"],
        ),
        (
            "short data",
            vec![("x_train", npy("<f4", &[200, 3], &f32_bytes(&[0.0; 6]), false)), ("y_train", y(&[0, 1]))],
            &["x_train", "[200, 3]"],
        ),
    ];
    for (what, members, expected) in cases {
        let file = tmp.path().join(format!("{}.npz", what.replace(' ', "-")));
        npz(&file, &members);
        let o = dfa()
            .args(["train", "--data", file.to_str().unwrap(), "--model", "8", "--max-epochs", "1"])
            .arg("--out")
            .arg(tmp.path().join("runs"))
            .output()
            .unwrap();
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{what}: {t}");
        assert_eq!(t.trim().lines().count(), 1, "{what}: one line: {t}");
        assert!(t.contains(file.file_name().unwrap().to_str().unwrap()), "{what}: names the file: {t}");
        for e in expected {
            assert!(t.contains(e), "{what}: expected '{e}' in: {t}");
        }
    }
    // not a zip, a missing file, and a conv net on flat vectors
    let junk = tmp.path().join("junk.npz");
    std::fs::write(&junk, b"not a zip").unwrap();
    let flat = tmp.path().join("flat.npz");
    npz(&flat, &members(false));
    for (args, expected) in [
        (vec!["--data", junk.to_str().unwrap()], "not an .npz file"),
        (vec!["--data", "/nonexistent/my.npz"], "/nonexistent/my.npz"),
        (vec!["--data", flat.to_str().unwrap(), "--model", "conv-small"], "flat vectors of 784 values"),
        (vec!["--dataset", "file"], "--data my.npz"),
    ] {
        let o = dfa().arg("train").args(&args).arg("--out").arg(tmp.path().join("runs")).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(expected), "{args:?}: expected '{expected}' in {}", text(&o));
    }
    assert!(
        !tmp.path().join("runs").exists() || std::fs::read_dir(tmp.path().join("runs")).unwrap().count() == 0,
        "no folder is left for a refused run"
    );
}
