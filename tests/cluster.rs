//! Grids over several processes: `--shard i/n` partitions an experiment's runs, their union gives
//! the unsharded table bit for bit; `--slurm` writes a job array and a collect job, and on a real
//! Slurm (`scripts/slurm-local.sh start`, as `.ci/run` does) the array runs, a task requeued in
//! the middle of its run resumes, and the collected table equals the unsharded one.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A small experiment: two rows, three rules, seeds per cell, one cell continuing another, and a
/// cell `long-dfa` long enough to be caught in the middle of its run (the largest, so it is the
/// first group handed out: shard 1 of any count).
fn experiment(dir: &Path) -> PathBuf {
    let text = r#"
name = "grid"
title = "Grid"
seeds = 2
bracket_above = 0.01
nonconvergence_train_error = 50.0
columns = ["BP", "FA", "DFA"]

[defaults]
dataset = "mnist"
learning_rate = 1e-3
max_epochs = 2
train_subset = 1000
test_subset = 500

[[cells]]
id = "a-bp"
row = "a"
column = "BP"
config = { model = "2x50", rule = "bp" }

[[cells]]
id = "a-fa"
row = "a"
column = "FA"
config = { model = "2x50", rule = "fa" }

[[cells]]
id = "b-fa"
row = "b"
column = "FA"
after = "a-fa"
config = { model = "2x50", rule = "fa", max_epochs = 1 }

[[cells]]
id = "long-dfa"
row = "b"
column = "DFA"
seeds = 1
config = { model = "2x800", rule = "dfa", train_subset = 10000, max_epochs = 14 }
"#;
    let path = dir.join("grid.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn dfa(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_dfa")).args(args).output().expect("dfa runs");
    assert!(out.status.success(), "dfa {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn reproduce(exp: &Path, out: &Path, extra: &[&str]) -> String {
    let data = common::data_dir();
    let mut args = vec!["reproduce", exp.to_str().unwrap(), "--out", out.to_str().unwrap(), "--threads", "1"];
    args.extend(["--data-dir", data.to_str().unwrap()]);
    let results = out.join("results");
    args.extend(["--results", results.to_str().unwrap()]);
    args.extend(extra);
    String::from_utf8(dfa(&args).stdout).unwrap()
}

/// Every finished run folder under `runs`: its path, its checkpoint's tensor bytes (the part
/// after the safetensors header) and its metrics without the timings, as one digest each.
fn run_files(runs: &Path) -> Vec<(String, u64, String)> {
    use std::hash::{Hash, Hasher};
    let mut found = Vec::new();
    for cell in std::fs::read_dir(runs).unwrap().flatten().filter(|e| e.path().is_dir()) {
        for seed in std::fs::read_dir(cell.path()).unwrap().flatten() {
            let p = seed.path();
            if !p.join("summary.json").is_file() {
                continue;
            }
            let bytes = std::fs::read(p.join("checkpoint.safetensors")).unwrap();
            let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes[8 + header..].hash(&mut h);
            let metrics: Vec<String> = std::fs::read_to_string(p.join("metrics.jsonl"))
                .unwrap()
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    format!(
                        "{} {} {} {} {}",
                        v["epoch"], v["loss"], v["train_error"], v["test_error"], v["batch_error"]
                    )
                })
                .collect();
            found.push((p.strip_prefix(runs).unwrap().display().to_string(), h.finish(), metrics.join("; ")));
        }
    }
    found.sort();
    found
}

fn table(out: &Path) -> String {
    std::fs::read_to_string(out.join("results/grid.csv")).unwrap()
}

/// Three shards, run one after the other, then `--collect`: each run is trained by exactly one
/// shard, and the table and every run's checkpoint and metrics equal the unsharded invocation's.
/// A cell filter shards only the selected runs.
#[test]
fn the_shards_together_are_the_unsharded_grid() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = experiment(tmp.path());
    let small = ["--cells", "a-*", "--cells", "b-*"];
    let whole = tmp.path().join("whole");
    reproduce(&exp, &whole, &small);
    let sharded = tmp.path().join("sharded");
    let mut started = Vec::new();
    for i in 1..=3 {
        let spec = format!("{i}/3");
        let text = reproduce(&exp, &sharded, &[&small[..], &["--shard", &spec]].concat());
        assert!(!sharded.join("results").exists(), "a shard writes no table");
        started.extend(
            text.lines().filter(|l| l.contains("] starting in")).map(|l| l.split(']').next().unwrap().to_string()),
        );
    }
    // 2 + 2 + 2 runs (a-bp, a-fa and b-fa after a-fa, two seeds each), each started once
    started.sort();
    let mut unique = started.clone();
    unique.dedup();
    assert_eq!((started.len(), unique.len()), (6, 6), "{started:?}");
    reproduce(&exp, &sharded, &[&small[..], &["--collect"]].concat());
    assert_eq!(table(&sharded), table(&whole));
    assert_eq!(run_files(&sharded.join("grid")), run_files(&whole.join("grid")));
    // a shard of a filtered grid holds only selected runs
    let filtered = tmp.path().join("filtered");
    let text = reproduce(&exp, &filtered, &["--cells", "a-bp", "--shard", "2/2"]);
    assert!(text.contains("1 run of 1 cell, 1 at a time with 1 thread each"), "{text}");
}

