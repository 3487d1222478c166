//! The exit codes mproc gives a child itself, as plain data.
//!
//! Decided here, above `sys/` (which only reports errors) and below the
//! bootstrap and the child registry, which choose among them.

/// The exit status of a child that could not start its task (garbage or
/// truncated first frame, another build of the program, arguments that do
/// not decode). A one-line reason is printed on its stderr.
pub const BOOTSTRAP_EXIT_CODE: i32 = 121;

/// The exit status of a child whose parent died before it could start (a
/// one-line reason is printed on its stderr).
pub(crate) const ORPHANED_EXIT_CODE: i32 = 122;

/// The exit code reported when the fork server died before telling a
/// child's status (as CPython does), or when a child was reaped behind our
/// back.
pub(crate) const UNKNOWN_EXIT_CODE: i32 = 255;
