//! `GET /api/v1/throughput`: a tenant's finished organizations per time
//! bucket over a recent window (the dashboard chart's history).

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, TimeDelta, Utc};
use onboarding_core::model::now;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::app::AppState;
use crate::extract::{QueryParams, Tenant};
use crate::handlers::bounded;
use crate::problem::Problem;
use crate::responses::Listing;

/// Longest window: a day.
const MAX_WINDOW: u32 = 86_400;
/// Most buckets in one answer.
const MAX_BUCKETS: u32 = 3_600;

/// Query parameters of the throughput history.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ThroughputParams {
    /// Seconds back from now, 60-86400 (default 3600: the last hour).
    #[param(value_type = Option<u32>, minimum = 60, maximum = 86400)]
    window: Option<String>,
    /// Width of a bucket in seconds, 1-3600 (default 10); at most 3,600 buckets per window.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 3600)]
    bucket: Option<String>,
}

/// Organizations that finished in one bucket.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ThroughputBucketResponse {
    /// The bucket's start (a multiple of `bucket_seconds` since the Unix epoch).
    pub(crate) start: DateTime<Utc>,
    /// Organizations completed in it.
    pub(crate) completed: u64,
    /// Organizations failed in it.
    pub(crate) failed: u64,
}

/// A tenant's finished organizations per time bucket.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct ThroughputResponse {
    /// Start of the window (items that finished at or after it are counted).
    pub(crate) since: DateTime<Utc>,
    /// When it was computed.
    pub(crate) until: DateTime<Utc>,
    /// Width of each bucket.
    pub(crate) bucket_seconds: u32,
    /// Buckets with at least one finished organization, oldest first (empty ones left out).
    pub(crate) buckets: Vec<ThroughputBucketResponse>,
}

/// A tenant's completed and failed organizations per time bucket, e.g. over the last hour
///
/// Counted in the database from the items' finish times (one grouped
/// query), so the history does not depend on a page being open. The live
/// rate and the queue depth arrive every second as `stats` events of
/// `GET /api/v1/events`.
#[utoipa::path(
    get, path = "/api/v1/throughput", operation_id = "throughput", tag = "batches",
    params(ThroughputParams),
    responses((status = 200, description = "The buckets", body = ThroughputResponse), Listing),
)]
#[tracing::instrument(name = "throughput", skip_all, fields(tenant = %tenant.0))]
pub(crate) async fn throughput(
    State(state): State<AppState>,
    tenant: Tenant,
    QueryParams(params): QueryParams<ThroughputParams>,
) -> Result<Json<ThroughputResponse>, Problem> {
    let window = bounded("window", params.window.as_deref(), 3_600, 60..=MAX_WINDOW)?;
    let bucket = bounded("bucket", params.bucket.as_deref(), 10, 1..=3_600)?;
    if window.div_ceil(bucket) > MAX_BUCKETS {
        return Err(Problem::invalid_parameter(
            "bucket",
            "too_many_buckets",
            format!("window / bucket must be at most {MAX_BUCKETS}: use a wider bucket"),
        ));
    }
    let until = now();
    let since = until - TimeDelta::seconds(i64::from(window));
    let buckets = state
        .run(state.service().throughput(&tenant.0, since, bucket))
        .await?;
    Ok(Json(ThroughputResponse {
        since,
        until,
        bucket_seconds: bucket,
        buckets: buckets
            .into_iter()
            .filter_map(|b| {
                Some(ThroughputBucketResponse {
                    start: DateTime::from_timestamp(b.start, 0)?,
                    completed: b.completed,
                    failed: b.failed,
                })
            })
            .collect(),
    }))
}
