//! Tables of results beside the paper's: aggregation over seeds, Markdown and CSV.
//!
//! Per cell: the mean ± sample standard deviation (n − 1) of the final test error over the
//! seeds that converged, the mean final training error in brackets when it is above the table's
//! `bracket_above` (the full-pass error, or with `bracket_error = "batch"` the error counted on the
//! last epoch's mini-batches), and a dash when no seed converged. A run **did not converge** when it
//! diverged (NaN/inf or exploding loss) or stopped with a training error above the table's
//! `nonconvergence_train_error` (it did not learn the training set). The difference to the
//! paper is measured mean − paper mean, in points.

use crate::experiments::{Cell, Experiment};
use crate::train::StopReason;

/// The outcome of one run that matters for the table.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOutcome {
    pub seed: u64,
    pub test_error: f64,
    /// The training error after the last epoch (full pass): decides convergence.
    pub train_error: f64,
    /// The training error shown in brackets: `train_error`, or the error counted on the last
    /// epoch's mini-batches when the experiment says `bracket_error = "batch"`.
    pub bracket_error: f64,
    pub epochs: usize,
    pub stop: StopReason,
}

/// A cell over its seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct Aggregate {
    pub runs: usize,
    pub converged: usize,
    pub test_mean: f64,
    pub test_std: f64,
    pub train_mean: f64,
    pub epochs_mean: f64,
}

