//! Command-line options.

use std::path::PathBuf;

use crate::harness::Mode;

pub const USAGE: &str = "\
usage: cargo run --release -p mproc-bench -- [OPTIONS]

  --quick          a shorter run (under 3 minutes)
  --tiny           a few iterations only: checks that everything runs
  --filter NAME    only workloads whose name contains NAME (repeatable,
                   or comma-separated)
  --reps N         measured repetitions per runner (default: 11 full,
                   5 quick, 2 tiny)
  --out DIR        where to write latest.{json,md,svg} (default bench/results)
  --list           list the workloads and exit
  -h, --help       this text";

pub struct Options {
    pub mode: Mode,
    pub filters: Vec<String>,
    pub out: PathBuf,
    pub list: bool,
    /// Repetitions, when not the mode's.
    pub reps: Option<usize>,
}

/// Parses the arguments after the program name; `Err` holds what to print.
pub fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        mode: Mode::Full,
        filters: Vec::new(),
        out: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results"),
        list: false,
        reps: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--quick" => o.mode = Mode::Quick,
            "--tiny" => o.mode = Mode::Tiny,
            "--full" => o.mode = Mode::Full,
            "--filter" => o
                .filters
                .extend(value(a)?.split(',').map(|s| s.trim().to_string())),
            "--out" => o.out = PathBuf::from(value(a)?),
            "--reps" => {
                let n = value(a)?;
                match n.parse() {
                    Ok(n) if n > 0 => o.reps = Some(n),
                    _ => return Err(format!("--reps needs a positive number, not {n:?}")),
                }
            }
            "--list" => o.list = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n\n{USAGE}")),
        }
    }
    Ok(o)
}
