//! The axon's bounded queue, served in order of the caller's stake (first come first among
//! equals). A request that finds it full takes the place of the lowest-stake request waiting
//! (which is answered `overloaded`) when it has more stake; otherwise it is answered `backoff`.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use bt_keys::PublicKey;
use tokio::sync::oneshot;

use crate::error::{Result, WireError};
use crate::signing::Method;
use crate::tensor::{DType, Tensor};

/// What a worker sends back to the waiting handler.
pub(crate) type JobResult = Result<Vec<Tensor>>;

/// One request waiting for the model.
pub(crate) struct Job {
    pub method: Method,
    /// The authenticated caller (passed to the model when the job runs alone).
    pub caller: PublicKey,
    pub stake: u64,
    pub inputs: Vec<Tensor>,
    pub grad_outputs: Vec<Tensor>,
    /// The batch size the specs resolved (checks the outputs).
    pub batch: Option<usize>,
    pub response_dtype: DType,
    /// The caller's mask multiplier, applied to forward outputs.
    pub scale: f32,
    pub deadline: Instant,
    pub timeout_ms: u64,
    pub reply: oneshot::Sender<JobResult>,
}

impl Job {
    /// The rows this forward job contributes to a fused batch, when it can be fused: every
    /// input has the batch dimension first.
    /// The batch size: the first dimension of every input (and output gradient), if they
    /// share one.
    fn rows(&self) -> Option<usize> {
        let rows = *self.inputs.first()?.shape().first()?;
        self.inputs
            .iter()
            .chain(&self.grad_outputs)
            .all(|t| t.shape().first() == Some(&rows))
            .then_some(rows)
    }

    fn fuses_with(&self, other: &Job) -> bool {
        let alike = |a: &[Tensor], b: &[Tensor]| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(a, b)| a.dtype() == b.dtype() && a.shape()[1..] == b.shape()[1..])
        };
        other.method == self.method
            && other.rows().is_some()
            && alike(&self.inputs, &other.inputs)
            && alike(&self.grad_outputs, &other.grad_outputs)
    }
}

/// Which methods may be fused into one model call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fuse {
    pub forward: bool,
    pub backward: bool,
}

struct State {
    jobs: BTreeMap<(u64, Reverse<u64>), Job>,
    seq: u64,
    closed: bool,
}

pub(crate) struct JobQueue {
    state: Mutex<State>,
    ready: Condvar,
    capacity: usize,
}

impl JobQueue {
    pub fn new(capacity: usize) -> JobQueue {
        JobQueue {
            state: Mutex::new(State {
                jobs: BTreeMap::new(),
                seq: 0,
                closed: false,
            }),
            ready: Condvar::new(),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A worker never panics while holding the lock (model calls run outside it).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `job`; returns the depth after, or the error to answer it with.
    pub fn push(&self, job: Job) -> Result<usize> {
        let mut st = self.lock();
        if st.closed {
            return Err(WireError::NotServing {
                reason: "shutting down".into(),
            });
        }
        if st.jobs.len() >= self.capacity {
            let lowest = st.jobs.first_key_value().map(|(k, _)| k.0);
            match lowest {
                Some(low) if job.stake > low => {
                    if let Some((_, evicted)) = st.jobs.pop_first() {
                        let _ = evicted.reply.send(Err(WireError::Evicted {
                            stake: evicted.stake,
                            by: job.stake,
                        }));
                    }
                }
                _ => {
                    return Err(WireError::QueueFull {
                        depth: st.jobs.len(),
                        stake: job.stake,
                    });
                }
            }
        }
        st.seq += 1;
        let key = (job.stake, Reverse(st.seq));
        st.jobs.insert(key, job);
        let depth = st.jobs.len();
        drop(st);
        self.ready.notify_one();
        Ok(depth)
    }

    /// Blocks until work is there; returns the highest-priority job, followed by the next
    /// ones in priority order that fuse with it (the same method, when `fuse` allows it for
    /// that method; up to `max_rows` rows in all). `None` once the queue is closed and empty.
    pub fn pop(&self, fuse: Fuse, max_rows: usize) -> Option<(Vec<Job>, usize)> {
        let mut st = self.lock();
        loop {
            if let Some((_, first)) = st.jobs.pop_last() {
                let mut batch = Vec::new();
                let fusable = match first.method {
                    Method::Forward => fuse.forward,
                    Method::Backward => fuse.backward,
                };
                if fusable && let Some(mut rows) = first.rows() {
                    while let Some(entry) = st.jobs.last_entry() {
                        let next = entry.get();
                        let fits = first.fuses_with(next)
                            && next.rows().is_some_and(|r| rows + r <= max_rows);
                        if !fits {
                            break;
                        }
                        rows += next.rows().unwrap_or(0);
                        batch.push(entry.remove());
                    }
                }
                batch.insert(0, first);
                return Some((batch, st.jobs.len()));
            }
            if st.closed {
                return None;
            }
            st = self.ready.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Stops the queue: waiting jobs are answered `unavailable`, workers return.
    pub fn close(&self) {
        let mut st = self.lock();
        st.closed = true;
        for (_, job) in std::mem::take(&mut st.jobs) {
            let _ = job.reply.send(Err(WireError::NotServing {
                reason: "shutting down".into(),
            }));
        }
        drop(st);
        self.ready.notify_all();
    }

    pub fn len(&self) -> usize {
        self.lock().jobs.len()
    }
}
