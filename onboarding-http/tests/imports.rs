//! `POST /api/v1/imports`: real uploads over HTTP against SQLite and
//! PostgreSQL, bad input, limits, modes, and a client that goes away.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use axum::Router;
use common::*;
use futures::StreamExt;
use onboarding_core::memory::{MemoryCache, TracingEventSink};
use onboarding_core::model::{BatchId, ItemStatus};
use onboarding_core::repository::ItemQuery;
use onboarding_core::testing::eventually;
use onboarding_core::{
    Backends, IngestConfig, NoopProcessor, OnboardingService, Worker, WorkerConfig,
};
use onboarding_http::{router, ServeConfig};
use onboarding_sqlx::testing::TestDatabase;
use onboarding_sqlx::{Engine, SqlOptions};
use tokio::io::AsyncWriteExt;

fn upload(uri: &str, key: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", content_type)
        .body(body.into())
        .unwrap()
}

/// The status of an import's batch, once created (right after the 202).
async fn batch_of(service: &OnboardingService, id: BatchId) -> onboarding_core::model::BatchStatus {
    let acme = tenant("acme");
    eventually("the import's batch", Duration::from_secs(60), || {
        service.batch_status(&acme, id)
    })
    .await
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(onboarding_http::serve(
        listener,
        app,
        ServeConfig::default(),
        std::future::pending(),
    ));
    addr
}

fn csv_rows(prefix: &str, lines: std::ops::Range<usize>) -> String {
    lines
        .map(|i| {
            format!("{prefix} {i},{prefix}{i}.example.com,admin@{prefix}{i}.example.com,ext-{i}\n")
        })
        .collect()
}

