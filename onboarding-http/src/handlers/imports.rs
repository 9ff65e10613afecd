//! `POST /api/v1/imports`: a CSV or NDJSON file of any size, streamed into one batch.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{OriginalUri, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::StreamExt;
use onboarding_core::import::{ImportFormat, ImportOptions};
use onboarding_core::model::{ConflictPolicy, SubmitMode};
use onboarding_core::{Error, ErrorKind};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::app::{AppState, StoreStep};
use crate::extract::{SubmissionSlot, Tenant};
use crate::handlers::query;
use crate::problem::Problem;
use crate::responses::{
    IdempotencyConflict, Invalid, Malformed, RateLimited, TooLarge, Unauthorized, Unavailable,
    UnsupportedMediaType,
};

/// Header set on answers that replay an earlier request.
const REPLAYED_HEADER: &str = "idempotent-replayed";

/// Options of an import (query parameters; `Idempotency-Key` may also be a header).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ImportParams {
    /// `update` (default) or `skip`: what to do with domains that already exist.
    #[param(pattern = "^(update|skip)$")]
    on_conflict: Option<String>,
    /// `partial` (default: refused rows are listed, the rest proceeds) or `atomic` (all or nothing).
    #[param(pattern = "^(partial|atomic)$")]
    mode: Option<String>,
    /// Refuse the whole import (nothing stored) once more than this many rows are refused.
    #[param(pattern = "^[0-9]{1,18}$")]
    max_errors: Option<String>,
    /// The idempotency key, when not sent as the `Idempotency-Key` header:
    /// 1-255 visible ASCII characters, kept as long as its batch (7 days
    /// after it finished).
    #[param(pattern = "^[!-~]{1,255}$")]
    idempotency_key: Option<String>,
}

/// The answer to an accepted import.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ImportAccepted {
    /// The batch: its status at `/api/v1/batches/{batch_id}`.
    batch_id: uuid::Uuid,
    /// Always "Bulk onboarding initiated successfully".
    message: String,
    /// Organizations in the batch.
    organizations_count: u32,
    /// Rows read from the file (valid or not).
    rows_received: u64,
    /// Rows refused: listed by `/api/v1/batches/{batch_id}/results?status=rejected`.
    rows_rejected: u64,
}

