//! `MemoryQueue`: per-tenant lanes served round-robin, delayed jobs, and
//! redelivery after a visibility timeout.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::{Error, Result};
use crate::model::{now, TenantId};
use crate::queue::{Delivery, Job, JobQueue, QueueDepth, Receipt};

/// An in-process job queue. Its contents are lost with the process (the
/// sweeper re-enqueues from the repository).
#[derive(Debug)]
pub struct MemoryQueue {
    visibility_timeout: Duration,
    state: Mutex<Lanes>,
    ready: Notify,
}

#[derive(Debug, Default)]
struct Lanes {
    /// Ready jobs per tenant.
    lanes: HashMap<TenantId, VecDeque<Job>>,
    /// Tenants with ready jobs, in serving order.
    rotation: VecDeque<TenantId>,
    /// Jobs waiting for `not_before`, keyed by (due time, sequence).
    delayed: BTreeMap<(chrono::DateTime<chrono::Utc>, u64), Job>,
    /// Delivered, not yet acknowledged: receipt → (job, redelivery deadline).
    in_flight: HashMap<u64, (Job, Instant)>,
    next_seq: u64,
}

impl Lanes {
    fn push_ready(&mut self, job: Job, front: bool) {
        let lane = self.lanes.entry(job.tenant.clone()).or_default();
        if lane.is_empty() {
            self.rotation.push_back(job.tenant.clone());
        }
        if front {
            lane.push_front(job);
        } else {
            lane.push_back(job);
        }
    }

    /// Moves due delayed jobs and expired deliveries to the ready lanes.
    fn promote(&mut self, at: Instant) {
        let wall = now();
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > wall {
                break;
            }
            let job = entry.remove();
            self.push_ready(job, false);
        }
        let expired: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= at)
            .map(|(k, _)| *k)
            .collect();
        for key in expired {
            if let Some((job, _)) = self.in_flight.remove(&key) {
                self.push_ready(job, true);
            }
        }
    }

    /// The next moment something becomes ready without an enqueue.
    fn next_wake(&self) -> Option<Instant> {
        let delayed = self.delayed.keys().next().map(|(due, _)| {
            let wait = (*due - now()).to_std().unwrap_or(Duration::ZERO);
            Instant::now() + wait
        });
        let redelivery = self.in_flight.values().map(|(_, d)| *d).min();
        match (delayed, redelivery) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn take(&mut self, max: usize, visibility: Duration) -> Vec<Delivery> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(tenant) = self.rotation.pop_front() else {
                break;
            };
            let Some(lane) = self.lanes.get_mut(&tenant) else {
                continue;
            };
            let Some(job) = lane.pop_front() else {
                continue;
            };
            if lane.is_empty() {
                self.lanes.remove(&tenant);
            } else {
                self.rotation.push_back(tenant);
            }
            self.next_seq += 1;
            let seq = self.next_seq;
            self.in_flight
                .insert(seq, (job.clone(), Instant::now() + visibility));
            out.push(Delivery {
                job,
                receipt: Receipt(seq.to_string()),
            });
        }
        out
    }
}

impl MemoryQueue {
    /// A queue that redelivers unacknowledged jobs after `visibility_timeout`.
    pub fn new(visibility_timeout: Duration) -> Self {
        Self {
            visibility_timeout,
            state: Mutex::new(Lanes::default()),
            ready: Notify::new(),
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Lanes>> {
        self.state
            .lock()
            .map_err(|_| Error::internal("memory queue lock poisoned by a panic"))
    }
}

impl Default for MemoryQueue {
    /// Redelivers after 30 seconds.
    fn default() -> Self {
        Self::new(Duration::from_secs(30))
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn enqueue(&self, jobs: &[Job]) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        {
            let mut st = self.lock()?;
            let wall = now();
            for job in jobs {
                match job.not_before {
                    Some(due) if due > wall => {
                        st.next_seq += 1;
                        let seq = st.next_seq;
                        st.delayed.insert((due, seq), job.clone());
                    }
                    _ => st.push_ready(job.clone(), false),
                }
            }
        }
        // Wake every waiting consumer: each takes what it can.
        self.ready.notify_waiters();
        Ok(())
    }

    async fn dequeue(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        let deadline = Instant::now() + wait;
        loop {
            // Register interest before looking, so an enqueue in between is not missed.
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wake = {
                let mut st = self.lock()?;
                st.promote(Instant::now());
                let got = st.take(max.max(1), self.visibility_timeout);
                if !got.is_empty() {
                    return Ok(got);
                }
                st.next_wake()
            };
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let until = wake.map_or(deadline, |w| w.min(deadline));
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }

    async fn ack(&self, receipts: &[Receipt]) -> Result<()> {
        let mut st = self.lock()?;
        for receipt in receipts {
            if let Ok(seq) = receipt.0.parse::<u64>() {
                st.in_flight.remove(&seq);
            }
        }
        Ok(())
    }

    async fn depth(&self) -> Result<QueueDepth> {
        let mut st = self.lock()?;
        st.promote(Instant::now());
        Ok(QueueDepth {
            ready: st.lanes.values().map(|l| l.len() as u64).sum(),
            delayed: st.delayed.len() as u64,
            in_flight: st.in_flight.len() as u64,
        })
    }

    async fn ping(&self) -> Result<()> {
        self.lock().map(|_| ())
    }
}
