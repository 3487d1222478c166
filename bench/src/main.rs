//! mproc side by side with CPython's `multiprocessing`, Rust peers and the
//! machine's limits. See `bench/README.md`.
//!
//! `cargo run --release -p mproc-bench -- [--quick] [--filter NAME]`

#![warn(clippy::undocumented_unsafe_blocks)]

mod affinity;
mod cli;
mod cpython;
mod harness;
mod limit;
mod peer;
mod report;
mod stats;
mod workloads;

use std::path::Path;
use std::time::Instant;

use harness::Mode;
use report::{Report, WorkloadResult};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // This binary re-executed as an ipc-channel child.
    if args.first().map(String::as_str) == Some("--child") {
        let name = args.get(1).map_or("", String::as_str);
        if peer::run_child(name, &args[2.min(args.len())..]).is_none() {
            eprintln!("mproc-bench: unknown child {name:?}");
            std::process::exit(2);
        }
        return;
    }
    // In a procspawn child this runs the child's function and exits.
    procspawn::init();
    // The fork start method is measured on purpose, from a single thread.
    mproc::set_fork_warning(false);
    let opts = match cli::parse(&args) {
        Ok(o) => o,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    let selected = workloads::select(&opts.filters);
    if opts.list || selected.is_empty() {
        for w in workloads::all() {
            println!("{:<32} {:<8} {}", w.name, w.unit, w.about);
        }
        std::process::exit(if opts.list { 0 } else { 2 });
    }
    let report = run(&selected, opts.mode, opts.reps.unwrap_or(opts.mode.reps()));
    print!("{}", report::to_text(&report));
    if let Err(e) = write_all(&report, &opts.out) {
        eprintln!(
            "mproc-bench: cannot write results in {}: {e}",
            opts.out.display()
        );
        std::process::exit(1);
    }
    eprintln!("results written to {}", opts.out.display());
}

fn run(selected: &[workloads::Workload], mode: Mode, reps: usize) -> Report {
    let start = Instant::now();
    let date = report::utc_now();
    let load = report::load_average();
    if load.split(' ').next().and_then(|l| l.parse::<f64>().ok()) > Some(0.7) {
        eprintln!(
            "mproc-bench: the machine is busy (load average {load}): figures will be disturbed"
        );
    }
    let mut results = Vec::new();
    for w in selected {
        let outcomes = harness::measure(w, mode, reps, |msg| {
            eprintln!("[{:5.1}s] {msg}", start.elapsed().as_secs_f64())
        });
        results.push(WorkloadResult::new(w, outcomes));
    }
    Report {
        mode,
        date,
        commit: report::commit(),
        cpus: mproc::cpu_count(),
        reps,
        python: cpython::version().map(String::from),
        seconds: start.elapsed().as_secs_f64(),
        load: [load, report::load_average()],
        workloads: results,
    }
}

/// Writes latest.{json,md,svg} in `dir`, each through a temporary file.
fn write_all(report: &Report, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let files = [
        ("latest.json", report::to_json(report)),
        ("latest.md", report::to_markdown(report)),
        ("latest.svg", report::to_svg(report)),
    ];
    for (name, text) in files {
        let tmp = dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, dir.join(name))?;
    }
    Ok(())
}
