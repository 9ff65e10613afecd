//! Key names, entries and receipts of the queue.
//!
//! Keys come in groups, each in one Redis Cluster hash slot (see
//! `lua/common.lua`): the global group `{prefix}:{{prefix}}:q:*` and one
//! group per tenant, `{prefix}:{{prefix}:{tenant}}:q:*`. A hash tag in the
//! prefix itself comes first and puts every group in its slot instead.

use std::collections::BTreeMap;

use onboarding_core::{Error, Job, Receipt, Result};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The names of one queue's keys.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    /// In the order of `KEYS[1..5]` of the global scripts.
    global: [String; 5],
    /// `{prefix}:{{prefix}:`: a tenant's keys are this, the tenant id and
    /// `}:q:{name}` (the scripts on one node build them the same way).
    tenant_head: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        let global = ["rotation", "rr", "timers", "applied", "signal"]
            .map(|k| format!("{prefix}:{{{prefix}}}:q:{k}"));
        Self {
            global,
            tenant_head: format!("{prefix}:{{{prefix}:"),
        }
    }

    /// rotation, rr, timers, applied, signal.
    pub(super) fn global(&self) -> &[String; 5] {
        &self.global
    }

    /// The global `rotation` key.
    pub(super) fn rotation(&self) -> &str {
        &self.global[0]
    }

    /// The global `timers` key.
    pub(super) fn timers(&self) -> &str {
        &self.global[2]
    }

    /// The global `signal` key.
    pub(super) fn signal(&self) -> &str {
        &self.global[4]
    }

    /// The prefix of every tenant group, passed to the one-node scripts.
    pub(super) fn tenant_head(&self) -> &str {
        &self.tenant_head
    }

    /// lane, delayed, inflight, payloads, seq of `tenant`: `KEYS[1..5]` of
    /// the tenant scripts.
    pub(super) fn tenant(&self, tenant: &str) -> [String; 5] {
        ["lane", "delayed", "inflight", "payloads", "seq"]
            .map(|k| format!("{}{tenant}}}:q:{k}", self.tenant_head))
    }
}

/// The tenant of a receipt (`"<tenant> <nonce>:<n>"`); `None` for anything
/// this queue did not hand out.
pub(super) fn receipt_tenant(receipt: &str) -> Option<&str> {
    receipt
        .split_once(' ')
        .map(|(t, _)| t)
        .filter(|t| !t.is_empty())
}

/// The receipts this queue handed out, by tenant (others are ignored).
pub(super) fn by_tenant(receipts: &[Receipt]) -> BTreeMap<&str, Vec<&str>> {
    let mut by_tenant: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for receipt in receipts {
        if let Some(tenant) = receipt_tenant(&receipt.0) {
            by_tenant.entry(tenant).or_default().push(&receipt.0);
        }
    }
    by_tenant
}

/// What a queue entry holds: a unique id (so equal jobs stay distinct in
/// the delayed set) and the job.
#[derive(Serialize)]
struct EnvelopeRef<'a> {
    id: Uuid,
    job: &'a Job,
}

#[derive(Deserialize)]
struct Envelope {
    job: Job,
}

pub(super) fn encode(job: &Job) -> Result<String> {
    serde_json::to_string(&EnvelopeRef {
        id: Uuid::new_v4(),
        job,
    })
    .map_err(|e| Error::internal("cannot encode a job").with_source(e))
}

pub(super) fn decode(entry: &str) -> Option<Job> {
    serde_json::from_str::<Envelope>(entry).ok().map(|e| e.job)
}

/// `not_before` in whole milliseconds, rounded up so a job is never due early; 0 = now.
pub(super) fn due_ms(job: &Job) -> i64 {
    job.not_before.map_or(0, |t| {
        t.timestamp_micros().div_euclid(1000)
            + i64::from(t.timestamp_micros().rem_euclid(1000) != 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use onboarding_core::model::{ItemId, TenantId};

    fn job(tenant: &str) -> Job {
        Job {
            item_id: ItemId::new(),
            tenant: TenantId::parse(tenant).expect("tenant"),
            not_before: None,
        }
    }

    #[test]
    fn entries_round_trip_and_stay_distinct() {
        let j = job("acme");
        let a = encode(&j).expect("encode");
        let b = encode(&j).expect("encode");
        assert_ne!(a, b, "equal jobs must stay distinct in the delayed set");
        assert_eq!(decode(&a), Some(j));
        assert_eq!(decode("garbage"), None);
    }

    #[test]
    fn due_time_rounds_up() {
        let mut j = job("acme");
        assert_eq!(due_ms(&j), 0);
        let t = chrono::DateTime::from_timestamp_micros(1_700_000_000_000_001).expect("time");
        j.not_before = Some(t);
        assert_eq!(due_ms(&j), 1_700_000_000_001);
        let t = chrono::DateTime::from_timestamp_micros(1_700_000_000_000_000).expect("time");
        j.not_before = Some(t);
        assert_eq!(due_ms(&j), 1_700_000_000_000);
    }

    #[test]
    fn each_group_shares_one_hash_tag() {
        let k = Keys::new("p");
        for key in k.global() {
            assert!(key.starts_with("p:{p}:q:"), "{key}");
        }
        for key in k.tenant("acme") {
            assert!(key.starts_with("p:{p:acme}:q:"), "{key}");
        }
        // What the one-node scripts build from the head (lua/common.lua).
        assert_eq!(
            format!("{}acme}}:q:lane", k.tenant_head()),
            k.tenant("acme")[0]
        );
    }

    #[test]
    fn receipts_name_their_tenant() {
        assert_eq!(receipt_tenant("acme abc:1"), Some("acme"));
        assert_eq!(receipt_tenant("nope"), None);
        assert_eq!(receipt_tenant(" x"), None);
    }
}