/// The scripts `--slurm` writes without `--submit`: one array task per shard, each running its
/// `--shard`, logs named by shard, the site's extra lines, and a collect job; `--submit` with a
/// missing `sbatch` says so.
#[test]
fn slurm_scripts_name_their_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = experiment(tmp.path());
    let out = tmp.path().join("runs");
    let text = reproduce(
        &exp,
        &out,
        &["--slurm", "--shards", "3", "--cpus-per-task", "2", "--time", "01:00:00", "--slurm-extra=--account=lab"],
    );
    assert!(text.contains("7 runs in 3 shards") && text.contains("not submitted"), "{text}");
    let array = std::fs::read_to_string(out.join("grid/slurm/array.sbatch")).unwrap();
    for want in [
        "#SBATCH --array=1-3",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --time=01:00:00",
        "#SBATCH --account=lab",
        "#SBATCH --requeue",
        "grid-shard-%a-of-3.log",
        "--shard \"${SLURM_ARRAY_TASK_ID}/3\"",
        "'--threads' '2'",
    ] {
        assert!(array.contains(want), "array.sbatch lacks {want}:\n{array}");
    }
    let collect = std::fs::read_to_string(out.join("grid/slurm/collect.sbatch")).unwrap();
    assert!(collect.contains("'--collect'") && !collect.contains("--array"), "{collect}");
    let data = common::data_dir();
    let o = Command::new(env!("CARGO_BIN_EXE_dfa"))
        .args(["reproduce", exp.to_str().unwrap(), "--out", out.to_str().unwrap(), "--slurm", "--submit"])
        .args(["--data-dir", data.to_str().unwrap()])
        .env("PATH", tmp.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("sbatch") && err.contains("--submit"), "{err}");
}

fn slurm_up() -> bool {
    Command::new("sinfo").args(["-h", "-o", "%T"]).output().is_ok_and(|o| {
        o.status.success()
            && String::from_utf8_lossy(&o.stdout).lines().any(|l| ["idle", "mixed", "allocated"].contains(&l.trim()))
    })
}

fn squeue(job: &str) -> String {
    let o = Command::new("squeue").args(["-h", "-j", job, "-o", "%i %T"]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn scontrol(args: &[&str]) {
    let o = Command::new("scontrol").args(args).output().unwrap();
    assert!(o.status.success(), "scontrol {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// The grid on a real Slurm: submitted as an array of 3 tasks and a collect job; task 1 is
/// requeued while its long run is in its epochs (and let start again at once: a requeued job
/// otherwise waits for its begin time); the array finishes, the collect job writes the table,
/// and table and runs equal an unsharded invocation's. Skipped when no Slurm answers, unless
/// `DFA_REQUIRE_SLURM=1` (CI), which makes that a failure.
#[test]
fn a_grid_on_slurm_survives_a_requeue_and_collects_the_unsharded_table() {
    if !slurm_up() {
        assert!(
            std::env::var("DFA_REQUIRE_SLURM").as_deref() != Ok("1"),
            "DFA_REQUIRE_SLURM=1 but no Slurm answers (scripts/slurm-local.sh start)"
        );
        eprintln!("skipped: no Slurm here (scripts/slurm-local.sh start)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let exp = experiment(tmp.path());
    let out = tmp.path().join("slurm");
    let text = reproduce(&exp, &out, &["--slurm", "--submit", "--shards", "3", "--cpus-per-task", "1"]);
    let ids: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("submitted:"))
        .unwrap()
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .collect();
    let (array, collect) = (ids[0].to_string(), ids[1].to_string());
    let metrics = out.join("grid/long-dfa/seed1/metrics.jsonl");
    let deadline = Instant::now() + Duration::from_secs(240);
    // requeue task 1 once its long run has two epochs behind it
    loop {
        assert!(Instant::now() < deadline, "task 1 never got two epochs in: {}", squeue(&array));
        let epochs = std::fs::read_to_string(&metrics).map_or(0, |t| t.lines().count());
        if epochs >= 2 {
            assert!(epochs < 14, "the long run ended before it could be requeued");
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let task = format!("{array}_1");
    scontrol(&["requeue", &task]);
    std::thread::sleep(Duration::from_secs(1));
    scontrol(&["update", &format!("JobId={task}"), "StartTime=now"]);
    while !squeue(&array).trim().is_empty() || !squeue(&collect).trim().is_empty() {
        assert!(Instant::now() < deadline, "jobs still queued: {} {}", squeue(&array), squeue(&collect));
        std::thread::sleep(Duration::from_millis(500));
    }
    let log = std::fs::read_to_string(out.join("grid/slurm/logs/grid-shard-1-of-3.log")).unwrap();
    assert!(log.contains("restart 1"), "task 1 was not restarted:\n{log}");
    assert!(log.contains("[long-dfa seed 1] resuming after epoch"), "the requeued task did not resume:\n{log}");
    let whole = tmp.path().join("whole");
    reproduce(&exp, &whole, &[]);
    assert_eq!(table(&out), table(&whole));
    assert_eq!(run_files(&out.join("grid")), run_files(&whole.join("grid")));
}
