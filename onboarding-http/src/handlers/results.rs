//! `GET /api/v1/batches/{id}/results`: a batch's results as a CSV or NDJSON
//! file, streamed page by page (never the whole set in memory).

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, StreamExt};
use onboarding_core::import::{ImportRow, RowError};
use onboarding_core::model::{BatchId, BatchItem, ItemStatus, TenantId};
use onboarding_core::repository::ItemQuery;
use onboarding_core::OnboardingService;
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

use crate::app::AppState;
use crate::extract::TenantBatch;
use crate::handlers::{optional_param, query};
use crate::problem::Problem;
use crate::responses::ListingOf;

/// Rows read from the store per page.
const PAGE: u32 = 1_000;

/// The columns of a results file, in order.
const COLUMNS: [&str; 10] = [
    "line",
    "name",
    "domain",
    "contact_email",
    "external_id",
    "change",
    "status",
    "attempts",
    "error_code",
    "error_detail",
];

/// Query parameters of the results file.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ResultsParams {
    /// Only rows with this final status (`rejected`: the rows refused by validation); all items when absent.
    #[param(pattern = "^(completed|failed|pending|processing|cancelled|rejected)$")]
    status: Option<String>,
    /// `csv` (default) or `ndjson`.
    #[param(pattern = "^(csv|ndjson)$")]
    format: Option<String>,
}

/// One row of a results file.
#[derive(Debug, Default, Serialize)]
struct ResultRow {
    line: Option<u32>,
    name: Option<String>,
    domain: Option<String>,
    contact_email: Option<String>,
    external_id: Option<String>,
    change: Option<&'static str>,
    status: &'static str,
    attempts: u32,
    error_code: Option<String>,
    error_detail: Option<String>,
}

impl ResultRow {
    fn of_item(item: &BatchItem, staged: Option<&ImportRow>) -> Self {
        let (error_code, error_detail) = last_error(item);
        Self {
            line: staged.map(|s| s.line),
            name: staged.map(|s| s.organization.name.clone()),
            domain: Some(item.domain.to_string()),
            contact_email: staged.map(|s| s.organization.contact_email.clone()),
            external_id: staged.and_then(|s| s.external_id.clone()),
            change: Some(item.change.as_str()),
            status: item.status.as_str(),
            attempts: item.attempts,
            error_code,
            error_detail,
        }
    }

    fn of_rejection(e: RowError) -> Self {
        let (name, domain, contact_email) = match e.column.as_deref() {
            Some("name") => (e.value.clone(), None, None),
            Some("domain") => (None, e.value.clone(), None),
            Some("contact_email") => (None, None, e.value.clone()),
            _ => (None, None, None),
        };
        Self {
            line: Some(e.line),
            name,
            domain,
            contact_email,
            external_id: e.external_id,
            change: None,
            status: "rejected",
            attempts: 0,
            error_code: Some(e.code),
            error_detail: Some(match e.column {
                Some(c) => format!("{c}: {}", e.detail),
                None => e.detail,
            }),
        }
    }

    fn csv(&self) -> String {
        let fields = [
            self.line.map(|l| l.to_string()).unwrap_or_default(),
            self.name.clone().unwrap_or_default(),
            self.domain.clone().unwrap_or_default(),
            self.contact_email.clone().unwrap_or_default(),
            self.external_id.clone().unwrap_or_default(),
            self.change.unwrap_or_default().to_owned(),
            self.status.to_owned(),
            self.attempts.to_string(),
            self.error_code.clone().unwrap_or_default(),
            self.error_detail.clone().unwrap_or_default(),
        ];
        let mut line = fields
            .iter()
            .map(|f| csv_field(f))
            .collect::<Vec<_>>()
            .join(",");
        line.push_str("\r\n");
        line
    }
}

/// The last error's (code, detail), as [`split_error`] reads it; `(None, None)` without errors.
pub(crate) fn last_error(item: &BatchItem) -> (Option<String>, Option<String>) {
    item.errors
        .last()
        .map(|e| split_error(&e.message))
        .unwrap_or_default()
}

/// `code: detail` (a processor's structured error) → (code, detail); else (None, message).
fn split_error(message: &str) -> (Option<String>, Option<String>) {
    match message.split_once(": ") {
        Some((code, detail))
            if !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') =>
        {
            (Some(code.to_owned()), Some(detail.to_owned()))
        }
        _ => (None, Some(message.to_owned())),
    }
}

/// RFC 4180 quoting; a leading `=`, `+`, `-` or `@` is prefixed with `'`
/// so a spreadsheet does not run the cell as a formula.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Ndjson,
}

