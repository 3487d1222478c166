//! The results as a table: plain text for stdout, Markdown for the file.

use super::{number, ratio, ratio_key, Report, WorkloadResult, ORIENTATION, RATIOS};
use crate::harness::Kind;

fn header() -> Vec<String> {
    let mut h: Vec<String> = ["workload", "unit", "better"].map(String::from).to_vec();
    h.extend(Kind::ALL.iter().map(|k| k.key().to_string()));
    h.extend(RATIOS.iter().map(|&k| ratio_key(k)));
    h
}

fn row(w: &WorkloadResult) -> Vec<String> {
    let mut r = vec![
        w.name.to_string(),
        w.unit.to_string(),
        w.better.key().into(),
    ];
    r.extend(
        Kind::ALL
            .iter()
            .map(|&k| w.summary(k).map_or("-".into(), |s| number(s.median))),
    );
    r.extend(RATIOS.iter().map(|&k| w.ratio(k).map_or("-".into(), ratio)));
    r
}

/// Runners that have no figure, and why.
fn notes(report: &Report) -> Vec<String> {
    let mut notes = Vec::new();
    for w in &report.workloads {
        for o in &w.outcomes {
            if let Err(e) = &o.result {
                notes.push(format!("{} / {}: {}", w.name, o.kind, e));
            }
        }
    }
    notes
}

fn summary_line(report: &Report) -> String {
    format!(
        "mode {}, commit {}, {} CPUs, {}, {}, medians of {} repetitions, run took {:.0} s, \
         load average {} at start, {} at end",
        report.mode.name(),
        report.commit.as_deref().unwrap_or("unknown"),
        report.cpus,
        report.python.as_deref().unwrap_or("no python3"),
        report.date,
        report.reps,
        report.seconds,
        report.load[0],
        report.load[1]
    )
}

/// The table for a terminal, columns aligned.
pub fn to_text(report: &Report) -> String {
    let mut rows = vec![header()];
    rows.extend(report.workloads.iter().map(row));
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = format!("{}\n{}\n\n", summary_line(report), wrap(ORIENTATION, 100));
    for (i, r) in rows.iter().enumerate() {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, &w))| match c {
                0..=2 => format!("{cell:<w$}"),
                _ => format!("{cell:>w$}"),
            })
            .collect();
        out += cells.join("  ").trim_end();
        out.push('\n');
        if i == 0 {
            out += &"-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1));
            out.push('\n');
        }
    }
    for n in notes(report) {
        out += &format!("note: {n}\n");
    }
    out
}

/// The same as Markdown, with what each runner does.
pub fn to_markdown(report: &Report) -> String {
    let mut out = format!(
        "# mproc benchmarks\n\n{}\n\n{}\n\n",
        summary_line(report),
        ORIENTATION
    );
    let h = header();
    out += &format!("| {} |\n", h.join(" | "));
    let align: Vec<&str> = (0..h.len())
        .map(|c| if c < 3 { "---" } else { "---:" })
        .collect();
    out += &format!("|{}|\n", align.join("|"));
    for w in &report.workloads {
        out += &format!("| {} |\n", row(w).join(" | "));
    }
    let notes = notes(report);
    if !notes.is_empty() {
        out += "\nNotes:\n\n";
        for n in notes {
            out += &format!("- {n}\n");
        }
    }
    out += "\n## What each runner does\n";
    for w in &report.workloads {
        out += &format!("\n**{}** ({}): {}\n\n", w.name, w.unit, w.about);
        for o in &w.outcomes {
            let figures = match &o.result {
                Ok(s) => format!(
                    "median {}, min {}, max {}",
                    number(s.median),
                    number(s.min),
                    number(s.max)
                ),
                Err(e) => e.clone(),
            };
            out += &format!("- {}: {} — {}\n", o.kind, o.what, figures);
        }
    }
    out
}

fn wrap(text: &str, width: usize) -> String {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let last = lines.last_mut().expect("one line");
        if !last.is_empty() && last.len() + 1 + word.len() > width {
            lines.push(word.to_string());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines.join("\n")
}
