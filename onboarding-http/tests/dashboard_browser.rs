//! The dashboard in a real browser: Debian's `chromium` driven through
//! `chromedriver` (WebDriver, with `fantoccini`), against a server on
//! SQLite with workers that share only the database with it (as workers in
//! another process do), webhooks delivered to a local receiver, and API keys
//! in the database.
//!
//! It signs in (a wrong key first), watches a batch reach 100 % without a
//! reload, searches and filters, retries one failure group, cancels a batch,
//! downloads results, checks that organization names with HTML are shown as
//! text, replays a webhook delivery, creates and revokes an API key (the
//! revoked session goes back to the sign-in), and writes a screenshot of each
//! page to `docs/dashboard/`.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`.ci/services.sh`
//! installs them; `CHROMEDRIVER` / `CHROMIUM` override the paths).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] functions

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::http::StatusCode;
use axum::routing::post;
use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use onboarding_core::keys::NewApiKey;
use onboarding_core::memory::MemoryCache;
use onboarding_core::model::now;
use onboarding_core::testing::eventually;
use onboarding_core::{
    Backends, IngestConfig, OnboardingService, ProcessError, Processor, WorkItem, Worker,
    WorkerConfig,
};
use onboarding_http::webhook::{UrlPolicy, WebhookConfig, WebhookSink, Webhooks};
use onboarding_http::{dashboard_router, router, DashboardConfig, ServeConfig};
use onboarding_sqlx::testing::TestDatabase;
use onboarding_sqlx::{Engine, SqlOptions};
use serde_json::{json, Value};
use tokio::sync::watch;

const ADMIN_TOKEN: &str = "admin-token-for-the-browser-test";
const WAIT: Duration = Duration::from_secs(30);
/// Names a browser would run if the page interpreted them.
const HOSTILE_NAMES: [&str; 2] = [
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(1)>",
];

/// Fails, holds or passes each organization by its domain's first label.
struct ScriptedProcessor {
    slow: watch::Receiver<bool>,
    hold: watch::Receiver<bool>,
}

#[async_trait]
impl Processor for ScriptedProcessor {
    async fn process(&self, item: &WorkItem) -> Result<(), ProcessError> {
        let domain = item.organization.domain.as_str();
        let wait = |gate: &watch::Receiver<bool>| {
            let mut gate = gate.clone();
            async move {
                let _ = gate.wait_for(|open| *open).await;
            }
        };
        if domain.starts_with("slow-") {
            wait(&self.slow).await;
        } else if domain.starts_with("hold-") {
            wait(&self.hold).await;
        } else if domain.starts_with("fail-a-") {
            return Err(ProcessError::Permanent(format!(
                "timeout after {} ms on node {}",
                1000 + domain.len() * 7,
                uuid::Uuid::new_v4()
            )));
        } else if domain.starts_with("fail-b-") {
            return Err(ProcessError::Permanent(format!(
                "CRM answered HTTP 503 for request {}",
                uuid::Uuid::new_v4().simple()
            )));
        } else if domain.starts_with("fail-c-") {
            return Err(ProcessError::Permanent(format!(
                // Single quotes: the hostile names hold double quotes.
                "name '{}' refused by the CRM",
                item.organization.name
            )));
        }
        Ok(())
    }
}

/// chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_driver() -> Driver {
    let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    let port = free_port();
    let child = Command::new(&binary)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {binary} ({e}): apt-get install chromium chromium-driver (.ci/services.sh does)")
        });
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    eventually("chromedriver to listen", WAIT, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
    driver
}

async fn browser(driver: &Driver, downloads: &Path, profile: &Path) -> Client {
    let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": binary,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1440,1000", "--lang=en-US",
                format!("--user-data-dir={}", profile.display()),
            ],
            "prefs": {
                "download.default_directory": downloads.display().to_string(),
                "download.prompt_for_download": false,
            },
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a chromium session")
}

