//! `latest.json`: one object per workload, each runner's median, min, max
//! and every run, and the ratios.

use serde_json::{json, Map, Value};

use super::{ratio_key, Report, WorkloadResult, ORIENTATION, RATIOS};

fn workload(w: &WorkloadResult) -> Value {
    let mut runners = Map::new();
    for o in &w.outcomes {
        let mut r = json!({ "what": o.what, "measured": o.measured });
        match &o.result {
            Ok(s) => {
                r["median"] = json!(s.median);
                r["min"] = json!(s.min);
                r["max"] = json!(s.max);
                r["runs"] = json!(s.runs);
            }
            Err(e) => r["skipped"] = json!(e),
        }
        runners.insert(o.kind.key().into(), r);
    }
    let ratios: Map<String, Value> = RATIOS
        .iter()
        .filter_map(|&k| Some((ratio_key(k), json!(w.ratio(k)?))))
        .collect();
    json!({
        "name": w.name,
        "unit": w.unit,
        "better": w.better.key(),
        "about": w.about,
        "runners": runners,
        "ratios": ratios,
    })
}

/// The whole report as pretty-printed JSON.
pub fn to_json(report: &Report) -> String {
    let v = json!({
        "mode": report.mode.name(),
        "date": report.date,
        "commit": report.commit,
        "cpus": report.cpus,
        "python": report.python,
        "reps": report.reps,
        "seconds": report.seconds,
        "load_average": { "start": report.load[0], "end": report.load[1] },
        "orientation": ORIENTATION,
        "workloads": report.workloads.iter().map(workload).collect::<Vec<_>>(),
    });
    serde_json::to_string_pretty(&v).expect("JSON values always serialise") + "\n"
}
