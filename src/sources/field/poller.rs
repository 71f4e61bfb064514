//! The thread the field lines run on: one current-thread tokio runtime of its
//! own, apart from the daemon's multi-thread runtime.
//!
//! Why: a poll is a 12-byte write and a short read, microseconds of work, and
//! a line is a single channel that polls its devices one after the other. On
//! the daemon's work-stealing runtime every reply that woke a line task could
//! also wake a parked worker to look for work to steal — a futex wake and a
//! context switch per poll, on a machine whose other core is busy with the
//! store. Measured at 5,000 meters that was about one context switch and
//! 17 µs of kernel time per poll. On one thread, the thread's own event loop
//! takes each reply: no hand-over between threads. One thread keeps up with
//! far more polls than a city has (see BENCHMARKS.md); the store writer, the
//! rules and the API stay on the daemon's runtime, and readings cross over
//! through the [`Sink`](super::sink::Sink)'s queue, in batches.
//!
//! Nothing on this thread may block: every line shares it. Connections are
//! opened asynchronously (a serial port is opened non-blocking), timeouts are
//! timers of this runtime, and readings, dead letters and status events leave
//! through queues.
//!
//! The runtime lives as long as its [`Poller`]: dropping it stops the thread,
//! and the tasks still on it are dropped with the runtime.

use tokio::runtime::{Builder, Handle};
use tokio::sync::oneshot;

/// The thread is not joined: it ends by itself as soon as its runtime sees the
/// stop signal, and dropping may happen on an async worker that must not block.
pub struct Poller {
    handle: Handle,
    /// Dropped with the Poller: the thread's runtime then returns.
    _stop: oneshot::Sender<()>,
}

impl Poller {
    /// Starts the thread and its runtime (timers and I/O enabled).
    pub fn start() -> std::io::Result<Poller> {
        let rt = Builder::new_current_thread()
            .enable_all()
            .thread_name("pw-field")
            .build()?;
        let handle = rt.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("pw-field".into())
            .spawn(move || {
                // Ends when the Poller (holding the sender) is dropped.
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Poller {
            handle,
            _stop: stop,
        })
    }

    /// Where line tasks are spawned.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_run_on_the_poller_thread_and_stop_with_it() {
        let p = Poller::start().unwrap();
        let name = p
            .handle()
            .spawn(async { std::thread::current().name().map(str::to_string) })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("pw-field"));
        let (tx, rx) = oneshot::channel::<()>();
        let pending = p.handle().spawn(async move {
            let _keep = tx;
            std::future::pending::<()>().await;
        });
        drop(p);
        // The runtime is gone: the task's sender is dropped with it.
        assert!(rx.await.is_err());
        assert!(pending.await.unwrap_err().is_cancelled());
    }
}