impl Aggregate {
    pub fn of(runs: &[RunOutcome], nonconvergence_train_error: f64) -> Option<Self> {
        if runs.is_empty() {
            return None;
        }
        let ok: Vec<&RunOutcome> = runs
            .iter()
            .filter(|r| r.stop != StopReason::Diverged && r.train_error <= nonconvergence_train_error)
            .collect();
        let n = ok.len() as f64;
        let mean = |f: &dyn Fn(&RunOutcome) -> f64| ok.iter().map(|r| f(r)).sum::<f64>() / n;
        let (test_mean, train_mean, epochs_mean) = if ok.is_empty() {
            (f64::NAN, f64::NAN, f64::NAN)
        } else {
            (mean(&|r| r.test_error), mean(&|r| r.bracket_error), mean(&|r| r.epochs as f64))
        };
        let test_std = if ok.len() > 1 {
            (ok.iter().map(|r| (r.test_error - test_mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        Some(Aggregate { runs: runs.len(), converged: ok.len(), test_mean, test_std, train_mean, epochs_mean })
    }

    /// `1.74 ± 0.08 (0.03)`, `1.74 (0.03)` for one seed, `—` when nothing converged; a note
    /// `[2/3]` when some seeds did not converge.
    pub fn format(&self, bracket_above: f64) -> String {
        if self.converged == 0 {
            return "—".into();
        }
        let mut s = if self.converged > 1 {
            format!("{:.2} ± {:.2}", self.test_mean, self.test_std)
        } else {
            format!("{:.2}", self.test_mean)
        };
        if self.train_mean > bracket_above {
            s += &format!(" ({:.2})", self.train_mean);
        }
        if self.converged < self.runs {
            s += &format!(" [{}/{} converged]", self.converged, self.runs);
        }
        s
    }
}

/// The paper's cell, as printed: `1.74 ± 0.08 (0.03)` or `—`.
pub fn paper_cell(cell: &Cell) -> String {
    match cell.paper {
        None => "—".into(),
        Some([m, s]) => {
            // a standard deviation of 0 means the paper gives none (a single run)
            let mut out = if s > 0.0 { format!("{m:.2} ± {s:.2}") } else { format!("{m:.2}") };
            if let Some(t) = cell.paper_train {
                out += &format!(" ({t:.2})");
            }
            out
        }
    }
}

fn difference(agg: Option<&Aggregate>, cell: &Cell) -> String {
    match (agg, cell.paper) {
        (Some(a), Some([m, _])) if a.converged > 0 => format!("{:+.2}", a.test_mean - m),
        _ => String::new(),
    }
}

/// The results of an experiment's cells (`None`: not run).
pub struct TableResults<'a> {
    pub experiment: &'a Experiment,
    pub cells: Vec<(&'a Cell, Option<Aggregate>)>,
    /// `Some(n)`: a shortened protocol of at most `n` epochs per run.
    pub max_epochs: Option<usize>,
    /// What the reader must know about the data (e.g. an incomplete test set), printed under the table.
    pub notes: Vec<String>,
}

impl TableResults<'_> {
    fn find(&self, row: &str, column: &str) -> Option<&(&Cell, Option<Aggregate>)> {
        self.cells.iter().find(|(c, _)| c.row == row && c.column == column)
    }

    pub fn markdown(&self) -> String {
        let e = self.experiment;
        let mut out = format!("### {}\n\n", e.title);
        if let Some(caption) = &e.caption {
            out += &format!("{}\n\n", caption.trim());
        }
        if let Some(n) = self.max_epochs {
            out += &format!(
                "**Shortened protocol: at most {n} epochs per run** (the paper trains to 0.01 % training error or 300 epochs); not comparable to the paper's numbers.\n\n"
            );
        }
        out += "Measured test error (%) as mean ± std over the converged seeds, training error in brackets when above ";
        out += &format!("{} %", e.bracket_above);
        if e.bracket_error == crate::experiments::BracketError::Batch {
            out += " (the error counted on the last epoch's mini-batches as they were trained, as the paper's code reports it)";
        }
        out += ", — when no seed converged; Δ = measured − paper.\n\n";
        out += "| model |";
        for c in &e.columns {
            out += &format!(" {c} | paper | Δ |");
        }
        out += "\n| --- |";
        out += &" ---: | ---: | ---: |".repeat(e.columns.len());
        out += "\n";
        let mut rows: Vec<&str> = Vec::new();
        for (cell, _) in &self.cells {
            if !rows.contains(&cell.row.as_str()) {
                rows.push(&cell.row);
            }
        }
        for row in rows {
            out += &format!("| {row} |");
            for column in &e.columns {
                match self.find(row, column) {
                    Some((cell, agg)) => {
                        let measured = agg.as_ref().map_or("not run".to_string(), |a| a.format(e.bracket_above));
                        out += &format!(" {measured} | {} | {} |", paper_cell(cell), difference(agg.as_ref(), cell));
                    }
                    None => out += " | | |",
                }
            }
            out += "\n";
        }
        let seeds: Vec<String> = self
            .cells
            .iter()
            .filter_map(|(c, a)| {
                a.as_ref().map(|a| match (a.epochs_mean.is_finite(), a.runs) {
                    (true, 1) => format!("{}: 1 run, {:.0} epochs", c.id, a.epochs_mean),
                    (true, _) => format!("{}: {} runs, {:.0} epochs on average", c.id, a.runs, a.epochs_mean),
                    (false, 1) => format!("{}: 1 run, not converged", c.id),
                    (false, _) => format!("{}: {} runs, none converged", c.id, a.runs),
                })
            })
            .collect();
        out += &format!("\nRuns: {}.\n", seeds.join("; "));
        for note in &self.notes {
            out += &format!("\n**Data:** {note}.\n");
        }
        out
    }

    pub fn csv(&self) -> String {
        let mut out = String::from(
            "cell,row,column,runs,converged,test_mean,test_std,train_mean,epochs_mean,paper_test,paper_std,paper_train,difference,max_epochs\n",
        );
        let num = |v: f64| {
            if v.is_finite() { format!("{v:.4}") } else { String::new() }
        };
        for (cell, agg) in &self.cells {
            let Some(a) = agg else { continue };
            let (pm, ps) = cell.paper.map_or((String::new(), String::new()), |[m, s]| (num(m), num(s)));
            out += &format!(
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                cell.id,
                cell.row,
                cell.column,
                a.runs,
                a.converged,
                num(a.test_mean),
                num(a.test_std),
                num(a.train_mean),
                num(a.epochs_mean),
                pm,
                ps,
                cell.paper_train.map_or(String::new(), num),
                difference(Some(a), cell),
                self.max_epochs.map_or(String::new(), |n| n.to_string()),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seed: u64, test: f64, train: f64, stop: StopReason) -> RunOutcome {
        RunOutcome { seed, test_error: test, train_error: train, bracket_error: train, epochs: 40, stop }
    }

    /// Hand values: tests 1.6, 1.7, 1.8 → mean 1.70, sample std 0.10.
    #[test]
    fn mean_std_brackets_and_dashes() {
        let a = Aggregate::of(
            &[
                run(1, 1.6, 0.0, StopReason::Converged),
                run(2, 1.7, 0.0, StopReason::Converged),
                run(3, 1.8, 0.0, StopReason::Converged),
            ],
            10.0,
        )
        .unwrap();
        assert!((a.test_mean - 1.7).abs() < 1e-12 && (a.test_std - 0.1).abs() < 1e-12);
        assert_eq!(a.format(0.01), "1.70 ± 0.10");
        // training error above the bracket threshold is shown
        let b = Aggregate::of(&[run(1, 3.9, 0.12, StopReason::ScheduleEnded)], 10.0).unwrap();
        assert_eq!(b.format(0.01), "3.90 (0.12)");
        // a diverged run and a run that did not learn are left out, and said so
        let c = Aggregate::of(
            &[
                run(1, 1.5, 0.0, StopReason::Converged),
                run(2, 90.0, 90.0, StopReason::MaxEpochs),
                run(3, 1.0, 0.0, StopReason::Diverged),
            ],
            10.0,
        )
        .unwrap();
        assert_eq!((c.runs, c.converged), (3, 1));
        assert_eq!(c.format(0.01), "1.50 [1/3 converged]");
        // the brackets show the bracket error (e.g. the batch error of a dropout run), while
        // convergence is judged on the full-pass training error
        let batch = |seed, train, bracket| RunOutcome {
            bracket_error: bracket,
            ..run(seed, 42.0, train, StopReason::MaxEpochs)
        };
        let e = Aggregate::of(&[batch(1, 5.0, 37.0), batch(2, 7.0, 39.0), batch(3, 12.0, 80.0)], 10.0).unwrap();
        assert_eq!(e.format(0.1), "42.00 ± 0.00 (38.00) [2/3 converged]");
        // nothing converged: a dash
        let d = Aggregate::of(&[run(1, 88.0, 89.0, StopReason::ScheduleEnded)], 10.0).unwrap();
        assert_eq!(d.format(0.01), "—");
        assert!(Aggregate::of(&[], 10.0).is_none());
    }
}
