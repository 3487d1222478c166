//! Runs the harness in its tiny mode on two workloads and checks the shape
//! of what it writes. Figures are never asserted: only that they are there.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

const WORKLOADS: [&str; 2] = ["process_start_join_fork", "pipe_roundtrip_small"];

fn run_tiny() -> PathBuf {
    let out = std::env::temp_dir().join(format!("mproc-bench-test-{}", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_mproc-bench"))
        .args(["--tiny", "--filter", &WORKLOADS.join(","), "--out"])
        .arg(&out)
        .status()
        .expect("run mproc-bench");
    assert!(status.success(), "mproc-bench failed: {status}");
    out
}

fn is_number(v: &Value) -> bool {
    v.as_f64().is_some_and(f64::is_finite)
}

fn check_runner(workload: &str, kind: &str, r: &Value) {
    assert!(r["what"].is_string(), "{workload}/{kind}: what");
    if r.get("skipped").is_some() {
        // Only CPython may be missing (no python3 on the machine).
        assert_eq!(
            kind, "cpython",
            "{workload}/{kind} skipped: {}",
            r["skipped"]
        );
        return;
    }
    assert!(is_number(&r["median"]), "{workload}/{kind}: median");
    assert!(is_number(&r["min"]), "{workload}/{kind}: min");
    let runs = r["runs"].as_array().expect("runs");
    assert!(
        !runs.is_empty() && runs.iter().all(is_number),
        "{workload}/{kind}: runs"
    );
    assert!(r["min"].as_f64() <= r["median"].as_f64());
}

#[test]
fn tiny_run_writes_results_of_the_right_shape() {
    let out = run_tiny();
    let text = std::fs::read_to_string(out.join("latest.json")).expect("latest.json");
    let json: Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(json["mode"], "tiny");
    assert!(json["orientation"].is_string());
    let workloads = json["workloads"].as_array().expect("workloads array");
    let names: Vec<&str> = workloads
        .iter()
        .filter_map(|w| w["name"].as_str())
        .collect();
    assert_eq!(names, WORKLOADS);
    for w in workloads {
        let name = w["name"].as_str().unwrap();
        assert!(w["unit"].is_string(), "{name}: unit");
        assert!(
            matches!(w["better"].as_str(), Some("lower" | "higher")),
            "{name}: better"
        );
        let runners = w["runners"].as_object().expect("runners object");
        for kind in ["mproc", "cpython", "limit"] {
            let r = runners
                .get(kind)
                .unwrap_or_else(|| panic!("{name}: no {kind}"));
            check_runner(name, kind, r);
        }
        for (kind, r) in runners {
            check_runner(name, kind, r);
        }
        let ratios = w["ratios"].as_object().expect("ratios object");
        assert!(is_number(&ratios["mproc/limit"]), "{name}: mproc/limit");
        assert!(ratios.values().all(is_number));
    }
    let md = std::fs::read_to_string(out.join("latest.md")).expect("latest.md");
    assert!(WORKLOADS.iter().all(|w| md.contains(w)));
    let svg = std::fs::read_to_string(out.join("latest.svg")).expect("latest.svg");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    std::fs::remove_dir_all(&out).ok();
}
