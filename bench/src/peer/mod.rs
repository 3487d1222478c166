//! Rust peers that need more than a call: ipc-channel's children. (The
//! procspawn runners are plain calls, beside their workloads.)

pub mod ipc;

/// Runs the child side named by `--child NAME ARGS...`; `None` for an
/// unknown name.
pub fn run_child(name: &str, args: &[String]) -> Option<()> {
    match name {
        "ipc-echo" => ipc::child_echo(args.first()?),
        "ipc-sink" => ipc::child_sink(args.first()?),
        _ => return None,
    }
    Some(())
}
