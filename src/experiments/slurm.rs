//! `dfa reproduce … --slurm`: a Slurm job array whose task `i` runs `--shard i/N` of the
//! experiment (see [`crate::experiments::shard`]), and a collect job that builds the table once
//! every task has ended well (`afterok`). With `--submit` both go to `sbatch --parsable`.
//!
//! The scripts call this very binary by its absolute path, with absolute paths for the
//! experiment file, the runs, the results and the data, so that they run from any directory on
//! a shared file system. A requeued or preempted task runs its shard again: finished runs are
//! reused, interrupted ones resume from their checkpoints, and a run folder's lock keeps two
//! processes out of one folder.

use crate::base::error::{Error, Result};
use crate::base::io::write_atomically;
use crate::experiments::{Experiment, ReproduceObserver, Task, shard};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What `--slurm` is asked for.
#[derive(Clone, Debug, Default)]
pub struct SlurmOptions {
    /// Array tasks (default: one per group of runs, see `shard`).
    pub shards: Option<usize>,
    pub partition: Option<String>,
    /// `--time` of each task (`HH:MM:SS`, `D-HH:MM:SS`, …).
    pub time: Option<String>,
    pub cpus_per_task: usize,
    /// Extra `#SBATCH` lines, written as given (`--account=x`, or a whole `#SBATCH …` line).
    pub extra: Vec<String>,
    /// Submit the scripts with `sbatch`.
    pub submit: bool,
    /// The `sbatch` to call (default: `sbatch` on the PATH).
    pub sbatch: Option<PathBuf>,
}

/// What every job of a submission passes on from the invocation that wrote it: the same
/// selection, seeds and folders.
#[derive(Clone, Copy, Debug)]
pub struct Invocation<'a> {
    pub out: &'a Path,
    pub results: &'a Path,
    pub data_dir: Option<&'a Path>,
    pub seeds: Option<usize>,
    pub max_epochs: Option<usize>,
    pub cells: &'a [String],
}

/// The job ids of a submission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted {
    pub array: String,
    pub collect: String,
}

/// A word for bash, single-quoted.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| Error::io(p, e))
}

/// The `#SBATCH` lines every job of the submission shares.
fn common_lines(slurm: &SlurmOptions) -> Result<String> {
    let mut lines = format!("#SBATCH --cpus-per-task={}\n", slurm.cpus_per_task);
    if let Some(p) = &slurm.partition {
        lines += &format!("#SBATCH --partition={p}\n");
    }
    if let Some(t) = &slurm.time {
        lines += &format!("#SBATCH --time={t}\n");
    }
    for extra in &slurm.extra {
        let line = extra.trim();
        if line.contains('\n') || line.is_empty() {
            return Err(Error::config("--slurm-extra", format!("{extra:?}; expected one non-empty line")));
        }
        lines += &if line.starts_with("#SBATCH") { format!("{line}\n") } else { format!("#SBATCH {line}\n") };
    }
    Ok(lines)
}

