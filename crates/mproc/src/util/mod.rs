//! Small pieces with no knowledge of processes, used by several folders.
//!
//! | file            | what                                                     |
//! |-----------------|----------------------------------------------------------|
//! | `job_thread.rs` | `JobThread`: a named long-lived thread running boxed jobs |

pub(crate) mod job_thread;