async fn serve(app: axum::Router) -> SocketAddr {
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

/// A webhook receiver answering 204.
async fn receiver() -> String {
    let app = axum::Router::new().route("/hook", post(|| async { StatusCode::NO_CONTENT }));
    format!("http://{}/hook", serve(app).await)
}

/// The API, as the test's own client (not the browser) calls it.
struct Api(HttpClient);

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, _, body) = self.0.call(method, path, ACME_KEY, body.as_ref()).await;
        (status, body)
    }

    async fn submit(&self, organizations: Vec<Value>) -> String {
        let body = json!({ "organizations": organizations });
        let (status, body) = self
            .call(reqwest::Method::POST, "/api/v1/bulk-onboard", Some(body))
            .await;
        assert_eq!(status, 202, "{body}");
        body["batch_id"].as_str().unwrap().to_owned()
    }

    /// Imports organizations as a CSV file (`POST /api/v1/imports`): the
    /// batch keeps what was submitted, so its results carry the names.
    async fn import(&self, organizations: &[Value]) -> String {
        let cell = |v: &Value| format!("\"{}\"", v.as_str().unwrap().replace('"', "\"\""));
        let mut csv = String::from("name,domain,contact_email\r\n");
        for o in organizations {
            let row = [&o["name"], &o["domain"], &o["contact_email"]].map(cell);
            csv.push_str(&format!("{}\r\n", row.join(",")));
        }
        let resp = self
            .0
            .http
            .post(format!("{}/api/v1/imports", self.0.base))
            .bearer_auth(ACME_KEY)
            .header("content-type", "text/csv")
            .body(csv)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        assert_eq!(status, 202, "{body}");
        body["batch_id"].as_str().unwrap().to_owned()
    }

    async fn status(&self, batch: &str) -> Value {
        self.call(
            reqwest::Method::GET,
            &format!("/api/v1/batches/{batch}"),
            None,
        )
        .await
        .1
    }
}

fn orgs(prefix: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            org(
                &format!("{prefix} org {i}"),
                &format!("{prefix}-{i}.example.com"),
            )
        })
        .collect()
}

/// Waits until `check` answers `Some` (polling the page; no fixed sleeps).
async fn until<T, F, Fut>(what: &str, check: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually(what, WAIT, || async { check().await.ok_or(()) }).await
}

