//! Run folders that nothing corrupts: one writer per folder, kills at any moment (at every write
//! of an epoch, and at random moments) resume to the numbers of an uninterrupted run bit for bit,
//! metrics survive a resume byte for byte, a resume or an evaluation refuses an edited
//! configuration or other data unless told, data folders are recorded absolute and relocatable,
//! and bad input gets a one-line error instead of an abort.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn dfa() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dfa"));
    c.env("DFA_DATA", common::data_dir()).env_remove("DFA_FAILPOINT");
    c
}

fn run(c: &mut Command) -> Output {
    c.output().expect("dfa runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A small run: 3 epochs of a 1×32 net on 1000 MNIST images, one thread.
const SMALL: &[&str] = &[
    "train",
    "--model",
    "32",
    "--rule",
    "dfa",
    "--train-subset",
    "1000",
    "--test-subset",
    "300",
    "--max-epochs",
    "3",
    "--threads",
    "1",
];

fn train_small(out: &Path, name: &str, failpoint: Option<&str>) -> Output {
    let mut c = dfa();
    c.args(SMALL).args(["--out", out.to_str().unwrap(), "--name", name]);
    if let Some(f) = failpoint {
        c.env("DFA_FAILPOINT", f);
    }
    run(&mut c)
}

fn resume(dir: &Path, failpoint: Option<&str>) -> Output {
    let mut c = dfa();
    c.args(["train", "--resume", dir.to_str().unwrap()]);
    if let Some(f) = failpoint {
        c.env("DFA_FAILPOINT", f);
    }
    run(&mut c)
}

/// Every metrics line without its timings (which no two runs share).
fn numbers(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            for timing in ["seconds", "samples_per_s", "eval_seconds"] {
                o.remove(timing);
            }
            v
        })
        .collect()
}

/// Every tensor of the checkpoint, its bytes, and the progress in its metadata.
fn checkpoint(dir: &Path) -> (BTreeMap<String, Vec<u8>>, String) {
    let bytes = std::fs::read(dir.join("checkpoint.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors = st.tensors().into_iter().map(|(name, t)| (name, t.data().to_vec())).collect();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let progress = header.metadata().as_ref().unwrap()["progress"].clone();
    (tensors, progress)
}

fn summary_numbers(dir: &Path) -> (u64, f64, f64, f64) {
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    (
        s["epochs"].as_u64().unwrap(),
        s["final_loss"].as_f64().unwrap(),
        s["final_train_error"].as_f64().unwrap(),
        s["final_test_error"].as_f64().unwrap(),
    )
}

fn assert_same_run(dir: &Path, reference: &Path) {
    assert_eq!(numbers(dir), numbers(reference), "metrics of {}", dir.display());
    assert_eq!(checkpoint(dir), checkpoint(reference), "checkpoint of {}", dir.display());
    assert_eq!(summary_numbers(dir), summary_numbers(reference), "summary of {}", dir.display());
}

fn reference(tmp: &Path) -> PathBuf {
    let o = train_small(tmp, "reference", None);
    assert!(o.status.success(), "{}", text(&o));
    tmp.join("reference")
}

#[test]
fn a_kill_between_any_two_writes_of_an_epoch_loses_at_most_that_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = reference(tmp.path());
    // every write of a run, at the first, a middle and the last epoch
    let mut points =
        vec!["before-rename:meta.json".to_string(), "before-summary".into(), "before-rename:summary.json".into()];
    for point in [
        "epoch-trained",
        "metrics-half-written",
        "metrics-appended",
        "before-rename:checkpoint.safetensors",
        "checkpoint-saved",
    ] {
        for epoch in 1..=3 {
            points.push(format!("{point}@{epoch}"));
        }
    }
    for (k, point) in points.iter().enumerate() {
        let name = format!("killed-{k}");
        let o = train_small(tmp.path(), &name, Some(point));
        assert!(!o.status.success(), "{point}: the failpoint was not reached: {}", text(&o));
        let dir = tmp.path().join(&name);
        let o = resume(&dir, None);
        assert!(o.status.success(), "{point}: resume failed: {}", text(&o));
        assert_same_run(&dir, &reference);
        assert!(dir.join("meta.json").is_file(), "{point}: meta.json missing after the resume");
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{point}: temporary files left: {leftovers:?}");
    }
}

#[test]
fn sigkill_at_twenty_random_moments_resumes_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let reference = reference(tmp.path());
    let full = started.elapsed();
    // a fixed sequence of moments (xorshift), spread over a whole run's duration
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut kills, mut trial) = (0, 0);
    while kills < 20 {
        trial += 1;
        let name = format!("random-{trial}");
        let dir = tmp.path().join(&name);
        let mut attempts = 0;
        loop {
            attempts += 1;
            assert!(attempts < 200, "trial {trial} does not finish");
            let mut c = dfa();
            if dir.join("config.toml").is_file() {
                c.args(["train", "--resume", dir.to_str().unwrap()]);
            } else {
                c.args(SMALL).args(["--out", tmp.path().to_str().unwrap(), "--name", &name]);
            }
            let mut child = c.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
            // the window widens with each attempt of a trial: when the children run slower than
            // the reference did (other tests beside them), a trial still finishes
            let wait = full.mul_f64((next() % 1000) as f64 / 1000.0 * (1.0 + attempts as f64 / 4.0));
            std::thread::sleep(wait);
            match child.try_wait().unwrap() {
                None => {
                    child.kill().unwrap(); // SIGKILL
                    child.wait().unwrap();
                    kills += 1;
                    continue;
                }
                Some(status) => assert!(status.success(), "trial {trial}, attempt {attempts}: {status}"),
            }
            if dir.join("summary.json").is_file() {
                break;
            }
        }
        assert_same_run(&dir, &reference);
    }
    eprintln!("{kills} kills over {trial} runs, each resumed to the reference's bits");
}