/// Import organizations from a CSV or NDJSON file of any size
///
/// `text/csv`: a header row naming `name`, `domain`, `contact_email` (any
/// order; optional `external_id`; other columns ignored), RFC 4180 quoting,
/// UTF-8 with or without BOM, CRLF or LF. `application/x-ndjson`: one JSON
/// object per line with the same fields. The file is parsed, validated and
/// stored in chunks while it arrives, in bounded memory; the answer comes
/// once every row is stored, and the batch is created from them right
/// after (its status shows `receiving` with `upload.arrived` meanwhile;
/// should the server stop first, a worker creates it). Rows are numbered by line (the CSV
/// header is line 1) and become items at that position. Partial mode
/// (default): refused rows (a problem, a malformed line, a domain already
/// seen earlier in the file) are listed by the results route, the rest
/// proceeds; `max_errors` or `mode=atomic` refuse the whole import (422,
/// nothing stored). A body past the import limit (default 1 GiB) is 413, and
/// a client that goes away mid-upload leaves nothing stored. The
/// `Idempotency-Key` (header or query; draft-ietf-httpapi-idempotency-key-header)
/// lives as long as its batch (while it runs and 7 days after it finished):
/// the same key and the same file (and options) answer the first batch again
/// with `Idempotent-Replayed: true`; another file 422
/// `idempotency_key_reused`; a retry while the first upload still arrives 409.
#[utoipa::path(
    post,
    path = "/api/v1/imports",
    operation_id = "import_file",
    tag = "onboarding",
    params(
        ImportParams,
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "1-255 visible ASCII characters (draft-ietf-httpapi-idempotency-key-header). The key lives as long as its batch: while it runs and 7 days after it finished (the workers' retention), then it is free again. Same key and file → the first answer again with `Idempotent-Replayed: true`; same key, another file → 422 `idempotency_key_reused`; a retry while the first upload still arrives → 409"),
    ),
    request_body(content = String, content_type = "text/csv", description = "CSV with a header row, or NDJSON (`application/x-ndjson`)"),
    responses(
        (status = 202, description = "Every row stored; the batch is created from them and its items queued right after this answer", body = ImportAccepted,
            headers(("Location" = String, description = "The batch status URL"))),
        Malformed, Unauthorized, IdempotencyConflict, TooLarge, UnsupportedMediaType, Invalid,
        RateLimited, Unavailable,
    ),
)]
// Each argument is an axum extractor: the handler's signature is its request.
#[allow(clippy::too_many_arguments)]
#[tracing::instrument(name = "import_file", skip_all, fields(tenant = %tenant.0, batch_id = tracing::field::Empty))]
pub(crate) async fn create(
    State(state): State<AppState>,
    tenant: Tenant,
    _slot: SubmissionSlot,
    store: Option<Extension<StoreStep>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    params: Result<Query<ImportParams>, QueryRejection>,
    body: Body,
) -> Result<Response, Problem> {
    let params = query(params)?;
    let format = format_of(&headers)?;
    let options = options(format, &params, &headers)?;
    let limit = state.config().import_body_limit;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    // The upload may take longer than the request timeout: the answer is
    // the import's own outcome (its body reads have the server's idle timeout).
    if let Some(Extension(store)) = store {
        store.begin();
    }
    let mut seen = 0u64;
    let chunks = body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(|e| {
            Error::new(
                ErrorKind::Invalid,
                format!("the body could not be read: {e}"),
            )
        })?;
        seen += chunk.len() as u64;
        if seen > limit {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("the request body is larger than {limit} bytes"),
            ));
        }
        Ok::<_, Error>(chunk)
    });
    let receipt = state
        .service()
        .import(&tenant.0, options, chunks)
        .await
        .map_err(|e| state.problem(&e))?;
    tracing::Span::current().record("batch_id", tracing::field::display(receipt.batch_id));
    let prefix = uri.path().strip_suffix("/imports").unwrap_or("/api/v1");
    let body = ImportAccepted {
        batch_id: receipt.batch_id.0,
        message: crate::dto::ACCEPTED_MESSAGE.to_owned(),
        organizations_count: receipt.organizations_count,
        rows_received: receipt.rows_received,
        rows_rejected: receipt.rows_rejected,
    };
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(location) = HeaderValue::try_from(format!("{prefix}/batches/{}", receipt.batch_id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if receipt.replayed {
        response
            .headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    Ok(response)
}

fn too_large(limit: u64) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too-large",
        "Request too large",
        format!("the request body is larger than {limit} bytes"),
    )
}

/// The format the `Content-Type` names: 415 for anything but CSV and NDJSON.
fn format_of(headers: &HeaderMap) -> Result<ImportFormat, Problem> {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("<not text>"))
        .unwrap_or("");
    let mime = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "text/csv" => Ok(ImportFormat::Csv),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
            Ok(ImportFormat::Ndjson)
        }
        _ => Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            format!("the body must be text/csv or application/x-ndjson, got {raw:?}"),
        )),
    }
}

fn options(
    format: ImportFormat,
    params: &ImportParams,
    headers: &HeaderMap,
) -> Result<ImportOptions, Problem> {
    let policy = match params.on_conflict.as_deref() {
        None | Some("update") => ConflictPolicy::Update,
        Some("skip") => ConflictPolicy::Skip,
        Some(_) => {
            return Err(Problem::invalid_parameter(
                "on_conflict",
                "invalid_value",
                "on_conflict must be update or skip",
            ))
        }
    };
    let mode = match params.mode.as_deref() {
        None | Some("partial") => SubmitMode::Partial,
        Some("atomic") => SubmitMode::Atomic,
        Some(_) => {
            return Err(Problem::invalid_parameter(
                "mode",
                "invalid_value",
                "mode must be partial or atomic",
            ))
        }
    };
    let max_errors = params
        .max_errors
        .as_deref()
        .map(|raw| {
            raw.trim().parse::<u64>().map_err(|_| {
                Problem::invalid_parameter(
                    "max_errors",
                    "invalid_value",
                    "max_errors must be a non-negative integer",
                )
            })
        })
        .transpose()?;
    let header_key = headers
        .get("idempotency-key")
        .map(|v| {
            v.to_str().map(str::to_owned).map_err(|_| {
                Problem::invalid_parameter(
                    "Idempotency-Key",
                    "idempotency_key_invalid",
                    "the idempotency key must be 1-255 visible ASCII characters",
                )
            })
        })
        .transpose()?;
    Ok(ImportOptions::new(format)
        .with_policy(policy)
        .with_mode(mode)
        .with_max_errors(max_errors)
        .with_idempotency_key(header_key.or_else(|| params.idempotency_key.clone())))
}
