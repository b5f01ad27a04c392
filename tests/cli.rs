//! The command line end to end: a short real run, its records, eval, config reuse, resume, and
//! clear errors with exit codes for bad flags and bad data (never a panic).

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn dfa(args: &[&str], data: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dfa")).args(args).env("DFA_DATA", data).output().expect("dfa runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn assert_clean_failure(o: &Output, code: i32, must_contain: &[&str]) {
    let t = text(o);
    assert_eq!(o.status.code(), Some(code), "{t}");
    assert!(!t.contains("panicked"), "{t}");
    for m in must_contain {
        assert!(t.contains(m), "expected '{m}' in: {t}");
    }
}

#[test]
fn train_eval_config_and_resume_from_the_command_line() {
    let data = common::data_dir();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    let o = dfa(
        &[
            "train",
            "--model",
            "64,32",
            "--rule",
            "dfa",
            "--train-subset",
            "2000",
            "--test-subset",
            "500",
            "--max-epochs",
            "2",
            "--threads",
            "2",
            "--out",
            out,
            "--name",
            "run",
        ],
        &data,
    );
    assert!(o.status.success(), "{}", text(&o));
    let run = tmp.path().join("run");
    for f in ["config.toml", "meta.json", "metrics.jsonl", "checkpoint.safetensors", "summary.json"] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["epochs"], 2);
    assert_eq!(summary["stop"], "max-epochs");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["data_files"].as_array().unwrap().len(), 4);
    assert_eq!(meta["data_files"][0]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines().count(), 2);

    // eval reproduces the recorded test error from the checkpoint
    let o = dfa(&["eval", run.to_str().unwrap()], &data);
    let test_error = summary["final_test_error"].as_f64().unwrap();
    assert!(text(&o).contains(&format!("test error {test_error:.3}%")), "{} vs {test_error}", text(&o));

    // the recorded config trains the same run again, to the same numbers
    let o =
        dfa(&["train", "--config", run.join("config.toml").to_str().unwrap(), "--out", out, "--name", "again"], &data);
    assert!(o.status.success(), "{}", text(&o));
    let again = std::fs::read_to_string(tmp.path().join("again/metrics.jsonl")).unwrap();
    let first = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let errors = |s: &str| {
        s.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["loss"].as_f64(), v["train_error"].as_f64(), v["test_error"].as_f64())
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(errors(&first), errors(&again));

    // resuming a finished run says so
    let o = dfa(&["train", "--resume", run.to_str().unwrap()], &data);
    assert!(o.status.success() && text(&o).contains("already finished"), "{}", text(&o));
}