async fn text(client: &Client, css: &str) -> Option<String> {
    client.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

async fn count(client: &Client, css: &str) -> usize {
    let script = format!("return document.querySelectorAll({css:?}).length");
    client
        .execute(&script, vec![])
        .await
        .unwrap()
        .as_u64()
        .unwrap() as usize
}

async fn click(client: &Client, css: &str) {
    let element = until(&format!("{css} to be there"), || async {
        client.find(Locator::Css(css)).await.ok()
    })
    .await;
    element.click().await.unwrap();
}

async fn fill(client: &Client, css: &str, value: &str) {
    let input = client.find(Locator::Css(css)).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(value).await.unwrap();
}

async fn go(client: &Client, base: &str, hash: &str) {
    client.goto(&format!("{base}/{hash}")).await.unwrap();
}

/// A mark on the page's window: it survives everything but a reload.
async fn mark(client: &Client) {
    client
        .execute("window.__notReloaded = true; return true", vec![])
        .await
        .unwrap();
}

async fn assert_not_reloaded(client: &Client) {
    let still = client
        .execute("return window.__notReloaded === true", vec![])
        .await
        .unwrap();
    assert_eq!(still, json!(true), "the page was reloaded");
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(client: &Client, name: &str) {
    // Let the last paint settle: wait for the fonts and two animation frames.
    client
        .execute_async(
            "const done = arguments[0]; document.fonts.ready.then(() => requestAnimationFrame(() => requestAnimationFrame(() => done(true))));",
            vec![],
        )
        .await
        .unwrap();
    let png = client.screenshot().await.unwrap();
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

/// No alert opened and no element the hostile names would have created.
async fn assert_no_injection(client: &Client) {
    assert!(
        client.get_alert_text().await.is_err(),
        "an alert opened: a name was interpreted"
    );
    assert_eq!(count(client, "img[src='x']").await, 0);
    assert_eq!(
        count(client, "script").await,
        1,
        "only the page's own script"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_works_in_a_real_browser() {
    let db = TestDatabase::create(Engine::Sqlite).await;
    let sql = db.connect(SqlOptions::default()).await;
    let webhooks = Webhooks::new(
        sql.webhook_store(),
        sql.delivery_log(),
        WebhookConfig::default()
            .with_policy(UrlPolicy::permissive())
            .with_poll_interval(Duration::from_millis(100)),
    )
    .unwrap();
    let deliveries = webhooks.start();
    let events = Arc::new(WebhookSink::new(
        webhooks.clone(),
        Arc::new(onboarding_core::memory::TracingEventSink),
    ));
    // The server's backends and the workers' share the database only: each
    // has its own status cache, as separate processes would.
    let backends = |cache: MemoryCache| {
        Backends::new(
            sql.repository(),
            sql.queue(),
            Arc::new(cache),
            events.clone(),
        )
    };
    let service = OnboardingService::new(backends(MemoryCache::default()), IngestConfig::default());
    let (open_slow, slow) = watch::channel(false);
    let (open_hold, hold) = watch::channel(false);
    let worker = Worker::new(
        backends(MemoryCache::default()),
        Arc::new(ScriptedProcessor { slow, hold }),
        WorkerConfig::default()
            .with_concurrency(4)
            .with_poll_wait(Duration::from_millis(50)),
    )
    .start();

    // The browser signs in with a key kept in the database (revocable).
    let keys = sql.key_store();
    let acme = tenant("acme");
    keys.create_tenant(&acme, now()).await.unwrap();
    let (session_key, record) = NewApiKey::generate(acme, Some("browser session".into()), now());
    keys.create_key(&record).await.unwrap();
    let config = config()
        .key_store(keys.clone())
        .admin_token(ADMIN_TOKEN)
        .webhooks(webhooks.clone())
        .build();
    let app = router(service, config).merge(dashboard_router(DashboardConfig::default()));
    let addr = serve(app).await;
    let base = format!("http://{addr}");
    let api = Api(HttpClient::new(addr));
    let (status, endpoint) = api
        .call(
            reqwest::Method::POST,
            "/api/v1/webhooks/endpoints",
            Some(json!({"url": receiver().await})),
        )
        .await;
    assert_eq!(status, 201, "{endpoint}");

    let work = std::env::temp_dir().join(format!("dashboard-browser-{}", uuid::Uuid::new_v4()));
    let downloads = work.join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let driver = start_driver().await;
    let client = browser(&driver, &downloads, &work.join("profile")).await;

    // Sign-in: a wrong key is refused with a message, the right one opens the batches.
    go(&client, &base, "").await;
    fill(&client, "#api-key", "obk_wrong_key_0123456789").await;
    click(&client, "#sign-in-form button[type=submit]").await;
    until("the wrong key to be refused", || async {
        text(&client, "#sign-in-error")
            .await
            .filter(|t| t.contains("not accepted"))
    })
    .await;
    screenshot(&client, "sign-in").await;
    assert_eq!(
        client
            .execute("return sessionStorage.getItem('onboarding.key')", vec![])
            .await
            .unwrap(),
        Value::Null,
        "a refused key is not kept"
    );
    fill(&client, "#api-key", &session_key).await;
    click(&client, "#sign-in-form button[type=submit]").await;
    until("the batches list", || async {
        text(&client, "#batches-title").await
    })
    .await;
    assert!(
        !client
            .current_url()
            .await
            .unwrap()
            .as_str()
            .contains(&session_key),
        "the key is never in a URL"
    );
    mark(&client).await;

    // Batches submitted through the API appear live, without a reload.
    let done = api.submit(orgs("quick", 40)).await;
    let mut failing = Vec::new();
    for i in 0..10 {
        failing.push(org(
            &format!("Failing A {i}"),
            &format!("fail-a-{i}.example.com"),
        ));
        failing.push(org(
            &format!("Failing B {i}"),
            &format!("fail-b-{i}.example.com"),
        ));
        let name = format!("{} {i}", HOSTILE_NAMES[i % 2]);
        failing.push(org(&name, &format!("fail-c-{i}.example.com")));
    }
    let failures = api.import(&failing).await;
    let slow = api.submit(orgs("slow", 30)).await;
    until("the three batches listed live", || async {
        (count(&client, "tr[data-batch]").await == 3).then_some(())
    })
    .await;
    assert_not_reloaded(&client).await;

    // A batch's progress reaches 100 % live, without a reload.
    go(&client, &base, &format!("#/batches/{slow}")).await;
    mark(&client).await;
    until("the slow batch to be waiting", || async {
        text(&client, ".progress .pct").await.filter(|t| t == "0 %")
    })
    .await;
    open_slow.send(true).unwrap();
    until("the slow batch to reach 100 % live", || async {
        text(&client, ".progress .pct")
            .await
            .filter(|t| t == "100 %")
    })
    .await;
    until("its state to show completed", || async {
        text(&client, ".state").await.filter(|t| t == "completed")
    })
    .await;
    assert_not_reloaded(&client).await;
    until("its organizations, completed", || async {
        (count(&client, "#view tbody .status-completed").await == 30).then_some(())
    })
    .await;

    // Search and status filter.
    fill(&client, "#item-search", "slow-1").await;
    until("the search to narrow the list", || async {
        // slow-1 and slow-10 … slow-19
        (count(&client, "#view tbody tr").await == 11).then_some(())
    })
    .await;
    fill(&client, "#item-search", "").await;
    let status_filter = client.find(Locator::Css("#item-status")).await.unwrap();
    status_filter.select_by_value("failed").await.unwrap();
    until("no failed organization in this batch", || async {
        text(&client, "#view tbody td")
            .await
            .filter(|t| t == "No organizations match.")
    })
    .await;

    // Download the results as CSV.
    go(&client, &base, &format!("#/batches/{done}")).await;
    until("the quick batch to complete", || async {
        text(&client, ".state").await.filter(|t| t == "completed")
    })
    .await;
    click(&client, "#download").await;
    let file = downloads.join(format!("batch-{done}-results.csv"));
    let csv = until("the CSV download", || async {
        std::fs::read_to_string(&file)
            .ok()
            .filter(|c| c.ends_with("\r\n"))
    })
    .await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 41, "a header and one line per organization");
    // The server's results file (GET .../results?format=csv), not one built by the page.
    assert_eq!(
        lines[0],
        "line,name,domain,contact_email,external_id,change,status,attempts,error_code,error_detail"
    );
    assert!(
        lines[1..].iter().all(|l| l.contains(",completed,")),
        "{csv}"
    );

    // Failures: hostile names shown as text on the batch page and by cause.
    go(&client, &base, &format!("#/batches/{failures}")).await;
    until("the failing batch to complete", || async {
        text(&client, ".state").await.filter(|t| t == "completed")
    })
    .await;
    until("its 30 failed organizations", || async {
        (count(&client, "#view tbody .status-failed").await == 30).then_some(())
    })
    .await;
    let shown = client
        .execute(
            "return [...document.querySelectorAll('#view tbody td')].map(td => td.textContent)",
            vec![],
        )
        .await
        .unwrap();
    // The imported names are in the Name column, as text.
    let names = client
        .execute(
            "return [...document.querySelectorAll('#view tbody tr')].map(tr => tr.cells[2].textContent)",
            vec![],
        )
        .await
        .unwrap();
    let names: Vec<&str> = names
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    for expected in ["Failing A 0", "Failing B 9"]
        .into_iter()
        .map(String::from)
        .chain(
            HOSTILE_NAMES
                .iter()
                .enumerate()
                .map(|(i, n)| format!("{n} {i}")),
        )
    {
        assert!(
            names.contains(&expected.as_str()),
            "{expected} in the Name column: {names:?}"
        );
    }
    for name in HOSTILE_NAMES {
        let expected = format!("name '{name} 0' refused by the CRM");
        let expected_odd = format!("name '{name} 1' refused by the CRM");
        let cells = shown.as_array().unwrap();
        assert!(
            cells
                .iter()
                .any(|c| c == &json!(expected) || c == &json!(expected_odd)),
            "{name} shown as text: {shown}"
        );
    }
    assert_no_injection(&client).await;
    screenshot(&client, "batch").await;
    click(&client, "#failures-link").await;
    until("three groups of failures", || async {
        (count(&client, "tr[data-group]").await == 3).then_some(())
    })
    .await;
    // Each group's example with its imported name.
    let examples = text(&client, "#view table").await.unwrap();
    assert!(examples.contains("#2 · Failing A 0"), "{examples}");
    assert_no_injection(&client).await;
    screenshot(&client, "failures").await;
    let group = client
        .execute(
            "return [...document.querySelectorAll('tr[data-group]')].find(tr => tr.cells[0].textContent.startsWith('name')).dataset.group",
            vec![],
        )
        .await
        .unwrap();
    let group = group.as_str().unwrap().to_owned();
    click(
        &client,
        &format!("tr[data-group='{group}'] button.retry-group"),
    )
    .await;
    until("the group to be queued again", || async {
        text(&client, "#view .notice")
            .await
            .filter(|t| t == "10 organizations queued again.")
    })
    .await;
    // Only that group ran again (and failed again): the others kept one attempt.
    eventually("the group's second failures", WAIT, || async {
        let (_, page) = api
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/batches/{failures}/organizations?status=failed&limit=100"),
                None,
            )
            .await;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        let twice: Vec<&Value> = items
            .iter()
            .filter(|i| i["errors"].as_array().unwrap().len() == 2)
            .collect();
        let all_c = twice
            .iter()
            .all(|i| i["domain"].as_str().unwrap().starts_with("fail-c-"));
        if items.len() == 30 && twice.len() == 10 && all_c {
            Ok(())
        } else {
            Err(page)
        }
    })
    .await;

    // Cancel a batch: its first items hold the workers, the rest are pending.
    let held = api.submit(orgs("hold", 30)).await;
    go(&client, &base, &format!("#/batches/{held}")).await;
    until("the held batch to be running", || async {
        text(&client, ".state").await.filter(|t| t == "running")
    })
    .await;
    click(&client, "#cancel").await;
    until("the held batch to show cancelled", || async {
        text(&client, ".state").await.filter(|t| t == "cancelled")
    })
    .await;
    let cancelled = api.status(&held).await;
    assert_eq!(cancelled["state"], "cancelled");
    assert!(
        cancelled["counts"]["cancelled"].as_u64().unwrap() >= 26,
        "{cancelled}"
    );

    open_hold.send(true).unwrap();

    // The list: filters and paging, then the screenshot with the chart.
    // After a reload, the chart starts from the server's history of the last
    // hour (GET /api/v1/throughput), not from the page's own samples.
    go(&client, &base, "#/batches").await;
    client.refresh().await.unwrap();
    let history = until("the last hour's history in the chart", || async {
        let finished = client
            .execute(
                "return Number(document.querySelector('svg.chart')?.dataset.historyFinished || 0)",
                vec![],
            )
            .await
            .ok()?
            .as_u64()?;
        (finished > 0).then_some(finished)
    })
    .await;
    // At most the 100 organizations of the quick, slow and failing batches and the held one's 30.
    assert!(history <= 130, "{history} finished in the history");
    until("the list", || async {
        (count(&client, "tr[data-batch]").await == 4).then_some(())
    })
    .await;
    let state = client.find(Locator::Css("#filter-state")).await.unwrap();
    state.select_by_value("cancelled").await.unwrap();
    until("only the cancelled batch", || async {
        let rows = count(&client, "tr[data-batch]").await;
        let id = client
            .execute(
                "return document.querySelector('tr[data-batch]')?.dataset.batch",
                vec![],
            )
            .await
            .ok()?;
        (rows == 1 && id == json!(held)).then_some(())
    })
    .await;
    state.select_by_value("").await.unwrap();
    let size = client.find(Locator::Css("#filter-limit")).await.unwrap();
    size.select_by_value("10").await.unwrap();
    until("every batch again", || async {
        (count(&client, "tr[data-batch]").await == 4).then_some(())
    })
    .await;
    until("a few throughput samples", || async {
        (count(&client, "svg.chart polyline").await == 2).then_some(())
    })
    .await;
    screenshot(&client, "batches").await;

    // Webhook deliveries, with a replay.
    go(&client, &base, "#/webhooks").await;
    until("the deliveries", || async {
        (count(&client, "#view tbody tr").await >= 3).then_some(())
    })
    .await;
    click(&client, "#view tbody tr button").await;
    until("the replay's answer", || async {
        text(&client, "#view .notice")
            .await
            .filter(|t| t.starts_with("Replayed: "))
    })
    .await;
    screenshot(&client, "webhooks").await;

    // API keys: the operator creates one, then revokes the browser's own.
    go(&client, &base, "#/keys").await;
    fill(&client, "#admin-token", ADMIN_TOKEN).await;
    click(&client, "#view form button[type=submit]").await;
    until("the key form", || async {
        client.find(Locator::Css("#new-key-tenant")).await.ok()
    })
    .await;
    fill(&client, "#new-key-tenant", "initech").await;
    fill(&client, "#new-key-label", "CRM sync").await;
    click(&client, "#view form.filters button[type=submit]").await;
    until("the new key, shown once", || async {
        text(&client, "#view .notice")
            .await
            .filter(|t| t.contains("obk_"))
    })
    .await;
    screenshot(&client, "keys").await;
    let listed = keys.keys(None).await.unwrap();
    assert!(listed
        .iter()
        .any(|k| k.label.as_deref() == Some("CRM sync")));
    let prefix = record.prefix.clone();
    click(
        &client,
        &format!("button[aria-label='Revoke key {prefix}']"),
    )
    .await;
    until("the revocation", || async {
        text(&client, "#view .notice")
            .await
            .filter(|t| t.contains("revoked"))
    })
    .await;
    // The next call with the revoked key (within the key cache's second) ends the session.
    go(&client, &base, "#/batches").await;
    until("back at the sign-in", || async {
        text(&client, "#sign-in-error")
            .await
            .filter(|t| t.contains("no longer accepted"))
    })
    .await;
    assert_eq!(
        client
            .execute("return sessionStorage.length", vec![])
            .await
            .unwrap(),
        json!(0),
        "nothing of the session is kept"
    );

    client.close().await.unwrap();
    drop(driver);
    worker.shutdown().await;
    deliveries.stop();
    sql.close().await;
    let _ = std::fs::remove_dir_all(&work);
}
