//! A few threads for the curve arithmetic of a loop that must not wait on it (the coordinator's
//! aggregations), taking the jobs of different keys in turn, so that one busy key does not
//! stall the others.
//!
//! Jobs are queued per key; a worker takes the next job of the key whose turn it is, and a key
//! with more jobs goes to the back of the turns. So a key with a thousand jobs queued delays a
//! job of another key by at most one job per worker, where a first-in-first-out queue would
//! make it wait for all thousand. Each result goes to the owner's loop through an unbounded
//! channel (a worker never waits on the loop). A job that panics loses only its own result
//! (logged): its caller's deadline deals with it, and the worker goes on.
//!
//! The queue is as long as the owner makes it: the coordinator queues one job per signing
//! attempt whose t shares are all in, so it holds no more than the signatures the signers are
//! making, under their own limits (rate, open sessions, pooled nonces).

use std::collections::{BTreeMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use tokio::sync::mpsc::UnboundedSender;

/// Jobs queued per key, taken key by key in turn.
pub struct FairQueue<K, J> {
    jobs: BTreeMap<K, VecDeque<J>>,
    /// The keys with jobs, in the order they take their next turn.
    turns: VecDeque<K>,
    len: usize,
}

impl<K: Ord + Clone, J> Default for FairQueue<K, J> {
    fn default() -> Self {
        FairQueue {
            jobs: BTreeMap::new(),
            turns: VecDeque::new(),
            len: 0,
        }
    }
}

impl<K: Ord + Clone, J> FairQueue<K, J> {
    /// Queues `job` behind `key`'s other jobs; a key without jobs takes the last turn.
    pub fn push(&mut self, key: K, job: J) {
        let jobs = self.jobs.entry(key.clone()).or_default();
        if jobs.is_empty() {
            self.turns.push_back(key);
        }
        jobs.push_back(job);
        self.len += 1;
    }

    /// The next job of the key whose turn it is; that key, if it has more, goes to the back.
    pub fn pop(&mut self) -> Option<(K, J)> {
        let key = self.turns.pop_front()?;
        let jobs = self.jobs.get_mut(&key)?;
        let job = jobs.pop_front()?;
        if jobs.is_empty() {
            self.jobs.remove(&key);
        } else {
            self.turns.push_back(key.clone());
        }
        self.len -= 1;
        Some((key, job))
    }

    /// How many jobs are queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no job is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

type Job<T> = Box<dyn FnOnce() -> T + Send>;

struct Queue<K, T> {
    jobs: FairQueue<K, Job<T>>,
    closed: bool,
}

struct Shared<K, T> {
    queue: Mutex<Queue<K, T>>,
    work: Condvar,
    results: UnboundedSender<T>,
}

impl<K, T> Shared<K, T> {
    /// The queue (a worker that panicked holding the lock left it consistent: it only pops).
    fn queue(&self) -> MutexGuard<'_, Queue<K, T>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A fixed number of threads running jobs of type `FnOnce() -> T`, queued by key `K` and taken
/// in turn ([`FairQueue`]); results go to the channel given at the start. Dropping the pool
/// lets the workers finish the job in hand, drops the rest, and joins them.
pub struct WorkerPool<K: Ord + Clone + Send + 'static, T: Send + 'static> {
    shared: Arc<Shared<K, T>>,
    threads: Vec<JoinHandle<()>>,
}

impl<K: Ord + Clone + Send + 'static, T: Send + 'static> WorkerPool<K, T> {
    /// Starts `threads` workers (at least one) named `name`, sending every result to
    /// `results`.
    pub fn start(threads: usize, name: &str, results: UnboundedSender<T>) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: FairQueue::default(),
                closed: false,
            }),
            work: Condvar::new(),
            results,
        });
        let mut pool = WorkerPool {
            shared,
            threads: Vec::new(),
        };
        for number in 0..threads.max(1) {
            let shared = Arc::clone(&pool.shared);
            let thread = std::thread::Builder::new()
                .name(format!("{name}-{number}"))
                .spawn(move || work(&shared))?;
            pool.threads.push(thread);
        }
        Ok(pool)
    }

    /// Queues `job` for `key`.
    pub fn submit(&self, key: K, job: impl FnOnce() -> T + Send + 'static) {
        self.shared.queue().jobs.push(key, Box::new(job));
        self.shared.work.notify_one();
    }

    /// How many jobs wait for a worker.
    pub fn queued(&self) -> usize {
        self.shared.queue().jobs.len()
    }
}