#[test]
fn a_start_killed_before_its_configuration_leaves_its_name_free() {
    use dfa::train::record::RunDir;
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    // what a kill between creating the folder and writing config.toml leaves: a folder with a lock
    std::fs::create_dir(base.join("r")).unwrap();
    std::fs::write(base.join("r/.lock"), "12345").unwrap();
    std::fs::write(base.join("r/.config.toml.tmp-12345"), "half").unwrap();
    let (dir, lock) = RunDir::create_locked(base, "r").unwrap();
    assert_eq!(dir.path, base.join("r"), "the abandoned folder is taken over");
    assert!(!base.join("r/.config.toml.tmp-12345").exists(), "its temporary file is removed");
    // held by a writer (this process): the next name
    let (other, _other_lock) = RunDir::create_locked(base, "r").unwrap();
    assert_eq!(other.path, base.join("r-2"));
    drop(lock);
    // a folder with its configuration is never taken over
    std::fs::write(base.join("r/config.toml"), "").unwrap();
    let (third, _third_lock) = RunDir::create_locked(base, "r").unwrap();
    assert_eq!(third.path, base.join("r-3"));

    // on the command line: the same command run again trains in the folder of its name
    let out = base.join("runs");
    std::fs::create_dir_all(out.join("small")).unwrap();
    std::fs::write(out.join("small/.lock"), "12345").unwrap();
    let o = train_small(&out, "small", None);
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.join("small/summary.json").is_file(), "{}", text(&o));
    assert!(!out.join("small-2").exists());
}