/// `--schedule-from` retrains with the rates a finished run followed (the DO protocol: decay and
/// training time chosen on a validation split, then all the data): its config gets the run's
/// first rate, `halve_at` and epochs, and with the same flags otherwise the numbers come out the
/// same. The first run halves after every epoch (its running mean starts at 0 %).
#[test]
fn a_run_follows_the_schedule_of_another() {
    let data = common::data_dir();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    let common = ["--model", "32", "--train-subset", "1000", "--test-subset", "300", "--threads", "1", "--out", out];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = ["train"].iter().chain(&common).chain(extra).copied().collect();
        let o = dfa(&args, &data);
        assert!(o.status.success(), "{}", text(&o));
    };
    run(&["--lr", "3e-4", "--schedule-start", "0", "--max-epochs", "3", "--name", "chosen"]);
    let chosen = tmp.path().join("chosen");
    run(&["--schedule-from", chosen.to_str().unwrap(), "--name", "follows"]);
    let config = std::fs::read_to_string(tmp.path().join("follows/config.toml")).unwrap();
    for line in ["halve_at = [1, 2]", "max_epochs = 3", "learning_rate = 0.0003"] {
        assert!(config.contains(line), "expected {line:?} in {config}");
    }
    let losses = |name: &str| -> Vec<(f64, f64)> {
        std::fs::read_to_string(tmp.path().join(name).join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| (v["loss"].as_f64().unwrap(), v["learning_rate"].as_f64().unwrap()))
            .collect()
    };
    assert_eq!(losses("chosen"), losses("follows"));
    // --halve-at overrides the followed epochs; --max-epochs the followed length
    run(&["--schedule-from", chosen.to_str().unwrap(), "--halve-at", "2", "--max-epochs", "2", "--name", "own"]);
    let own = losses("own");
    assert_eq!(own.len(), 2);
    assert_eq!((own[0].1, own[1].1), (3e-4, 3e-4));
    assert_clean_failure(
        &dfa(&["train", "--schedule-from", "/nonexistent/run"], &data),
        1,
        &["--schedule-from", "not a run folder"],
    );
    assert_clean_failure(&dfa(&["train", "--halve-at", "5,2"], &data), 1, &["halve_at", "increasing"]);
    assert_clean_failure(&dfa(&["train", "--halve-at", "x"], &data), 2, &["--halve-at"]);

    // a run that never lowered its rate is followed at that rate throughout, not by the adaptive rule
    run(&["--lr", "3e-4", "--no-lr-schedule", "--max-epochs", "2", "--name", "flat"]);
    let flat = tmp.path().join("flat");
    run(&["--schedule-from", flat.to_str().unwrap(), "--schedule-start", "0", "--name", "follows-flat"]);
    let config = std::fs::read_to_string(tmp.path().join("follows-flat/config.toml")).unwrap();
    assert!(config.contains("lr_schedule = false") && !config.contains("halve_at"), "{config}");
    assert_eq!(losses("follows-flat").iter().map(|l| l.1).collect::<Vec<_>>(), [3e-4, 3e-4]);
    // a diverged run has no schedule to follow
    let summary = chosen.join("summary.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    json["stop"] = "diverged".into();
    std::fs::write(&summary, json.to_string()).unwrap();
    assert_clean_failure(
        &dfa(&["train", "--schedule-from", chosen.to_str().unwrap()], &data),
        1,
        &["--schedule-from", "diverged"],
    );
}

#[test]
fn bad_flags_are_clear_errors() {
    let data = common::data_dir();
    assert_clean_failure(&dfa(&["train", "--rule", "xfa"], &data), 2, &["--rule", "possible values", "dfa"]);
    assert_clean_failure(&dfa(&["train", "--act", "gelu"], &data), 2, &["--act"]);
    assert_clean_failure(
        &dfa(&["train", "--conv-algo", "fft"], &data),
        2,
        &["--conv-algo", "possible values", "winograd4"],
    );
    assert_clean_failure(&dfa(&["train", "--no-full-pass"], &data), 1, &["schedule_on", "full_pass"]);
    assert_clean_failure(&dfa(&["train", "--model", "2y800"], &data), 1, &["model", "DEPTHxWIDTH"]);
    assert_clean_failure(&dfa(&["train", "--lr=-1"], &data), 1, &["learning_rate"]);
    assert_clean_failure(&dfa(&["train", "--batch-size", "0"], &data), 1, &["batch_size"]);
    assert_clean_failure(&dfa(&["train", "--rule", "fa", "--shared-feedback"], &data), 1, &["shared_feedback"]);
    assert_clean_failure(&dfa(&["train", "--config", "/nonexistent/cfg.toml"], &data), 1, &["/nonexistent/cfg.toml"]);
    assert_clean_failure(&dfa(&["eval", "/nonexistent/run"], &data), 1, &["not a run folder"]);
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(&cfg, "rule = \"dfa\"\nlerning_rate = 0.1\n").unwrap();
    assert_clean_failure(&dfa(&["train", "--config", cfg.to_str().unwrap()], &data), 1, &["bad.toml", "lerning_rate"]);
}

#[test]
fn bad_data_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    // missing data
    assert_clean_failure(&dfa(&["train"], tmp.path()), 1, &["train-images-idx3-ubyte.gz", "dfa data download mnist"]);
    // a corrupted file
    let folder = tmp.path().join("mnist");
    std::fs::create_dir(&folder).unwrap();
    for name in dfa::data::IDX_FILES {
        std::fs::copy(common::mnist_dir().join(format!("{name}.gz")), folder.join(format!("{name}.gz"))).unwrap();
    }
    let bad = folder.join("train-labels-idx1-ubyte.gz");
    let bytes = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() - 100]).unwrap();
    assert_clean_failure(&dfa(&["train", "--max-epochs", "1"], tmp.path()), 1, &[bad.to_str().unwrap(), "gzip"]);
}

