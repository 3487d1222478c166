//! The registry of workloads: one module per family, each listing its
//! workloads with the runners that apply. A new family is one more module
//! and one more line in [`all`].

mod count;
mod pipe;
mod process;

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
    pub runners: fn(Mode) -> Vec<Runner>,
}

/// Every workload, in the order they run and are reported.
pub fn all() -> Vec<Workload> {
    [process::workloads(), pipe::workloads(), count::workloads()]
        .into_iter()
        .flatten()
        .collect()
}

/// The workloads whose name contains one of `filters` (all when empty).
pub fn select(filters: &[String]) -> Vec<Workload> {
    all()
        .into_iter()
        .filter(|w| filters.is_empty() || filters.iter().any(|f| w.name.contains(f.as_str())))
        .collect()
}
