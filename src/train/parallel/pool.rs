//! The run's thread pool, with its workers kept awake while a step runs.

use crate::base::error::{Error, Result};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A pool of `threads` rayon threads that the GEMMs and the concurrent layer updates of one run
/// use. Cheap to clone (the clones share the threads).
#[derive(Clone)]
pub struct Pool {
    pool: Arc<rayon::ThreadPool>,
    threads: usize,
}

impl Pool {
    /// A pool of `threads` threads (at least 1), each warmed up for the matrix products.
    pub fn new(threads: usize) -> Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| Error::config("threads", e.to_string()))?;
        pool.broadcast(|_| crate::base::linalg::warm_up_thread());
        Ok(Pool { pool: Arc::new(pool), threads })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` once on every thread of the pool.
    pub fn broadcast(&self, f: impl Fn() + Sync) {
        self.pool.broadcast(|_| f());
    }

    /// Runs `f` on the pool. With several threads the other workers spin for work while `f` runs
    /// instead of going to sleep between parallel sections (rayon parks an idle worker after a
    /// few dozen empty polls, and waking it costs more than most of a small net's GEMM halves);
    /// they execute the GEMM halves and layer updates that `f` hands out as soon as they appear.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let spin = self.threads > 1;
        self.pool.install(|| if spin { keep_workers_awake(f) } else { f() })
    }

    /// Runs `f` on the pool, its workers sleeping when idle (the evaluation passes).
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }
}

/// Runs `f` on the current rayon worker while every other worker of the pool polls for jobs
/// (`rayon::yield_now`) until `f` returns or panics.
pub(crate) fn keep_workers_awake<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    struct Release<'a>(&'a AtomicBool);
    impl Drop for Release<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    let done = AtomicBool::new(false);
    let me = rayon::current_thread_index();
    rayon::scope(|s| {
        let _release = Release(&done);
        s.spawn_broadcast(|_, ctx| {
            if Some(ctx.index()) == me {
                return;
            }
            while !done.load(Ordering::Acquire) {
                if rayon::yield_now() != Some(rayon::Yield::Executed) {
                    // hand the core to any other runnable thread (another run sharing the machine)
                    std::thread::yield_now();
                }
            }
        });
        f()
    })
}
