//! What a run found, and its renderings: a text table (stdout), JSON,
//! Markdown and an SVG chart of the ratios.

mod json;
mod svg;
mod table;

pub use json::to_json;
pub use svg::to_svg;
pub use table::{to_markdown, to_text};

use crate::harness::{Kind, Mode, Outcome};
use crate::stats::{Better, Summary};
use crate::workloads::Workload;

/// How ratios read, said once wherever they are shown.
pub const ORIENTATION: &str = "Ratios are mproc's performance over the other runner's \
(other/mproc for times, mproc/other for rates and speed-ups): above 1 mproc is that many \
times faster, below 1 slower. Against the limit the ratio is the fraction of the limit \
mproc reaches (1 = at the limit).";

/// One workload's outcomes.
pub struct WorkloadResult {
    pub name: &'static str,
    pub unit: &'static str,
    pub better: Better,
    pub about: &'static str,
    pub outcomes: Vec<Outcome>,
}

impl WorkloadResult {
    pub fn new(w: &Workload, outcomes: Vec<Outcome>) -> WorkloadResult {
        WorkloadResult {
            name: w.name,
            unit: w.unit,
            better: w.better,
            about: w.about,
            outcomes,
        }
    }

    pub fn outcome(&self, kind: Kind) -> Option<&Outcome> {
        self.outcomes.iter().find(|o| o.kind == kind)
    }

    pub fn summary(&self, kind: Kind) -> Option<&Summary> {
        self.outcome(kind)?.result.as_ref().ok()
    }

    /// mproc against `kind` (see [`ORIENTATION`]); `None` without both.
    pub fn ratio(&self, kind: Kind) -> Option<f64> {
        let mproc = self.summary(Kind::Mproc)?.median;
        let other = self.summary(kind)?.median;
        Some(self.better.ratio(mproc, other))
    }
}

/// A whole run.
pub struct Report {
    pub mode: Mode,
    /// UTC, ISO 8601.
    pub date: String,
    /// The checked-out commit of the project, when known.
    pub commit: Option<String>,
    pub cpus: usize,
    /// Measured repetitions per runner.
    pub reps: usize,
    pub python: Option<String>,
    pub seconds: f64,
    /// `/proc/loadavg`'s three figures at the start and at the end: other
    /// work on the machine disturbs every figure.
    pub load: [String; 2],
    pub workloads: Vec<WorkloadResult>,
}

/// The ratio columns, in order.
pub const RATIOS: [Kind; 3] = [Kind::Cpython, Kind::Peer, Kind::Limit];

pub fn ratio_key(kind: Kind) -> String {
    format!("mproc/{kind}")
}

/// A figure with about four significant digits.
pub fn number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let digits = 4 - v.abs().log10().floor() as i32 - 1;
    format!("{v:.*}", digits.clamp(0, 6) as usize)
}

/// A ratio, e.g. `12.3x`, `0.0412x`.
pub fn ratio(v: f64) -> String {
    let digits = 3 - v.abs().log10().floor() as i32 - 1;
    format!("{v:.*}x", digits.clamp(0, 6) as usize)
}

/// `git describe --always --dirty` of the project, when git is there.
pub fn commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// The 1, 5 and 15-minute load averages, e.g. `0.12 0.30 0.25`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The current time, UTC, as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_513), (2026, 3, 1));
    }

    #[test]
    fn numbers() {
        assert_eq!(number(1648.2), "1648");
        assert_eq!(number(43.09), "43.09");
        assert_eq!(number(0.06821), "0.06821");
        assert_eq!(ratio(12.34), "12.3x");
        assert_eq!(ratio(0.04123), "0.0412x");
    }
}