#[tokio::test]
async fn csv_import_is_one_batch_with_rejected_rows_listed() {
    let (app, service) = app();
    let body = "\u{feff}extra,name,domain,contact_email,external_id\r\n\
         x,Acme,ACME.com,a@acme.com,A1\r\n\
         x,,bad domain,nope,A2\r\n\
         x,Acme again,acme.com,b@acme.com,A3\r\n\
         x,\"Globex, \"\"Inc\"\"\",globex.com,g@globex.com,\r\n";
    let answer = send(&app, upload("/api/v1/imports", ACME_KEY, "text/csv", body)).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert_eq!(answer.body["organizations_count"], 2);
    assert_eq!(answer.body["rows_received"], 4);
    assert_eq!(answer.body["rows_rejected"], 2);
    let id: BatchId = answer.body["batch_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        answer.header("location").unwrap(),
        format!("/api/v1/batches/{id}")
    );
    let status = batch_of(&service, id).await;
    assert_eq!(status.batch.total, 2);
    let rejected = service
        .rejected_rows(&tenant("acme"), id, None, 100)
        .await
        .unwrap();
    let got: Vec<(u32, Option<&str>, &str)> = rejected
        .iter()
        .map(|r| (r.line, r.column.as_deref(), r.code.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (3, Some("name"), "name_empty"),
            (3, Some("domain"), "domain_invalid"),
            (3, Some("contact_email"), "email_invalid"),
            (4, Some("domain"), "domain_duplicate"),
        ]
    );
    assert!(rejected[3].detail.contains("line 2"));
    assert_eq!(rejected[3].external_id.as_deref(), Some("A3"));
    // The results as files.
    let file = send(
        &app,
        request(
            Method::GET,
            &format!("/api/v1/batches/{id}/results?status=rejected"),
            Some(ACME_KEY),
            None,
        ),
    )
    .await;
    assert_eq!(file.status, 200);
    assert_eq!(file.header("content-type"), Some("text/csv; charset=utf-8"));
    let text = String::from_utf8(file.raw.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "line,name,domain,contact_email,external_id,change,status,attempts,error_code,error_detail"
    );
    assert_eq!(lines.len(), 5, "{text}");
    assert!(
        lines[2].starts_with("3,,bad domain,,A2,,rejected,0,domain_invalid,"),
        "{}",
        lines[2]
    );
    assert!(
        lines[4].starts_with("4,,acme.com,,A3,,rejected,0,domain_duplicate,"),
        "{}",
        lines[4]
    );
    let file = send(
        &app,
        request(
            Method::GET,
            &format!("/api/v1/batches/{id}/results?format=ndjson"),
            Some(ACME_KEY),
            None,
        ),
    )
    .await;
    assert_eq!(file.status, 200);
    let rows: Vec<serde_json::Value> = String::from_utf8(file.raw.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["line"], 2);
    assert_eq!(rows[0]["name"], "Acme");
    assert_eq!(rows[0]["external_id"], "A1");
    assert_eq!(rows[0]["status"], "pending");
    assert_eq!(rows[0]["change"], "created");
    assert_eq!(rows[1]["name"], "Globex, \"Inc\"");
    // The JSON results carry the same fields, with the same values.
    let page = send(
        &app,
        request(
            Method::GET,
            &format!("/api/v1/batches/{id}/organizations"),
            Some(ACME_KEY),
            None,
        ),
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let items = page.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    for (item, row) in items.iter().zip(&rows) {
        for field in row.as_object().unwrap().keys() {
            assert_eq!(item[field], row[field], "{field}: {item} vs {row}");
        }
    }
    assert_eq!(items[0]["line"], 2);
    assert_eq!(items[0]["name"], "Acme");
    assert_eq!(items[0]["contact_email"], "a@acme.com");
    assert_eq!(items[0]["external_id"], "A1");
    assert_eq!(items[0]["domain"], "acme.com");
    assert_eq!(items[0]["change"], "created");
    assert_eq!(items[0]["status"], "pending");
    assert_eq!(items[0]["attempts"], 0);
    assert_eq!(items[0]["error_code"], serde_json::Value::Null);
    assert_eq!(items[0]["error_detail"], serde_json::Value::Null);
    assert_eq!(items[1]["line"], 5);
    assert_eq!(items[1]["name"], "Globex, \"Inc\"");
    assert_eq!(items[1]["contact_email"], "g@globex.com");
    assert_eq!(items[1]["external_id"], serde_json::Value::Null);
    let file = send(
        &app,
        request(
            Method::GET,
            &format!("/api/v1/batches/{id}/results?status=completed"),
            Some(ACME_KEY),
            None,
        ),
    )
    .await;
    assert_eq!(String::from_utf8(file.raw).unwrap().lines().count(), 1);
    for bad in ["status=done", "format=xml"] {
        send(
            &app,
            request(
                Method::GET,
                &format!("/api/v1/batches/{id}/results?{bad}"),
                Some(ACME_KEY),
                None,
            ),
        )
        .await
        .assert_problem(422);
    }
    send(
        &app,
        request(
            Method::GET,
            &format!("/api/v1/batches/{id}/results"),
            Some(GLOBEX_KEY),
            None,
        ),
    )
    .await
    .assert_problem(404);
    // Another tenant sees nothing of it.
    assert!(service
        .rejected_rows(&tenant("globex"), id, None, 100)
        .await
        .is_err());
}

#[tokio::test]
async fn ndjson_import() {
    let (app, service) = app();
    let body = "{\"name\":\"A\",\"domain\":\"a-ndjson.com\",\"contact_email\":\"a@a.com\",\"external_id\":\"x1\"}\n\
                not json\n\
                {\"name\":\"B\",\"domain\":\"b-ndjson.com\",\"contact_email\":\"b@b.com\"}\n";
    let answer = send(
        &app,
        upload("/api/v1/imports", ACME_KEY, "application/x-ndjson", body),
    )
    .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert_eq!(answer.body["organizations_count"], 2);
    let id: BatchId = answer.body["batch_id"].as_str().unwrap().parse().unwrap();
    let rejected = service
        .rejected_rows(&tenant("acme"), id, None, 100)
        .await
        .unwrap();
    assert_eq!(rejected[0].line, 2);
    assert_eq!(rejected[0].code, "invalid_json");
}

#[tokio::test]
async fn bad_uploads_are_refused_and_store_nothing() {
    let (app, service) = app();
    let acme = tenant("acme");
    // Not CSV / NDJSON.
    let answer = send(
        &app,
        upload("/api/v1/imports", ACME_KEY, "application/json", "{}"),
    )
    .await;
    answer.assert_problem(415);
    let answer = send(&app, upload("/api/v1/imports", ACME_KEY, "", "name\n")).await;
    answer.assert_problem(415);
    // Missing columns, named.
    let answer = send(
        &app,
        upload(
            "/api/v1/imports",
            ACME_KEY,
            "text/csv",
            "name,email\nA,a@b.com\n",
        ),
    )
    .await;
    answer.assert_problem(422);
    assert_eq!(answer.codes(), vec!["missing_columns"]);
    assert!(answer.body["errors"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("domain, contact_email"));
    // Atomic mode: one bad row refuses everything.
    let body = format!(
        "name,domain,contact_email\n{}x,,\n",
        csv_rows("atomic", 0..3)
            .replace(",ext-0", "")
            .replace(",ext-1", "")
            .replace(",ext-2", "")
    );
    let answer = send(
        &app,
        upload("/api/v1/imports?mode=atomic", ACME_KEY, "text/csv", body),
    )
    .await;
    answer.assert_problem(422);
    assert!(
        answer.pointers().contains(&"/lines/5/domain".to_owned()),
        "{:?}",
        answer.pointers()
    );
    let org = service
        .organization(&tenant("acme"), "atomic0.example.com")
        .await;
    assert!(org.is_err(), "{org:?}");
    // max_errors: past it, nothing stored.
    let body = "name,domain,contact_email\nA,maxerr-a.com,a@a.com\n,,\n,,\n";
    let answer = send(
        &app,
        upload("/api/v1/imports?max_errors=1", ACME_KEY, "text/csv", body),
    )
    .await;
    answer.assert_problem(422);
    assert!(service
        .organization(&tenant("acme"), "maxerr-a.com")
        .await
        .is_err());
    let answer = send(
        &app,
        upload("/api/v1/imports?max_errors=2", ACME_KEY, "text/csv", body),
    )
    .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    // No valid row.
    let answer = send(
        &app,
        upload(
            "/api/v1/imports",
            ACME_KEY,
            "text/csv",
            "name,domain,contact_email\n,,\n",
        ),
    )
    .await;
    answer.assert_problem(422);
    // Bad options.
    for query in ["on_conflict=merge", "mode=some", "max_errors=-1"] {
        let answer = send(
            &app,
            upload(
                &format!("/api/v1/imports?{query}"),
                ACME_KEY,
                "text/csv",
                "name,domain,contact_email\n",
            ),
        )
        .await;
        answer.assert_problem(422);
    }
    // Unauthenticated.
    let answer = send(&app, upload("/api/v1/imports", "nope", "text/csv", "x")).await;
    answer.assert_problem(401);
    let _ = acme;
}

#[tokio::test]
async fn past_the_import_limit_is_413_and_nothing_is_stored() {
    let service = memory_service();
    let app = router(service.clone(), config().import_body_limit(2_000).build());
    let body = format!(
        "name,domain,contact_email\n{}",
        csv_rows("limit", 0..200).replace(",ext-", ",e")
    );
    let body = body
        .lines()
        .map(|l| l.rsplit_once(",e").map_or(l, |(a, _)| a).to_owned() + "\n")
        .collect::<String>();
    assert!(body.len() > 2_000);
    // Declared too large: refused before reading.
    let answer = send(
        &app,
        upload("/api/v1/imports", ACME_KEY, "text/csv", body.clone()),
    )
    .await;
    answer.assert_problem(413);
    // Streamed without a length: refused when the limit is passed.
    let chunks: Vec<Result<String, std::io::Error>> = body
        .as_bytes()
        .chunks(500)
        .map(|c| Ok(String::from_utf8(c.to_vec()).unwrap()))
        .collect();
    let stream = Body::from_stream(futures::stream::iter(chunks));
    let answer = send(
        &app,
        upload("/api/v1/imports", ACME_KEY, "text/csv", stream),
    )
    .await;
    answer.assert_problem(413);
    assert!(service
        .organization(&tenant("acme"), "limit0.example.com")
        .await
        .is_err());
    // The JSON limit is not the import limit: a file larger than 2 MiB passes.
    let (app, _) = app_with_default_limits();
    let big = format!("name,domain,contact_email\n{}", csv_rows("big", 0..40_000));
    assert!(big.len() > 2 * 1024 * 1024);
    let answer = send(&app, upload("/api/v1/imports", ACME_KEY, "text/csv", big)).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert_eq!(answer.body["organizations_count"], 40_000);
}

fn app_with_default_limits() -> (Router, OnboardingService) {
    app()
}

#[tokio::test]
async fn idempotent_imports_replay_and_conflict() {
    let (app, service) = app();
    let body = format!(
        "name,domain,contact_email,external_id\n{}",
        csv_rows("idem", 0..3)
    );
    let first = send(
        &app,
        upload(
            "/api/v1/imports?idempotency_key=imp-1",
            ACME_KEY,
            "text/csv",
            body.clone(),
        ),
    )
    .await;
    assert_eq!(first.status, 202);
    // A retry while the first import's batch is being created is a 409; once it exists, the replay.
    let first_id: BatchId = first.body["batch_id"].as_str().unwrap().parse().unwrap();
    batch_of(&service, first_id).await;
    let mut again = upload("/api/v1/imports", ACME_KEY, "text/csv", body.clone());
    again
        .headers_mut()
        .insert("idempotency-key", "imp-1".parse().unwrap());
    let again = send(&app, again).await;
    assert_eq!(again.status, 202);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body["batch_id"], first.body["batch_id"]);
    let other = send(
        &app,
        upload(
            "/api/v1/imports?idempotency_key=imp-1",
            ACME_KEY,
            "text/csv",
            format!(
                "name,domain,contact_email,external_id\n{}",
                csv_rows("idem-other", 0..3)
            ),
        ),
    )
    .await;
    other.assert_problem(422);
    assert_eq!(other.codes(), vec!["idempotency_key_reused"]);
    assert_eq!(other.body["errors"][0]["parameter"], "Idempotency-Key");
}

/// draft-ietf-httpapi-idempotency-key-header on the import route: a retry
/// while the first upload still arrives is 409 (and disturbs nothing); once
/// the first is answered, the same file replays its answer with
/// `Idempotent-Replayed: true` and another file is 422.
async fn import_idempotency_follows_the_draft(service: OnboardingService) {
    let app = router(service.clone(), config().build());
    let head = "name,domain,contact_email,external_id\n".to_owned();
    let rest = csv_rows("draft", 0..3);
    let (begun_tx, begun_rx) = tokio::sync::oneshot::channel::<()>();
    let (gate_tx, gate_rx) = tokio::sync::oneshot::channel::<()>();
    // The handler opens the upload (taking the key) before it reads the
    // body: the stream is asked for its second chunk only after that.
    let gated = futures::stream::once(futures::future::ready(Ok::<_, std::io::Error>(
        head.clone(),
    )))
    .chain(futures::stream::once({
        let rest = rest.clone();
        async move {
            let _ = begun_tx.send(());
            let _ = gate_rx.await;
            Ok(rest)
        }
    }));
    let first = tokio::spawn({
        let app = app.clone();
        async move {
            let mut request = upload(
                "/api/v1/imports",
                ACME_KEY,
                "text/csv",
                Body::from_stream(gated),
            );
            request
                .headers_mut()
                .insert("idempotency-key", "draft-1".parse().unwrap());
            send(&app, request).await
        }
    });
    begun_rx.await.unwrap();
    let whole = format!("{head}{rest}");
    let keyed = |body: String| {
        let mut request = upload("/api/v1/imports", ACME_KEY, "text/csv", body);
        request
            .headers_mut()
            .insert("idempotency-key", "draft-1".parse().unwrap());
        request
    };
    let busy = send(&app, keyed(whole.clone())).await;
    busy.assert_problem(409);
    assert_eq!(busy.header("idempotent-replayed"), None);
    // A JSON submission under the key of the upload in progress is the
    // same request in progress too: 409, nothing stored.
    let mut json = request(
        Method::POST,
        "/api/v1/bulk-onboard",
        Some(ACME_KEY),
        Some(serde_json::to_vec(&orgs(1)).unwrap()),
    );
    json.headers_mut()
        .insert("idempotency-key", "draft-1".parse().unwrap());
    let busy_json = send(&app, json).await;
    busy_json.assert_problem(409);
    assert!(service
        .organization(&tenant("acme"), "org0.com")
        .await
        .is_err());
    gate_tx.send(()).unwrap();
    let first = first.await.unwrap();
    assert_eq!(first.status, 202, "{}", first.body);
    assert_eq!(first.header("idempotent-replayed"), None);
    assert_eq!(first.body["organizations_count"], 3);
    // The batch is created right after the answer; then a retry replays it.
    let first_id: BatchId = first.body["batch_id"].as_str().unwrap().parse().unwrap();
    let acme = tenant("acme");
    eventually("the first import's batch", Duration::from_secs(60), || {
        service.batch_status(&acme, first_id)
    })
    .await;
    let again = send(&app, keyed(whole.clone())).await;
    assert_eq!(again.status, 202, "{}", again.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, first.body, "the first answer, replayed");
    assert_eq!(again.header("location"), first.header("location"));
    let other = send(
        &app,
        keyed(format!("{head}{}", csv_rows("draft-other", 0..2))),
    )
    .await;
    other.assert_problem(422);
    assert_eq!(other.codes(), vec!["idempotency_key_reused"]);
    assert_eq!(other.body["errors"][0]["parameter"], "Idempotency-Key");
    assert!(service
        .organization(&tenant("acme"), "draft-other0.example.com")
        .await
        .is_err());
}

#[tokio::test]
async fn import_idempotency_follows_the_draft_on_memory() {
    import_idempotency_follows_the_draft(memory_service()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_idempotency_follows_the_draft_on_sqlite() {
    on_engine(Engine::Sqlite, import_idempotency_follows_the_draft).await;
}

/// While the body arrives, the upload is listed first by `GET
/// /api/v1/batches` (state `receiving`) and `GET /api/v1/batches/{id}`
/// shows its rows received and stored so far; once stored, the status
/// is the batch's (percent, ETA) with the upload's final counters.
async fn progress_is_visible_while_uploading(service: OnboardingService) {
    let app = router(service.clone(), config().build());
    let (chunks, body) = futures::channel::mpsc::unbounded::<Result<String, std::io::Error>>();
    let head = "name,domain,contact_email,external_id\n";
    // More than one staging chunk (5,000 rows), and a bad row.
    chunks
        .unbounded_send(Ok(format!("{head}{}", csv_rows("slow", 0..5_500))))
        .unwrap();
    chunks
        .unbounded_send(Ok("Bad,not a domain,x,\n".to_owned()))
        .unwrap();
    let first = tokio::spawn({
        let app = app.clone();
        async move {
            send(
                &app,
                upload(
                    "/api/v1/imports",
                    ACME_KEY,
                    "text/csv",
                    Body::from_stream(body),
                ),
            )
            .await
        }
    });
    // The client finds the upload in the listing, then follows its status.
    let id = eventually(
        "the upload listed as receiving",
        Duration::from_secs(30),
        || {
            let app = app.clone();
            async move {
                let page = get(&app, "/api/v1/batches", Some(ACME_KEY)).await;
                let first = page.body["data"][0].clone();
                (first["state"] == "receiving")
                    .then(|| first["batch_id"].as_str().map(str::to_owned))
                    .flatten()
            }
        },
    )
    .await;
    // Filtered by its state, the listing holds the upload alone.
    let receiving = get(&app, "/api/v1/batches?state=receiving", Some(ACME_KEY)).await;
    assert_eq!(receiving.status, 200, "{}", receiving.body);
    assert_eq!(receiving.body["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(receiving.body["data"][0]["batch_id"], id.as_str());
    let uri = format!("/api/v1/batches/{id}");
    let seen = eventually(
        "5,000 rows stored while uploading",
        Duration::from_secs(30),
        || {
            let (app, uri) = (app.clone(), uri.clone());
            async move {
                let status = get(&app, &uri, Some(ACME_KEY)).await;
                let stored = status.body["upload"]["rows_stored"].as_u64().unwrap_or(0);
                if stored >= 5_000 {
                    Ok(status)
                } else {
                    Err(status.body)
                }
            }
        },
    )
    .await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert_eq!(seen.body["state"], "receiving");
    assert_eq!(seen.body["upload"]["stored"], false);
    assert_eq!(seen.body["percent"], 0.0);
    assert!(seen.body["eta_seconds"].is_null());
    assert_eq!(seen.body["mode"], "partial");
    let received = seen.body["upload"]["rows_received"].as_u64().unwrap();
    assert!((5_000..5_502).contains(&received), "{}", seen.body);
    // The rest arrives: the answer, then the batch's own status.
    chunks
        .unbounded_send(Ok(csv_rows("slow", 5_500..6_000)))
        .unwrap();
    drop(chunks);
    let answer = first.await.unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert_eq!(answer.body["batch_id"], id.as_str());
    // Answered once every row is staged; the batch is created right after.
    let done = eventually("the import's batch", Duration::from_secs(60), || {
        let (app, uri) = (app.clone(), uri.clone());
        async move {
            let status = get(&app, &uri, Some(ACME_KEY)).await;
            if status.body["upload"]["stored"] == true {
                Ok(status)
            } else {
                assert_eq!(status.body["upload"]["arrived"], true, "{}", status.body);
                Err(status.body)
            }
        }
    })
    .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_ne!(done.body["state"], "receiving");
    assert_eq!(done.body["total"], 6_000);
    assert_eq!(done.body["upload"]["rows_received"], 6_001);
    assert_eq!(done.body["upload"]["rows_rejected"], 1);
    assert!(done.body["percent"].is_number());
}

#[tokio::test]
async fn progress_is_visible_while_uploading_on_memory() {
    progress_is_visible_while_uploading(memory_service()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_visible_while_uploading_on_sqlite() {
    on_engine(Engine::Sqlite, progress_is_visible_while_uploading).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_is_visible_while_uploading_on_postgres() {
    on_engine(Engine::Postgres, progress_is_visible_while_uploading).await;
}

/// A client that goes away mid-upload leaves nothing: the upload is
/// discarded (its idempotency key is free again, no organization of it
/// exists) and the server goes on serving.
async fn disconnect_mid_upload_keeps_nothing(backends: Backends) {
    let service = OnboardingService::new(backends, IngestConfig::default());
    let addr = serve(router(service.clone(), config().build())).await;
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/imports HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {ACME_KEY}\r\n\
         Content-Type: text/csv\r\nContent-Length: 100000000\r\nIdempotency-Key: gone-1\r\n\r\n\
         name,domain,contact_email,external_id\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket
        .write_all(csv_rows("gone", 0..5_000).as_bytes())
        .await
        .unwrap();
    socket.flush().await.unwrap();
    let client = reqwest::Client::new();
    let post = |body: String| {
        client
            .post(format!("http://{addr}/api/v1/imports"))
            .bearer_auth(ACME_KEY)
            .header("content-type", "text/csv")
            .header("idempotency-key", "gone-1")
            .body(body)
            .send()
    };
    let retry = format!(
        "name,domain,contact_email\n{}",
        "Kept,kept-after-gone.com,a@kept.com\n"
    );
    // The first upload has begun (its key is taken once it is listed as
    // receiving: it checks the backlog first, and a probe sent before that
    // would take the key itself and make the upload the one refused).
    eventually(
        "the first upload to be receiving",
        Duration::from_secs(20),
        || async {
            let receiving = service.receiving_imports(&tenant("acme")).await.unwrap();
            (!receiving.is_empty()).then_some(())
        },
    )
    .await;
    // The first upload is in progress: the same key is refused. (The probe
    // has no valid row, so it never stores a batch under the key itself.)
    let probe = "name,domain,contact_email\n".to_owned();
    eventually(
        "the first upload to hold its key",
        Duration::from_secs(20),
        || async {
            let status = post(probe.clone()).await.unwrap().status().as_u16();
            if status == 409 {
                Ok(())
            } else {
                Err(format!("status {status}"))
            }
        },
    )
    .await;
    drop(socket);
    // Gone: the key is free and the retry is stored as a new batch.
    eventually(
        "the interrupted upload to be discarded",
        Duration::from_secs(20),
        || async {
            let response = post(retry.clone()).await.unwrap();
            match response.status().as_u16() {
                202 => {
                    assert!(response.headers().get("idempotent-replayed").is_none());
                    Ok(())
                }
                status => Err(format!("status {status}")),
            }
        },
    )
    .await;
    for i in [0, 1_999, 4_999] {
        let found = service
            .organization(&tenant("acme"), &format!("gone{i}.example.com"))
            .await;
        assert!(
            found.is_err(),
            "row {i} of the interrupted upload was stored: {found:?}"
        );
    }
    let acme = tenant("acme");
    eventually("the retry's organization", Duration::from_secs(30), || {
        service.organization(&acme, "kept-after-gone.com")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_mid_upload_keeps_nothing_on_memory() {
    disconnect_mid_upload_keeps_nothing(Backends::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_mid_upload_keeps_nothing_on_sqlite() {
    let db = TestDatabase::create(Engine::Sqlite).await;
    let sql = db.connect(SqlOptions::default()).await;
    disconnect_mid_upload_keeps_nothing(sql_backends(&sql)).await;
    sql.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_mid_upload_keeps_nothing_on_postgres() {
    let db = TestDatabase::create(Engine::Postgres).await;
    let sql = db.connect(SqlOptions::default()).await;
    disconnect_mid_upload_keeps_nothing(sql_backends(&sql)).await;
    sql.close().await;
}

/// Runs `case` with a service over a new database of `engine`.
async fn on_engine<F, Fut>(engine: Engine, case: F)
where
    F: FnOnce(OnboardingService) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let db = TestDatabase::create(engine).await;
    let sql = db.connect(SqlOptions::default()).await;
    case(OnboardingService::new(
        sql_backends(&sql),
        IngestConfig::default(),
    ))
    .await;
    sql.close().await;
}

fn sql_backends(sql: &onboarding_sqlx::SqlBackend) -> Backends {
    Backends::new(
        sql.repository(),
        sql.queue(),
        Arc::new(MemoryCache::default()),
        Arc::new(TracingEventSink),
    )
}

/// POSTs a CSV with `Transfer-Encoding: chunked`, one chunk per item (the
/// file is generated while sent), and reads the answer.
async fn chunked_upload(
    addr: SocketAddr,
    chunks: impl Iterator<Item = Result<String, std::io::Error>>,
) -> (u16, serde_json::Value) {
    use tokio::io::AsyncReadExt;
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/imports HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {ACME_KEY}\r\n\
         Content-Type: text/csv\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    for chunk in chunks {
        let chunk = chunk.unwrap();
        socket
            .write_all(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes())
            .await
            .unwrap();
    }
    socket.write_all(b"0\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// A file uploaded over a socket, streamed by the client, stored and
/// processed to the end by a worker.
async fn import_end_to_end(engine: Engine, rows: usize) {
    let db = TestDatabase::create(engine).await;
    let sql = db.connect(SqlOptions::default()).await;
    let backends = sql_backends(&sql);
    let service = OnboardingService::new(backends.clone(), IngestConfig::default());
    let worker = Worker::new(
        backends,
        Arc::new(NoopProcessor),
        WorkerConfig::default().with_concurrency(64),
    )
    .start();
    let addr = serve(router(service.clone(), config().build())).await;
    // Generated while sent: neither side holds the file.
    let chunks = (0..rows.div_ceil(1_000)).map(move |c| {
        let mut chunk = if c == 0 {
            "name,domain,contact_email,external_id\r\n".to_owned()
        } else {
            String::new()
        };
        for i in c * 1_000..((c + 1) * 1_000).min(rows) {
            chunk.push_str(&format!(
                "Org {i},e2e{i}.example.com,admin@e2e{i}.example.com,ref-{i}\r\n"
            ));
        }
        Ok::<_, std::io::Error>(chunk)
    });
    let (status, body) = chunked_upload(addr, chunks).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["organizations_count"], rows);
    assert_eq!(body["rows_rejected"], 0);
    let id: BatchId = body["batch_id"].as_str().unwrap().parse().unwrap();
    let acme = tenant("acme");
    // Right after the answer the batch may still be being created from the
    // stored rows: acting on it waits for it rather than answering 404.
    let first_page = service
        .list_items(
            &acme,
            id,
            &onboarding_core::repository::ItemQuery {
                status: None,
                limit: 10,
                after_position: None,
            },
        )
        .await
        .expect("the import's items, right after its answer");
    assert_eq!(first_page.items.len(), 10);
    eventually(
        "every row to be processed",
        Duration::from_secs(600),
        || async {
            let status = service
                .batch_status(&acme, id)
                .await
                .map_err(|e| e.to_string())?;
            if status.counts.completed as usize == rows {
                Ok(())
            } else {
                Err(format!("{:?}", status.counts))
            }
        },
    )
    .await;
    let page = service
        .list_items(
            &acme,
            id,
            &ItemQuery {
                status: Some(ItemStatus::Completed),
                limit: 2,
                after_position: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.items[0].position, 2);
    worker.shutdown().await;
    sql.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_import_end_to_end_on_sqlite() {
    import_end_to_end(Engine::Sqlite, 5_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_import_end_to_end_on_postgres() {
    import_end_to_end(Engine::Postgres, 5_000).await;
}

/// An import answered by a process that stopped before creating its batch
/// (simulated: its rows staged and the upload sealed through the store,
/// nothing else) is finished by a worker's sweeper, and every row is
/// processed (nothing lost, DESIGN §2).
async fn a_sealed_import_left_behind_is_finished_by_a_worker(engine: Engine) {
    use onboarding_core::import::{ImportRow, NewImport};
    use onboarding_core::model::{after, now, ConflictPolicy, NewOrganization, SubmitMode};
    use onboarding_core::repository::Submission;
    let db = TestDatabase::create(engine).await;
    let sql = db.connect(SqlOptions::default()).await;
    let backends = sql_backends(&sql);
    let store = backends.repository.imports().unwrap();
    let (acme, batch, rows) = (tenant("acme"), BatchId::new(), 1_500u32);
    store
        .begin_import(&NewImport {
            batch_id: batch,
            tenant: acme.clone(),
            idempotency_key: Some("left-behind".to_owned()),
            now: now(),
            policy: ConflictPolicy::Update,
            mode: SubmitMode::Partial,
        })
        .await
        .unwrap();
    let staged: Vec<ImportRow> = (0..rows)
        .map(|i| ImportRow {
            line: i + 2,
            organization: NewOrganization {
                name: format!("Left {i}"),
                domain: onboarding_core::validate::normalize_domain(&format!(
                    "left{i}.example.com"
                ))
                .unwrap(),
                contact_email: format!("ops@left{i}.example.com"),
            },
            external_id: None,
        })
        .collect();
    store.append_import(batch, &staged, &[]).await.unwrap();
    let at = now();
    let submission = Submission {
        batch_id: batch,
        tenant: acme.clone(),
        idempotency_key: Some("left-behind".to_owned()),
        request_hash: "left-behind-file".to_owned(),
        policy: ConflictPolicy::Update,
        mode: SubmitMode::Partial,
        organizations: Vec::new(),
        chunk_size: 1000,
        reprocess_unchanged: false,
        now: at,
        sweep_at: after(at, Duration::from_secs(1)),
        trace_parent: None,
    };
    assert!(store.seal_import(&submission).await.unwrap().is_none());
    // The process "stops" here. A worker elsewhere sweeps every 100 ms and
    // takes over uploads sealed more than 500 ms ago.
    let worker = Worker::new(
        backends.clone(),
        Arc::new(NoopProcessor),
        WorkerConfig::default()
            .with_concurrency(32)
            .with_sweep(Duration::from_millis(100), Duration::from_millis(500)),
    )
    .start();
    let service = OnboardingService::new(backends.clone(), IngestConfig::default());
    eventually(
        "every row to be processed",
        Duration::from_secs(120),
        || async {
            let status = service
                .batch_status(&acme, batch)
                .await
                .map_err(|e| e.to_string())?;
            if status.counts.completed == rows {
                Ok(status)
            } else {
                Err(format!("{:?}", status.counts))
            }
        },
    )
    .await;
    let progress = service.import_progress(&acme, batch).await.unwrap();
    assert_eq!(progress.state, onboarding_core::import::ImportState::Stored);
    assert!(store
        .sealed_imports(now(), now(), 10)
        .await
        .unwrap()
        .is_empty());
    worker.shutdown().await;
    sql.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_import_left_behind_is_finished_by_a_worker_on_postgres() {
    a_sealed_import_left_behind_is_finished_by_a_worker(Engine::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_import_left_behind_is_finished_by_a_worker_on_sqlite() {
    a_sealed_import_left_behind_is_finished_by_a_worker(Engine::Sqlite).await;
}
