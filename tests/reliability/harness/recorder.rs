//! The processor endpoint (`PROCESSOR_URL`): every call is a side effect
//! recorded with its item, attempt and time, so "exactly once" is counted,
//! not assumed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;

use super::*;

/// One processor call: one side effect.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) item_id: String,
    pub(crate) domain: String,
    pub(crate) attempt: u32,
    pub(crate) started: Instant,
    /// When the answer was sent (None: the caller went away first).
    pub(crate) ended: Option<Instant>,
    pub(crate) status: u16,
}

/// What the recorder answers to a call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) delay: Duration,
}

impl Reply {
    pub(crate) fn ok(delay: Duration) -> Self {
        Self { status: 200, delay }
    }
}

type Behavior = dyn Fn(&Call) -> Reply + Send + Sync;

struct RecorderState {
    calls: Mutex<Vec<Call>>,
    behavior: Mutex<Arc<Behavior>>,
}

/// The processor endpoint: records every call (the side effect), answers
/// as the scenario's behavior says.
#[derive(Clone)]
pub(crate) struct Recorder {
    pub(crate) url: String,
    state: Arc<RecorderState>,
}

/// Counts of side effects per item.
#[derive(Debug, Clone, Default)]
pub(crate) struct SideEffects {
    /// Calls in all.
    pub(crate) calls: usize,
    /// Items with at least one successful (2xx) call.
    pub(crate) items_done: usize,
    /// Successful calls beyond the first per item.
    pub(crate) duplicated: usize,
    /// Calls whose caller went away before the answer (killed).
    pub(crate) abandoned: usize,
}

impl Recorder {
    pub(crate) async fn start(behavior: impl Fn(&Call) -> Reply + Send + Sync + 'static) -> Self {
        let state = Arc::new(RecorderState {
            calls: Mutex::new(Vec::new()),
            behavior: Mutex::new(Arc::new(behavior)),
        });
        let app = axum::Router::new()
            .route("/process", post(record))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind recorder");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url: format!("http://{addr}/process"),
            state,
        }
    }

    pub(crate) fn set_behavior(&self, behavior: impl Fn(&Call) -> Reply + Send + Sync + 'static) {
        *lock(&self.state.behavior) = Arc::new(behavior);
    }

    pub(crate) fn calls(&self) -> Vec<Call> {
        lock(&self.state.calls).clone()
    }

    pub(crate) fn call_count(&self) -> usize {
        lock(&self.state.calls).len()
    }

    pub(crate) fn side_effects(&self) -> SideEffects {
        let calls = lock(&self.state.calls);
        let mut per_item: HashMap<&str, usize> = HashMap::new();
        let mut abandoned = 0;
        for c in calls.iter() {
            if (200..300).contains(&c.status) {
                *per_item.entry(c.item_id.as_str()).or_default() += 1;
            } else if c.ended.is_none() {
                abandoned += 1;
            }
        }
        SideEffects {
            calls: calls.len(),
            items_done: per_item.len(),
            duplicated: per_item.values().map(|n| n - 1).sum(),
            abandoned,
        }
    }

    /// Item ids with at least one successful call.
    pub(crate) fn done_items(&self) -> std::collections::HashSet<String> {
        lock(&self.state.calls)
            .iter()
            .filter(|c| (200..300).contains(&c.status))
            .map(|c| c.item_id.clone())
            .collect()
    }
}

async fn record(State(state): State<Arc<RecorderState>>, body: Bytes) -> StatusCode {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let s = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let mut call = Call {
        item_id: s("/item_id"),
        domain: s("/organization/domain"),
        attempt: v
            .pointer("/attempt")
            .and_then(Value::as_u64)
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or(0),
        started: Instant::now(),
        ended: None,
        status: 0,
    };
    let behavior = lock(&state.behavior).clone();
    let reply = behavior(&call);
    let index = {
        let mut calls = lock(&state.calls);
        calls.push(call.clone());
        calls.len() - 1
    };
    // Recorded as abandoned unless the answer goes out (a killed caller drops this future).
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    call.ended = Some(Instant::now());
    call.status = reply.status;
    lock(&state.calls)[index] = call;
    StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
