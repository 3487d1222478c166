//! CPython runners: a script in `bench/python/` set up once, then driven
//! over its stdin/stdout, one line per repetition:
//!
//! ```text
//! harness                    script
//!                   <-  ready
//! rep               ->
//!                   <-  <figure>          (one repetition, in the workload's unit)
//! (stdin closed)    ->  tears down and exits
//! ```

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::harness::{Kind, Result, Runner, Session};

/// The interpreter: `$MPROC_BENCH_PYTHON`, else `python3`.
pub fn interpreter() -> String {
    std::env::var("MPROC_BENCH_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// The interpreter's version line, or `None` when there is none.
pub fn version() -> Option<&'static str> {
    static VERSION: OnceLock<Option<String>> = OnceLock::new();
    VERSION
        .get_or_init(|| {
            let out = Command::new(interpreter()).arg("--version").output().ok()?;
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            out.status.success().then_some(text)
        })
        .as_deref()
}

pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name)
}

/// A CPython runner: `python3 bench/python/<script> <args...>`.
pub fn runner(what: impl Into<String>, script_name: &'static str, args: Vec<String>) -> Runner {
    Runner::new(Kind::Cpython, what, move || {
        let Some(_) = version() else {
            return Err(format!("no python: {} not found", interpreter()).into());
        };
        Ok(Box::new(Script::start(script_name, &args)?) as Box<dyn Session>)
    })
}

struct Script {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Script {
    fn start(name: &str, args: &[String]) -> Result<Script> {
        let mut child = Command::new(interpreter())
            .arg(script(name))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut s = Script {
            child,
            stdin,
            stdout,
        };
        match s.line()?.as_str() {
            "ready" => Ok(s),
            other => Err(format!("{name}: expected ready, got {other:?}").into()),
        }
    }

    fn line(&mut self) -> Result<String> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            return Err("python script ended early (see its stderr)".into());
        }
        Ok(line.trim().to_string())
    }
}

impl Session for Script {
    fn rep(&mut self) -> Result<f64> {
        let stdin = self.stdin.as_mut().ok_or("closed")?;
        stdin.write_all(b"rep\n")?;
        stdin.flush()?;
        Ok(self.line()?.parse()?)
    }
}

impl Drop for Script {
    /// Closes stdin (the script tears down and exits); kills a script
    /// still there after 20 s, so a hang costs one runner, not the run.
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Ok(None) = self.child.try_wait() {
            if Instant::now() > deadline {
                eprintln!("mproc-bench: killing a python script that did not exit");
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
