//! `latest.svg`: the ratios as bars on a log scale, drawn from 1 (parity)
//! toward mproc's side (right: mproc faster) or the other's (left), one
//! group of bars per workload. Hand-written SVG, no dependency.

use std::fmt::Write;

use super::{ratio, ratio_key, Report, RATIOS};
use crate::harness::Kind;

const LEFT: f64 = 240.0;
const PLOT: f64 = 560.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 86.0;
const BAR: f64 = 13.0;
const GAP: f64 = 12.0;
const BOTTOM: f64 = 46.0;

fn color(kind: Kind) -> &'static str {
    match kind {
        Kind::Cpython => "#3b75af",
        Kind::Peer => "#ef8636",
        _ => "#6f6f6f",
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Decades shown: every ratio fits, and 1 is always inside.
fn decades(report: &Report) -> (i32, i32) {
    let logs = report
        .workloads
        .iter()
        .flat_map(|w| RATIOS.iter().filter_map(|&k| w.ratio(k)))
        .filter(|v| *v > 0.0)
        .map(f64::log10);
    let (lo, hi) = logs.fold((0.0f64, 0.0f64), |(lo, hi), l| (lo.min(l), hi.max(l)));
    (lo.floor() as i32 - 1, hi.ceil() as i32 + 1)
}

/// The label of the tick at 10^d: `0.01x`, `1x`, `100x`.
fn tick(d: i32) -> String {
    format!("{:.*}x", (-d).max(0) as usize, 10f64.powi(d))
}

/// The chart as a standalone SVG document.
pub fn to_svg(report: &Report) -> String {
    let (lo, hi) = decades(report);
    let x = |v: f64| LEFT + (v.log10() - f64::from(lo)) / f64::from(hi - lo) * PLOT;
    let group = RATIOS.len() as f64 * BAR + GAP;
    let height = TOP + group * report.workloads.len() as f64 + BOTTOM;
    let width = LEFT + PLOT + RIGHT;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="20" font-size="14" font-weight="bold">mproc against CPython, Rust peers and the limit</text>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="38">mode {}, {} CPUs, {}; bars right of 1: mproc faster (vs limit: fraction of it reached)</text>"#,
        report.mode.name(),
        report.cpus,
        report.date
    );
    for (i, &k) in RATIOS.iter().enumerate() {
        let lx = LEFT + i as f64 * 150.0;
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="50" width="12" height="12" fill="{}"/><text x="{}" y="60">{}</text>"#,
            color(k),
            lx + 17.0,
            escape(&ratio_key(k))
        );
    }
    for d in lo..=hi {
        let gx = x(10f64.powi(d));
        let (stroke, w) = if d == 0 { ("#000", 1.5) } else { ("#ddd", 1.0) };
        let _ = writeln!(
            s,
            r#"<line x1="{gx:.1}" y1="{}" x2="{gx:.1}" y2="{}" stroke="{stroke}" stroke-width="{w}"/>"#,
            TOP - 6.0,
            height - BOTTOM + 4.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{gx:.1}" y="{}" text-anchor="middle">{}</text>"#,
            height - BOTTOM + 18.0,
            tick(d)
        );
    }
    for (i, w) in report.workloads.iter().enumerate() {
        let gy = TOP + i as f64 * group;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            LEFT - 8.0,
            gy + group / 2.0,
            escape(w.name)
        );
        for (j, &k) in RATIOS.iter().enumerate() {
            let Some(v) = w.ratio(k).filter(|v| *v > 0.0) else {
                continue;
            };
            let y = gy + j as f64 * BAR;
            let (a, b) = (x(1.0).min(x(v)), x(1.0).max(x(v)));
            let _ = writeln!(
                s,
                r#"<rect x="{a:.1}" y="{y:.1}" width="{:.1}" height="{}" fill="{}"><title>{} {}: {}</title></rect>"#,
                (b - a).max(1.0),
                BAR - 2.0,
                color(k),
                escape(w.name),
                escape(&ratio_key(k)),
                ratio(v)
            );
            let (tx, anchor) = if v >= 1.0 {
                (b + 3.0, "start")
            } else {
                (a - 3.0, "end")
            };
            let _ = writeln!(
                s,
                r#"<text x="{tx:.1}" y="{:.1}" text-anchor="{anchor}" font-size="9">{}</text>"#,
                y + BAR - 4.0,
                ratio(v)
            );
        }
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">mproc's performance over the other's (log scale)</text>"#,
        LEFT + PLOT / 2.0,
        height - 10.0
    );
    s.push_str("</svg>\n");
    s
}
