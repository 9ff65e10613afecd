//! What this process holds of the broker's deliveries: prefetched jobs in
//! per-tenant lanes (served round-robin) and handed-out jobs with their
//! redelivery deadlines.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use onboarding_core::model::TenantId;
use onboarding_core::{Delivery, Job, Receipt};
use tokio::time::Instant;

/// A delivery tag on the consumer channel of one session.
pub(crate) type Tag = u64;

/// The local state of one session (one connection generation).
#[derive(Debug, Default)]
pub(crate) struct Local {
    /// Prefetched, not yet handed out, per tenant.
    lanes: HashMap<TenantId, VecDeque<(Tag, Job)>>,
    /// Tenants with prefetched jobs, in serving order.
    rotation: VecDeque<TenantId>,
    /// Number of prefetched jobs over all lanes.
    buffered: usize,
    /// Handed out by `dequeue`, not yet acknowledged: tag → deadline.
    in_flight: HashMap<Tag, Instant>,
}

impl Local {
    /// Adds a prefetched delivery at the back of its tenant's lane.
    pub(crate) fn push(&mut self, tag: Tag, job: Job) {
        let lane = self.lanes.entry(job.tenant.clone()).or_default();
        if lane.is_empty() {
            self.rotation.push_back(job.tenant.clone());
        }
        lane.push_back((tag, job));
        self.buffered += 1;
    }

    /// Prefetched jobs not yet handed out.
    pub(crate) fn buffered(&self) -> usize {
        self.buffered
    }

    /// Jobs handed out and not yet acknowledged.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Hands out up to `max` jobs, one tenant after another.
    pub(crate) fn take(
        &mut self,
        max: usize,
        generation: u64,
        visibility: Duration,
    ) -> Vec<Delivery> {
        let deadline = Instant::now() + visibility;
        let mut out = Vec::new();
        while out.len() < max {
            let Some(tenant) = self.rotation.pop_front() else {
                break;
            };
            let Some(lane) = self.lanes.get_mut(&tenant) else {
                continue;
            };
            let Some((tag, job)) = lane.pop_front() else {
                continue;
            };
            if lane.is_empty() {
                self.lanes.remove(&tenant);
            } else {
                self.rotation.push_back(tenant);
            }
            self.buffered -= 1;
            self.in_flight.insert(tag, deadline);
            out.push(Delivery {
                job,
                receipt: receipt(generation, tag),
            });
        }
        out
    }

    /// Forgets a handed-out delivery; `true` if it was in flight (and must
    /// now be settled with the broker exactly once).
    pub(crate) fn settle(&mut self, tag: Tag) -> bool {
        self.in_flight.remove(&tag).is_some()
    }

    /// Removes and returns the handed-out deliveries whose deadline passed.
    pub(crate) fn expire(&mut self, at: Instant) -> Vec<Tag> {
        let expired: Vec<Tag> = self
            .in_flight
            .iter()
            .filter(|(_, deadline)| **deadline <= at)
            .map(|(tag, _)| *tag)
            .collect();
        for tag in &expired {
            self.in_flight.remove(tag);
        }
        expired
    }

    /// The earliest redelivery deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.in_flight.values().min().copied()
    }
}

/// The receipt of a delivery: `{generation}:{tag}`.
pub(crate) fn receipt(generation: u64, tag: Tag) -> Receipt {
    Receipt(format!("{generation}:{tag}"))
}

/// Parses a receipt made by [`receipt`]; `None` for anything else.
pub(crate) fn parse_receipt(receipt: &Receipt) -> Option<(u64, Tag)> {
    let (generation, tag) = receipt.0.split_once(':')?;
    Some((generation.parse().ok()?, tag.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use onboarding_core::model::ItemId;

    fn job(tenant: &str) -> Job {
        Job {
            item_id: ItemId::new(),
            tenant: TenantId::parse(tenant).expect("valid tenant"),
            not_before: None,
        }
    }

    #[test]
    fn take_interleaves_tenants() {
        let mut local = Local::default();
        for tag in 1..=5 {
            local.push(tag, job("a"));
        }
        local.push(6, job("b"));
        let got = local.take(3, 1, Duration::from_secs(1));
        let tenants: Vec<&str> = got.iter().map(|d| d.job.tenant.as_str()).collect();
        assert_eq!(tenants, ["a", "b", "a"]);
        assert_eq!(local.buffered(), 3);
        assert_eq!(local.in_flight(), 3);
    }

    #[test]
    fn settle_is_once() {
        let mut local = Local::default();
        local.push(7, job("a"));
        let got = local.take(1, 3, Duration::from_secs(1));
        assert_eq!(parse_receipt(&got[0].receipt), Some((3, 7)));
        assert!(local.settle(7));
        assert!(!local.settle(7));
    }

    #[test]
    fn expire_returns_overdue_tags() {
        let mut local = Local::default();
        local.push(1, job("a"));
        local.take(1, 1, Duration::ZERO);
        assert_eq!(local.expire(Instant::now()), vec![1]);
        assert!(local.next_deadline().is_none());
        assert!(!local.settle(1));
    }

    #[test]
    fn foreign_receipts_do_not_parse() {
        assert_eq!(parse_receipt(&Receipt("x".into())), None);
        assert_eq!(parse_receipt(&Receipt("1:x".into())), None);
    }
}