#[test]
fn bench_measures_and_reports() {
    let data = common::data_dir();
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("bench.json");
    let o = dfa(
        &[
            "bench",
            "--cases",
            "7x240",
            "--rules",
            "dfa,bp",
            "--threads",
            "1",
            "--samples",
            "640",
            "--json",
            json.to_str().unwrap(),
        ],
        &data,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("64x240x240") && text(&o).contains("of peak"), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let train = report["train"].as_array().unwrap();
    assert_eq!(train.len(), 2);
    assert!(train.iter().all(|r| r["samples_per_s"].as_f64().unwrap() > 0.0));
    assert_clean_failure(&dfa(&["bench", "--cases", "9x9"], &data), 1, &["--cases", "9x9", "2x800"]);
}

#[test]
fn every_command_has_help() {
    let data = common::data_dir();
    for args in [
        &["--help"][..],
        &["train", "--help"],
        &["eval", "--help"],
        &["data", "download", "--help"],
        &["bench", "--help"],
        &["reproduce", "--help"],
        &["plot", "--help"],
        &["features", "--help"],
        &["tsne", "--help"],
    ] {
        let o = dfa(args, &data);
        assert!(o.status.success() && text(&o).contains("Usage"), "{args:?}");
    }
}

#[test]
fn features_and_tsne_of_a_trained_run() {
    let data = common::data_dir();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    let o = dfa(
        &["train", "--model", "2x16", "--train-subset", "600", "--test-subset", "300", "--max-epochs", "1"]
            .iter()
            .chain(&["--out", out, "--name", "run", "--threads", "1"])
            .copied()
            .collect::<Vec<_>>(),
        &data,
    );
    assert!(o.status.success(), "{}", text(&o));
    let run = tmp.path().join("run");
    let csv = tmp.path().join("h2.csv");
    let o = dfa(
        &["features", run.to_str().unwrap(), "--layer", "2", "--limit", "50", "--out", csv.to_str().unwrap()],
        &data,
    );
    assert!(o.status.success(), "{}", text(&o));
    let lines: Vec<String> = std::fs::read_to_string(&csv).unwrap().lines().map(String::from).collect();
    assert_eq!(lines.len(), 51);
    assert_eq!(lines[0].split(',').count(), 17, "label + 16 features");
    let npy = tmp.path().join("x.npy");
    let o = dfa(
        &[
            "features",
            run.to_str().unwrap(),
            "--layer",
            "0",
            "--split",
            "train",
            "--limit",
            "10",
            "--out",
            npy.to_str().unwrap(),
        ],
        &data,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::metadata(&npy).unwrap().len(), 128 + 10 * 784 * 4);
    assert!(tmp.path().join("x-labels.npy").is_file());
    let o = dfa(&["features", run.to_str().unwrap(), "--layer", "7", "--out", csv.to_str().unwrap()], &data);
    assert_clean_failure(&o, 1, &["--layer", "expected 0 (input) to 3"]);
    let o = dfa(&["features", run.to_str().unwrap(), "--layer", "1", "--out", "f.txt"], &data);
    assert_clean_failure(&o, 1, &["--out", ".csv or .npy"]);

    let png = tmp.path().join("t.png");
    let o = dfa(
        &["tsne", run.to_str().unwrap(), "--points", "120", "--iterations", "250", "--out", png.to_str().unwrap()],
        &data,
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("hidden layer 2"), "{}", text(&o));
    assert!(std::fs::metadata(&png).unwrap().len() > 10_000);
    let o = dfa(&["tsne", run.to_str().unwrap(), "--points", "20", "--out", png.to_str().unwrap()], &data);
    assert_clean_failure(&o, 1, &["perplexity"]);
}

/// `dfa --version` names the commit the binary was built from, the one its run records carry
/// (`git_commit` in meta.json and summary.json), `-dirty` when the tree had uncommitted edits.
#[test]
fn version_names_the_commit_of_the_run_records() {
    let o = dfa(&["--version"], &common::data_dir());
    assert!(o.status.success(), "{}", text(&o));
    let commit = dfa::train::record::GIT_COMMIT;
    assert_eq!(text(&o).trim(), format!("dfa {} ({commit})", env!("CARGO_PKG_VERSION")));
}