impl<K: Ord + Clone + Send + 'static, T: Send + 'static> Drop for WorkerPool<K, T> {
    fn drop(&mut self) {
        self.shared.queue().closed = true;
        self.shared.work.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A worker: the next job in turn, until the pool closes.
fn work<K: Ord + Clone, T>(shared: &Shared<K, T>) {
    loop {
        let job = {
            let mut queue = shared.queue();
            loop {
                if queue.closed {
                    return;
                }
                if let Some((_, job)) = queue.jobs.pop() {
                    break job;
                }
                queue = shared
                    .work
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        match catch_unwind(AssertUnwindSafe(job)) {
            Ok(result) => {
                // The owner stopped listening: it is shutting down.
                let _ = shared.results.send(result);
            }
            Err(_) => tracing::error!("a worker's job panicked; its result is lost"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn the_queue_takes_keys_in_turn() {
        let mut queue = FairQueue::default();
        for job in ["a1", "a2", "a3"] {
            queue.push('a', job);
        }
        queue.push('b', "b1");
        queue.push('c', "c1");
        queue.push('b', "b2");
        assert_eq!(queue.len(), 6);
        let order: Vec<&str> = std::iter::from_fn(|| queue.pop().map(|(_, job)| job)).collect();
        assert_eq!(order, ["a1", "b1", "c1", "a2", "b2", "a3"]);
        assert!(queue.is_empty());
        // A key that ran out takes the last turn when it comes back.
        queue.push('b', "b3");
        queue.push('a', "a4");
        assert_eq!(queue.pop(), Some(('b', "b3")));
        assert_eq!(queue.pop(), Some(('a', "a4")));
        assert_eq!(queue.pop(), None);
    }

    /// One worker, held on a first job of key A while 50 more of A and one of B are queued:
    /// B's job runs third, not last.
    #[test]
    fn one_busy_key_does_not_stall_another() {
        let (results, mut done) = tokio::sync::mpsc::unbounded_channel();
        let pool = WorkerPool::start(1, "test-worker", results).unwrap();
        let (release, held) = mpsc::channel::<()>();
        let (started, running) = mpsc::channel::<()>();
        pool.submit('a', move || {
            started.send(()).unwrap();
            held.recv_timeout(Duration::from_secs(10)).unwrap();
            "a0".to_string()
        });
        running.recv_timeout(Duration::from_secs(10)).unwrap();
        for n in 1..=50 {
            pool.submit('a', move || format!("a{n}"));
        }
        pool.submit('b', || "b".to_string());
        assert_eq!(pool.queued(), 51);
        release.send(()).unwrap();
        let mut order = Vec::new();
        while order.len() < 52 {
            order.push(done.blocking_recv().unwrap());
        }
        assert_eq!(order[..3], ["a0", "a1", "b"]);
        let a: Vec<String> = (0..=50).map(|n| format!("a{n}")).collect();
        let rest: Vec<String> = order.iter().filter(|j| *j != "b").cloned().collect();
        assert_eq!(rest, a, "key A's jobs run in the order queued");
    }

    #[test]
    fn a_job_that_panics_loses_only_its_result() {
        let (results, mut done) = tokio::sync::mpsc::unbounded_channel();
        let pool = WorkerPool::start(1, "test-worker", results).unwrap();
        pool.submit(1, || -> u32 { panic!("a job's bug") });
        pool.submit(1, || 7);
        assert_eq!(done.blocking_recv(), Some(7));
        drop(pool);
        assert_eq!(
            done.blocking_recv(),
            None,
            "the workers ended with the pool"
        );
    }
}