/// Writes `array.sbatch` and `collect.sbatch` under `RUNS/<experiment>/slurm/` and, with
/// `--submit`, submits them.
pub fn write_scripts(
    opts: Invocation<'_>,
    experiment_file: &Path,
    exp: &Experiment,
    stages: &[Vec<Task>],
    slurm: &SlurmOptions,
    observer: &dyn ReproduceObserver,
) -> Result<()> {
    let groups = shard::assign(exp, stages, 1)?.groups;
    if groups.is_empty() {
        return Err(Error::config("--cells", "no runs selected; nothing to submit"));
    }
    let count = slurm.shards.unwrap_or(groups.len()).min(groups.len());
    if count == 0 || slurm.cpus_per_task == 0 {
        return Err(Error::config("--shards/--cpus-per-task", "0; expected at least 1"));
    }
    let runs_dir = absolute(&exp.runs_dir(opts.out, opts.max_epochs))?;
    let dir = runs_dir.join("slurm");
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| Error::io(&logs, e))?;
    let exe = std::env::current_exe().map_err(|e| Error::io("(this program)", e))?;
    let data_dir = absolute(&crate::data::resolve_data_dir(opts.data_dir))?;
    // what every job passes on: the same experiment, selection, seeds and folders
    let mut args = vec![
        "reproduce".to_string(),
        absolute(experiment_file)?.display().to_string(),
        "--out".into(),
        absolute(opts.out)?.display().to_string(),
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--threads".into(),
        slurm.cpus_per_task.to_string(),
    ];
    if let Some(s) = opts.seeds {
        args.extend(["--seeds".into(), s.to_string()]);
    }
    if let Some(n) = opts.max_epochs {
        args.extend(["--max-epochs".into(), n.to_string()]);
    }
    for c in opts.cells {
        args.extend(["--cells".into(), c.clone()]);
    }
    // the command line, quoted, with `raw` (bash words, unquoted) at its end
    let command = |extra: &[String], raw: &str| {
        let words = std::iter::once(exe.display().to_string()).chain(args.iter().cloned()).chain(extra.iter().cloned());
        let quoted: Vec<String> = words.map(|w| quote(&w)).collect();
        format!("{}{raw}", quoted.join(" "))
    };
    let common = common_lines(slurm)?;
    let name = &exp.name;
    let array = format!(
        "#!/bin/bash\n\
         # dfa reproduce {name} on Slurm: array task i trains shard i/{count} of the runs (docs/cluster.md).\n\
         # Written by `dfa reproduce --slurm`; edit the #SBATCH lines for your site (account, QOS, modules).\n\
         #SBATCH --job-name=dfa-{name}-shards\n\
         #SBATCH --array=1-{count}\n\
         #SBATCH --output={log}\n\
         #SBATCH --open-mode=append\n\
         #SBATCH --requeue\n\
         {common}\
         set -euo pipefail\n\
         echo \"shard ${{SLURM_ARRAY_TASK_ID}}/{count} of {name} on $(hostname), job ${{SLURM_JOB_ID}}, restart ${{SLURM_RESTART_COUNT:-0}}\"\n\
         exec {cmd}\n",
        log = logs.join(format!("{name}-shard-%a-of-{count}.log")).display(),
        cmd = command(&[], &format!(" --shard \"${{SLURM_ARRAY_TASK_ID}}/{count}\"")),
    );
    let collect_args = ["--collect".to_string(), "--results".into(), absolute(opts.results)?.display().to_string()];
    let collect = format!(
        "#!/bin/bash\n\
         # dfa reproduce {name}: the table and figures from every shard's runs. Submitted with\n\
         # --dependency=afterok:<the array's job id>, so it runs once every array task has ended well.\n\
         #SBATCH --job-name=dfa-{name}-collect\n\
         #SBATCH --output={log}\n\
         {common}\
         set -euo pipefail\n\
         exec {cmd}\n",
        log = logs.join(format!("{name}-collect.log")).display(),
        cmd = command(&collect_args, ""),
    );
    let (array_path, collect_path) = (dir.join("array.sbatch"), dir.join("collect.sbatch"));
    write_atomically(&array_path, array.as_bytes())?;
    write_atomically(&collect_path, collect.as_bytes())?;
    observer.message(&format!(
        "{name}: {} runs in {count} shards; wrote {} and {}",
        stages.iter().map(Vec::len).sum::<usize>(),
        array_path.display(),
        collect_path.display()
    ));
    if slurm.submit {
        let ids = submit(slurm.sbatch.as_deref(), &array_path, &collect_path)?;
        observer.message(&format!("submitted: array job {}, collect job {} (afterok)", ids.array, ids.collect));
    } else {
        observer.message(&format!(
            "not submitted (--submit does): sbatch --parsable {} and then sbatch --dependency=afterok:<its id> {}",
            array_path.display(),
            collect_path.display()
        ));
    }
    Ok(())
}

/// `sbatch --parsable` of the array, then of the collect job after it.
pub fn submit(sbatch: Option<&Path>, array: &Path, collect: &Path) -> Result<Submitted> {
    let program = sbatch.unwrap_or(Path::new("sbatch"));
    let run = |args: &[&str], script: &Path| -> Result<String> {
        let out = Command::new(program).args(args).arg(script).output().map_err(|e| {
            Error::Usage(format!(
                "--submit: cannot run {} ({e}); is Slurm installed here? Without --submit the scripts are only written",
                program.display()
            ))
        })?;
        if !out.status.success() {
            return Err(Error::Usage(format!(
                "--submit: {} {} refused ({}): {}",
                program.display(),
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        // `--parsable` prints `id` or `id;cluster`
        let text = String::from_utf8_lossy(&out.stdout);
        let id = text.trim().split(';').next().unwrap_or("").to_string();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
            return Err(Error::Usage(format!(
                "--submit: {} printed {:?}, expected a job id",
                program.display(),
                text.trim()
            )));
        }
        Ok(id)
    };
    let array_id = run(&["--parsable"], array)?;
    let dependency = format!("--dependency=afterok:{array_id}");
    let collect_id = run(&["--parsable", &dependency], collect)?;
    Ok(Submitted { array: array_id, collect: collect_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_bash() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn extra_lines_become_sbatch_lines_and_bad_ones_are_refused() {
        let s = SlurmOptions {
            cpus_per_task: 4,
            partition: Some("gpu".into()),
            extra: vec!["--account=lab".into(), "#SBATCH --qos=low".into()],
            ..Default::default()
        };
        let lines = common_lines(&s).unwrap();
        assert_eq!(
            lines,
            "#SBATCH --cpus-per-task=4\n#SBATCH --partition=gpu\n#SBATCH --account=lab\n#SBATCH --qos=low\n"
        );
        let bad = SlurmOptions { extra: vec!["a\nb".into()], ..s };
        assert!(common_lines(&bad).unwrap_err().to_string().contains("--slurm-extra"));
    }
}