/// A batch's results as a file (CSV or NDJSON), streamed
///
/// One row per organization: the line of the file (imports), the submitted
/// name, domain and contact email, the `external_id`, the change, the final
/// status, attempts and the last error's code and detail. `status=rejected`
/// lists the rows an import refused (one row per problem). Read page by
/// page while it is sent.
#[utoipa::path(
    get, path = "/api/v1/batches/{id}/results", operation_id = "batch_results", tag = "batches",
    params(("id" = uuid::Uuid, Path, description = "The batch id"), ResultsParams),
    responses(
        (status = 200, description = "The file: `text/csv` (a header row, then one row per result) or `application/x-ndjson` (`format=ndjson`)",
            content((String = "text/csv"), (String = "application/x-ndjson"))),
        ListingOf,
    ),
)]
#[tracing::instrument(name = "batch_results", skip_all, fields(tenant = %batch.tenant, batch_id = %batch.id))]
pub(crate) async fn results(
    State(state): State<AppState>,
    batch: TenantBatch,
    params: Result<Query<ResultsParams>, QueryRejection>,
) -> Result<Response, Problem> {
    let params = query(params)?;
    let format = match params.format.as_deref() {
        None | Some("csv") => Format::Csv,
        Some("ndjson") => Format::Ndjson,
        Some(_) => {
            return Err(Problem::invalid_parameter(
                "format",
                "invalid_value",
                "format must be csv or ndjson",
            ))
        }
    };
    let rejected = params.status.as_deref() == Some("rejected");
    let status = optional_param(
        params.status.as_deref().filter(|_| !rejected),
        "status",
        ItemStatus::parse,
        "status must be one of completed, failed, pending, processing, cancelled, rejected",
    )?;
    let service = state.service().clone();
    let (tenant, id) = (batch.tenant, batch.id);
    // The batch must exist for this tenant (an upload still arriving has rejected rows but no batch).
    if rejected {
        service
            .rejected_rows(&tenant, id, None, 1)
            .await
            .map_err(|e| state.problem(&e))?;
    } else {
        service
            .ready_batch(&tenant, id)
            .await
            .map_err(|e| state.problem(&e))?;
    }
    let pages = stream::unfold(Some(Cursor::Start), move |cursor| {
        let (service, tenant) = (service.clone(), tenant.clone());
        async move {
            let cursor = cursor?;
            let page = if rejected {
                rejected_page(&service, &tenant, id, cursor).await
            } else {
                items_page(&service, &tenant, id, status, cursor).await
            };
            match page {
                Ok((rows, next)) => Some((Ok(render(format, &rows)), next)),
                Err(e) => {
                    // Headers are sent: the client sees a cut file (no last line ending).
                    tracing::warn!(error = %e, "results stream ended by a backend error");
                    Some((Err(std::io::Error::other(e.to_string())), None))
                }
            }
        }
    });
    let header_row = match format {
        Format::Csv => format!("{}\r\n", COLUMNS.join(",")),
        Format::Ndjson => String::new(),
    };
    let body =
        stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(header_row)) }).chain(pages);
    let content_type = match format {
        Format::Csv => "text/csv; charset=utf-8",
        Format::Ndjson => "application/x-ndjson",
    };
    let mut response = Body::from_stream(body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

#[derive(Clone, Copy)]
enum Cursor {
    Start,
    After(u32),
}

fn render(format: Format, rows: &[ResultRow]) -> Bytes {
    let mut out = String::new();
    for row in rows {
        match format {
            Format::Csv => out.push_str(&row.csv()),
            Format::Ndjson => {
                out.push_str(&serde_json::to_string(row).unwrap_or_default());
                out.push('\n');
            }
        }
    }
    Bytes::from(out)
}

async fn items_page(
    service: &OnboardingService,
    tenant: &TenantId,
    batch: BatchId,
    status: Option<ItemStatus>,
    cursor: Cursor,
) -> onboarding_core::Result<(Vec<ResultRow>, Option<Cursor>)> {
    let query = ItemQuery {
        status,
        limit: PAGE,
        after_position: match cursor {
            Cursor::Start => None,
            Cursor::After(p) => Some(p),
        },
    };
    let (items, next) = items_with_submissions(service, tenant, batch, &query).await?;
    let rows = items
        .iter()
        .map(|(item, staged)| ResultRow::of_item(item, staged.as_ref()))
        .collect();
    Ok((rows, next.map(Cursor::After)))
}

/// One page of a batch's items, each with what was submitted for it when
/// the batch is a file import (its staged row: line, name, contact email,
/// external id), and the next page's position cursor. The read path of the
/// results file and of `GET /api/v1/batches/{id}/organizations`.
pub(crate) async fn items_with_submissions(
    service: &OnboardingService,
    tenant: &TenantId,
    batch: BatchId,
    query: &ItemQuery,
) -> onboarding_core::Result<(Vec<(BatchItem, Option<ImportRow>)>, Option<u32>)> {
    let page = service.list_items(tenant, batch, query).await?;
    let positions: Vec<u32> = page.items.iter().map(|i| i.position).collect();
    let mut staged: HashMap<u32, ImportRow> = service
        .staged_rows(tenant, batch, &positions)
        .await?
        .into_iter()
        .map(|r| (r.line, r))
        .collect();
    let items = page
        .items
        .into_iter()
        .map(|i| {
            let row = staged.remove(&i.position);
            (i, row)
        })
        .collect();
    Ok((items, page.next_cursor))
}

async fn rejected_page(
    service: &OnboardingService,
    tenant: &TenantId,
    batch: BatchId,
    cursor: Cursor,
) -> onboarding_core::Result<(Vec<ResultRow>, Option<Cursor>)> {
    let after = match cursor {
        Cursor::Start => None,
        Cursor::After(line) => Some(line),
    };
    let errors = service.rejected_rows(tenant, batch, after, PAGE).await?;
    // A page ends at a line boundary: the last line's problems may continue.
    let full = errors.len() == PAGE as usize;
    let last = errors.last().map(|e| e.line);
    let mut rows: Vec<ResultRow> = Vec::with_capacity(errors.len());
    let (mut kept, mut next) = (errors, None);
    if full {
        if let Some(last) = last {
            if kept.iter().any(|e| e.line != last) {
                kept.retain(|e| e.line != last);
                next = kept.last().map(|e| Cursor::After(e.line));
            } else {
                next = Some(Cursor::After(last));
            }
        }
    }
    rows.extend(kept.into_iter().map(ResultRow::of_rejection));
    Ok((rows, next))
}
