//! A named long-lived thread that runs boxed jobs one at a time, in the
//! order they were sent, until every sender is gone.
//!
//! Two users: the launcher (`start/launcher.rs`), on which children are
//! created so that their death signal follows the process, not a
//! short-lived thread; and the pool's callback thread
//! (`pool/callback.rs`).

use std::io;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread;

/// A job for a [`JobThread`].
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// A thread running [`Job`]s, and the first sender of its jobs.
pub(crate) struct JobThread {
    tx: Sender<Job>,
    thread: thread::JoinHandle<()>,
}

impl JobThread {
    /// Starts a thread named `name`. It ends once every sender (this
    /// one and its clones) is dropped and the jobs sent before ran.
    pub(crate) fn start(name: &str) -> io::Result<JobThread> {
        let (tx, rx) = channel::<Job>();
        let thread = thread::Builder::new().name(name.into()).spawn(move || {
            for job in rx {
                job();
            }
        })?;
        Ok(JobThread { tx, thread })
    }

    /// Another sender of jobs to it.
    pub(crate) fn sender(&self) -> Sender<Job> {
        self.tx.clone()
    }

    /// Lets it run on its own: it ends with its last sender, the one
    /// returned.
    pub(crate) fn detach(self) -> Sender<Job> {
        self.tx
    }

    /// Lets it end once the jobs sent ran, and waits for it (unless called
    /// from one of its jobs, which cannot wait for their own thread). Other
    /// senders still alive keep it running: the wait lasts until they are
    /// dropped.
    pub(crate) fn finish(self) {
        let JobThread { tx, thread } = self;
        drop(tx);
        if thread.thread().id() != thread::current().id() {
            let _ = thread.join();
        }
    }
}

/// `f` as a job that sends its result to the receiver returned (which
/// sees the channel closed if the job is dropped without running).
pub(crate) fn with_reply<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> (Job, Receiver<T>) {
    let (tx, rx) = channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    (job, rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_jobs_in_order_on_its_own_thread() {
        let t = JobThread::start("mproc-test-jobs").unwrap();
        let (job, rx) = with_reply(|| thread::current().name().map(String::from));
        t.sender().send(job).map_err(|_| ()).unwrap();
        assert_eq!(rx.recv().unwrap().as_deref(), Some("mproc-test-jobs"));
        let (order_tx, order_rx) = channel();
        for i in 0..3 {
            let tx = order_tx.clone();
            t.sender()
                .send(Box::new(move || tx.send(i).unwrap()))
                .map_err(|_| ())
                .unwrap();
        }
        t.finish();
        drop(order_tx);
        assert_eq!(order_rx.iter().collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn a_dropped_job_closes_its_reply() {
        let (job, rx) = with_reply(|| 1);
        drop(job);
        assert!(rx.recv().is_err());
    }
}
