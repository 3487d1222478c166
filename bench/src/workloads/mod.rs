//! The registry of workloads: one module per family, each listing its
//! workloads with the runners that apply. A new family is one more module
//! and one more line in [`all`].

mod count;
mod manager;
mod objects;
mod pipe;
mod pool;
mod process;
mod queue;
mod queue_async;
mod sync;

use crate::harness::{Mode, Runner};
use crate::stats::Better;

/// One benchmark: a stable name (used in the JSON), its unit, and how to
/// build its runners for a mode.
pub struct Workload {
    pub name: &'static str,
    pub unit: &'static str,
    pub better: Better,
    /// One line: what is measured.
    pub about: &'static str,
    /// Whether the parent runs on [`PARENT_CPU`](crate::affinity::PARENT_CPU)
    /// during repetitions (its children pin themselves to the other CPU).
    pub pinned: bool,
    pub runners: fn(Mode) -> Vec<Runner>,
}

/// Every workload, in the order they run and are reported.
pub fn all() -> Vec<Workload> {
    [
        process::workloads(),
        pipe::workloads(),
        queue::workloads(),
        queue_async::workloads(),
        sync::workloads(),
        manager::workloads(),
        objects::workloads(),
        pool::workloads(),
        count::workloads(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The workloads that one of `filters` names (all when empty): a filter
/// that is a workload's whole name selects just that one, any other
/// selects every workload whose name contains it.
pub fn select(filters: &[String]) -> Vec<Workload> {
    let all = all();
    let matches = |f: &str, name: &str| match all.iter().any(|w| w.name == f) {
        true => name == f,
        false => name.contains(f),
    };
    let keep: Vec<bool> = all
        .iter()
        .map(|w| filters.is_empty() || filters.iter().any(|f| matches(f, w.name)))
        .collect();
    all.into_iter()
        .zip(keep)
        .filter_map(|(w, k)| k.then_some(w))
        .collect()
}
