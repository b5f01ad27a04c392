//! What the command line prints while it works: progress bars, one line per epoch, summaries.

use dfa::train::record::{Observer, RunDir, Summary};
use dfa::train::{EpochMetrics, Progress};
use indicatif::{ProgressBar, ProgressStyle};

/// Progress bars per epoch and one line per finished epoch.
pub struct Console {
    pub bar: Option<ProgressBar>,
}

impl Observer for Console {
    fn epoch_started(&mut self, epoch: usize, batches: usize) {
        let bar = ProgressBar::new(batches as u64);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix:>3} [{bar:30}] {pos}/{len} batches {rate} eta {eta}")
                .expect("valid template")
                .with_key("rate", |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{}/s", rate(state.per_sec()));
                })
                .progress_chars("=> "),
        );
        bar.set_prefix(epoch.to_string());
        self.bar = Some(bar);
    }

    fn batch_done(&mut self, _done: usize, _total: usize) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    fn epoch_done(&mut self, m: &EpochMetrics, p: &Progress) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        println!(
            "epoch {:3}  loss {:.4}  {}  test {:6.3}%{}  lr {:.3e}  {:.2}s ({:.0} samples/s) + eval {:.2}s",
            m.epoch,
            m.loss,
            train_column(m),
            m.test_error,
            m.validation_error.map_or(String::new(), |v| format!("  validation {v:6.3}%")),
            m.learning_rate,
            m.seconds,
            m.samples_per_s,
            m.eval_seconds
        );
        if let Some(last) = m.alignment.last() {
            let angles: Vec<String> = last
                .layers
                .iter()
                .map(|l| {
                    let a = l.delta_angle_mean.map_or("–".into(), |a| format!("{a:.1}°"));
                    format!("h{} {a} (L>0 {:.0}%)", l.layer, 100.0 * l.criterion_positive)
                })
                .collect();
            println!("          alignment with BP at batch {}: {}", last.batch, angles.join(", "));
        }
        if let Some(stop) = p.stop {
            println!("stop: {}", stop.describe());
        } else if p.learning_rate < m.learning_rate {
            println!("learning rate halved to {:.3e} (halving {})", p.learning_rate, p.halvings);
        }
    }
}

/// A rate with as many digits as it deserves: `498/s`, `12.3/s`, `0.52/s`.
pub fn rate(per_sec: f64) -> String {
    if per_sec >= 100.0 {
        format!("{per_sec:.0}")
    } else if per_sec >= 10.0 {
        format!("{per_sec:.1}")
    } else {
        format!("{per_sec:.2}")
    }
}

pub fn print_summary(dir: &RunDir, s: &Summary) {
    let per_epoch = s.total_seconds / s.epochs.max(1) as f64;
    println!(
        "{}: {} after {} epochs; {}, test error {:.3}%, {:.2} s/epoch ({:.2} s training + {:.2} s evaluation)",
        dir.path.display(),
        s.stop.describe(),
        s.epochs,
        final_train(s),
        s.final_test_error,
        per_epoch,
        s.mean_epoch_seconds,
        (per_epoch - s.mean_epoch_seconds).max(0.0)
    );
}

pub struct ReproduceConsole;

impl dfa::experiments::ReproduceObserver for ReproduceConsole {
    fn run_started(&self, task: &dfa::experiments::Task, resumed_from: Option<usize>) {
        match resumed_from {
            Some(e) => println!("[{} seed {}] resuming after epoch {e}", task.cell, task.seed),
            None => println!("[{} seed {}] starting in {}", task.cell, task.seed, task.dir.display()),
        }
    }

    fn epoch_done(&self, task: &dfa::experiments::Task, m: &EpochMetrics) {
        println!(
            "[{} seed {}] epoch {:3}  {}  test {:6.3}%  lr {:.2e}  {:.1}s",
            task.cell,
            task.seed,
            m.epoch,
            train_column(m),
            m.test_error,
            m.learning_rate,
            m.seconds + m.eval_seconds
        );
    }

    fn run_finished(&self, f: &dfa::experiments::Finished) {
        let s = &f.summary;
        println!(
            "[{} seed {}] {}: {} after {} epochs, {}, test {:.3}%",
            f.cell,
            f.seed,
            if f.reused { "reused" } else { "done" },
            s.stop.describe(),
            s.epochs,
            final_train(s),
            s.final_test_error
        );
    }

    fn message(&self, text: &str) {
        println!("{text}");
    }
}

/// The training error of an epoch's line: the full pass's, or without it (`--no-full-pass`) the
/// error counted on the mini-batches, labelled so.
fn train_column(m: &EpochMetrics) -> String {
    if m.train_error.is_nan() {
        format!("batch {:6.3}%", m.batch_error)
    } else {
        format!("train {:6.3}%", m.train_error)
    }
}

/// A summary's training error, or that it was not measured (`--no-full-pass`).
fn final_train(s: &Summary) -> String {
    if s.final_train_error.is_nan() {
        "train error not measured (no full pass)".to_string()
    } else {
        format!("train error {:.3}%", s.final_train_error)
    }
}
