//! Run folders written by an earlier version still resume and evaluate, to the same bits.
//!
//! `tests/fixtures/runs-31497db/` was written by commit 31497db (before the module restructuring):
//! `dfa train --dataset mnist --model 2x16 --rule dfa --lr 1e-3 --train-subset 20000
//! --test-subset 1000 --threads 1 --seed 7 --max-epochs 3`, once to the end (`finished`) and once
//! killed (SIGKILL) after its first epoch (`interrupted`).

mod common;

use std::path::Path;
use std::process::Command;

fn dfa(args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_dfa")).args(args).output().expect("dfa runs");
    let text = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "dfa {args:?}: {text}");
    text
}

/// A copy of a fixture run folder whose `data_dir` points at this machine's data.
fn copy_fixture(name: &str, to: &Path) -> std::path::PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runs-31497db").join(name);
    let dest = to.join(name);
    std::fs::create_dir_all(&dest).unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dest.join(entry.file_name())).unwrap();
    }
    let config = dest.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let data = common::data_dir();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("data_dir") {
                format!("data_dir = {:?}\n", data.display().to_string())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&config, text).unwrap();
    dest
}

/// Every tensor of a checkpoint, by name: shape and bytes.
fn tensors(path: &Path) -> Vec<(String, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<_> =
        st.tensors().into_iter().map(|(name, t)| (name, t.shape().to_vec(), t.data().to_vec())).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn a_run_interrupted_under_an_earlier_version_resumes_to_the_bits_of_its_uninterrupted_twin() {
    let tmp = tempfile::tempdir().unwrap();
    let run = copy_fixture("interrupted", tmp.path());
    let finished = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/runs-31497db/finished");
    assert!(!run.join("summary.json").exists(), "the fixture is an interrupted run");
    dfa(&["train", "--resume", run.to_str().unwrap()]);
    let (got, want) = (tensors(&run.join("checkpoint.safetensors")), tensors(&finished.join("checkpoint.safetensors")));
    assert_eq!(got.len(), want.len());
    assert!(got.len() >= 8, "weights, biases, feedback and optimiser state");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!((&g.0, &g.1), (&w.0, &w.1));
        assert!(g.2 == w.2, "tensor {} differs from the uninterrupted run's", g.0);
    }
    // the metrics of every epoch, timings aside, are the uninterrupted run's
    let strip = |p: &Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| {
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                for k in ["seconds", "eval_seconds", "samples_per_s"] {
                    v.as_object_mut().unwrap().remove(k);
                }
                v
            })
            .collect()
    };
    assert_eq!(strip(&run.join("metrics.jsonl")), strip(&finished.join("metrics.jsonl")));
}

#[test]
fn a_run_finished_under_an_earlier_version_evaluates_to_its_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let run = copy_fixture("finished", tmp.path());
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let text = dfa(&["eval", run.to_str().unwrap()]);
    let train = summary["final_train_error"].as_f64().unwrap();
    let test = summary["final_test_error"].as_f64().unwrap();
    assert!(text.contains(&format!("train error {train:.3}%")), "{text}");
    assert!(text.contains(&format!("test error {test:.3}%")), "{text}");
    // a finished run asked to resume says so and changes nothing
    let before = std::fs::read(run.join("checkpoint.safetensors")).unwrap();
    dfa(&["train", "--resume", run.to_str().unwrap()]);
    assert_eq!(before, std::fs::read(run.join("checkpoint.safetensors")).unwrap());
}