#[test]
fn a_run_folder_has_one_writer() {
    // in the library: a second lock fails at once, naming the holder
    let tmp = tempfile::tempdir().unwrap();
    let dir = dfa::train::record::RunDir::open_new(tmp.path()).unwrap();
    let lock = dir.lock().unwrap();
    let err = dir.lock().unwrap_err().to_string();
    assert!(err.contains(&format!("in use by process {}", std::process::id())), "{err}");
    drop(lock);
    dir.lock().unwrap();

    // on the command line: a resume while the run trains stops at once with the holder's PID
    let out = tmp.path().join("runs");
    let mut child = dfa()
        .args(["train", "--model", "256,256", "--train-subset", "20000", "--max-epochs", "50", "--threads", "1"])
        .args(["--out", out.to_str().unwrap(), "--name", "busy"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let busy = out.join("busy");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !busy.join("config.toml").is_file() {
        assert!(Instant::now() < deadline, "the run did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = resume(&busy, None);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(&format!("in use by process {}", child.id())), "{}", text(&o));
    // the holder gone, the folder resumes
    let o = run(dfa().args(["train", "--resume", busy.to_str().unwrap()]).env("DFA_FAILPOINT", "epoch-trained"));
    assert!(!text(&o).contains("in use"), "{}", text(&o));
}

#[test]
fn a_resume_keeps_every_metrics_line_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = reference(tmp.path());
    let copy = tmp.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    for f in ["config.toml", "meta.json", "metrics.jsonl", "checkpoint.safetensors"] {
        std::fs::copy(reference.join(f), copy.join(f)).unwrap();
    }
    let o = resume(&copy, None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read(copy.join("metrics.jsonl")).unwrap(),
        std::fs::read(reference.join("metrics.jsonl")).unwrap()
    );
    assert_eq!(summary_numbers(&copy), summary_numbers(&reference));
}

/// An interrupted run (killed after its first checkpoint).
fn interrupted(tmp: &Path, name: &str) -> PathBuf {
    let o = train_small(tmp, name, Some("checkpoint-saved@1"));
    assert!(!o.status.success(), "{}", text(&o));
    tmp.join(name)
}

fn edit_config(dir: &Path, from: &str, to: &str) {
    let path = dir.join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from} not in {text}");
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

#[test]
fn an_edited_configuration_is_refused_unless_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    for (field, from, to) in [("seed", "seed = 1", "seed = 7"), ("rule", "rule = \"dfa\"", "rule = \"fa\"")] {
        let dir = interrupted(tmp.path(), field);
        edit_config(&dir, from, to);
        for o in [resume(&dir, None), run(dfa().args(["eval", dir.to_str().unwrap()]))] {
            assert_eq!(o.status.code(), Some(1), "{}", text(&o));
            let t = text(&o);
            assert!(t.contains(&format!("field {field}")) && t.contains("--accept-changes"), "{t}");
            assert_eq!(t.trim().lines().count(), 1, "one line: {t}");
        }
        let o = run(dfa().args(["train", "--resume", dir.to_str().unwrap(), "--accept-changes"]));
        assert!(o.status.success(), "{}", text(&o));
        let meta = std::fs::read_to_string(dir.join("meta.json")).unwrap();
        assert!(meta.contains("resumed with changes accepted") && meta.contains(field), "{meta}");
    }
}

/// A copy of the MNIST folder (the `.gz` files as they are), with the test labels replaced by
/// a valid file of other labels when `altered`.
fn mnist_copy(root: &Path, altered: bool) -> PathBuf {
    use std::io::{Read, Write};
    let folder = root.join("mnist");
    std::fs::create_dir_all(&folder).unwrap();
    for name in dfa::data::IDX_FILES {
        let source = common::mnist_dir().join(format!("{name}.gz"));
        let target = folder.join(format!("{name}.gz"));
        if altered && name == "t10k-labels-idx1-ubyte" {
            let mut raw = Vec::new();
            flate2::read::GzDecoder::new(std::fs::File::open(&source).unwrap()).read_to_end(&mut raw).unwrap();
            raw.swap(8, 9);
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(&raw).unwrap();
            std::fs::write(&target, gz.finish().unwrap()).unwrap();
        } else {
            std::fs::copy(&source, &target).unwrap();
        }
    }
    root.to_path_buf()
}

#[test]
fn data_are_checked_against_meta_and_may_move() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = interrupted(tmp.path(), "run");
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    let recorded = common::data_dir();
    assert!(config.contains(&format!("data_dir = \"{}\"", recorded.display())), "absolute data_dir: {config}");

    // moved data: the same bytes elsewhere, accepted on their checksums
    let moved = mnist_copy(&tmp.path().join("moved"), false);
    let o = run(dfa().args(["eval", dir.to_str().unwrap(), "--data-dir", moved.to_str().unwrap()]));
    assert!(o.status.success(), "{}", text(&o));

    // other data: refused, naming the file, unless accepted
    let other = mnist_copy(&tmp.path().join("other"), true);
    for o in [
        run(dfa().args(["eval", dir.to_str().unwrap(), "--data-dir", other.to_str().unwrap()])),
        run(dfa().args(["train", "--resume", dir.to_str().unwrap(), "--data-dir", other.to_str().unwrap()])),
    ] {
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains("t10k-labels-idx1-ubyte.gz: SHA-256"), "{}", text(&o));
    }
    let o = run(dfa().args(["eval", dir.to_str().unwrap(), "--data-dir", other.to_str().unwrap(), "--accept-changes"]));
    assert!(o.status.success(), "{}", text(&o));

    // --data-dir with --resume is used (a folder without the data is named in the error)
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = run(dfa().args(["train", "--resume", dir.to_str().unwrap(), "--data-dir", empty.to_str().unwrap()]));
    assert!(text(&o).contains(&format!("data not found in {}", empty.display())), "{}", text(&o));

    // evaluated from another folder, with no DFA_DATA: the recorded absolute folder serves
    let o = run(dfa().args(["eval", dir.to_str().unwrap()]).env_remove("DFA_DATA").current_dir(tmp.path()));
    assert!(o.status.success(), "{}", text(&o));

    // a run that recorded a relative folder (as older versions did): DFA_DATA finds the data
    edit_config(&dir, &format!("data_dir = \"{}\"", recorded.display()), "data_dir = \"no/such/folder\"");
    let o = run(dfa().args(["eval", dir.to_str().unwrap()]).current_dir(tmp.path()));
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn resume_takes_no_other_flags_and_a_finished_run_reads_no_data() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = reference(tmp.path());
    let o = run(dfa().args(["train", "--resume", reference.to_str().unwrap(), "--max-epochs", "9", "--threads", "2"]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--max-epochs, --threads cannot be given with --resume"), "{}", text(&o));
    // finished: said at once, the data are not read (there are none here)
    edit_config(&reference, &format!("data_dir = \"{}\"", common::data_dir().display()), "data_dir = \"/nonexistent\"");
    let o = run(dfa().args(["train", "--resume", reference.to_str().unwrap()]).env("DFA_DATA", "/nonexistent"));
    assert!(o.status.success() && text(&o).contains("already finished"), "{}", text(&o));
}

#[test]
fn a_net_that_does_not_fit_is_refused_before_allocating() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("runs");
    let o = run(dfa().args(["train", "--model", "2x100000", "--out", out.to_str().unwrap()]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("invalid model: the net 2x100000 needs about"), "{}", text(&o));
    assert!(!out.exists(), "no run folder is left behind");
    // the same against a stated limit
    let o = run(dfa()
        .args(["train", "--model", "2x4000", "--out", out.to_str().unwrap()])
        .env("DFA_MEMORY_LIMIT", "100000000"));
    assert!(text(&o).contains("more than the 0.09 GiB of memory available"), "{}", text(&o));
    // a conv net: its im2col buffers count (conv-tanh's second block alone needs > 1 GiB of
    // patches for a batch and an evaluation chunk)
    let o = run(dfa()
        .args(["train", "--dataset", "cifar10", "--model", "conv-tanh", "--train-subset", "64"])
        .args(["--test-subset", "64", "--out", out.to_str().unwrap()])
        .env("DFA_MEMORY_LIMIT", "1000000000"));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("invalid model: the net conv-tanh needs about"), "{}", text(&o));
    assert!(!out.exists(), "no run folder is left behind");
}

#[test]
fn thread_counts_beyond_the_machine_are_refused() {
    let o = run(dfa().args(["train", "--threads", "1000"]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("1000 threads on a machine with"), "{}", text(&o));
}

#[test]
fn early_stopping_can_be_switched_off() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().to_str().unwrap();
    let args = [
        "train",
        "--model",
        "64",
        "--train-subset",
        "64",
        "--test-subset",
        "100",
        "--max-epochs",
        "40",
        "--threads",
        "1",
        "--no-lr-schedule",
        "--lr",
        "0.01",
        "--out",
        out,
    ];
    let o = run(dfa().args(args).args(["--name", "stops"]));
    assert!(o.status.success(), "{}", text(&o));
    let stops = summary_numbers(&tmp.path().join("stops")).0;
    assert!(stops < 40, "64 samples are learnt before epoch 40 ({stops})");
    let o = run(dfa().args(args).args(["--name", "runs-on", "--no-early-stop"]));
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(summary_numbers(&tmp.path().join("runs-on")).0, 40);
}

#[test]
fn errors_are_one_line_and_say_what_was_expected() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "model = \"2x100\"\nlearning_rate = \"fast\"\n").unwrap();
    let o = run(dfa().args(["train", "--config", bad.to_str().unwrap(), "--out", tmp.path().to_str().unwrap()]));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("bad.toml") && err.contains("line 2, column 17") && err.contains("expected f32"), "{err}");

    // a run folder whose first epoch has not ended has no checkpoint to evaluate
    let o = run(dfa().args(SMALL).args(["--out", tmp.path().to_str().unwrap(), "--name", "r"]));
    assert!(o.status.success(), "{}", text(&o));
    std::fs::remove_file(tmp.path().join("r/checkpoint.safetensors")).unwrap();
    let o = run(dfa().args(["eval", tmp.path().join("r").to_str().unwrap()]));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("checkpoint.safetensors: no checkpoint yet"), "{err}");
}
