//! Rust peers that need more than a call: ipc-channel's children. (The
//! procspawn runners are plain calls, beside their workloads.)

pub mod ipc;

/// Runs the child side named by `--child NAME SERVER CPU` (CPU `-`: not
/// pinned); `None` for an unknown name or missing arguments.
pub fn run_child(name: &str, args: &[String]) -> Option<()> {
    match name {
        "ipc-echo" => ipc::child_echo(args.first()?, args.get(1)?.parse().ok()),
        "ipc-sink" => ipc::child_sink(args.first()?, args.get(1)?.parse().ok()),
        _ => return None,
    }
    Some(())
}
