//! End-to-end load generator for a running `examples/server.rs` (loopback
//! only, bounded in count and time: it stops by itself).
//!
//! ```text
//! # terminal 1: the server (PostgreSQL + Redis, rate limit out of the way)
//! API_KEYS=bench:secret RATE_LIMIT=100000/s DATABASE_URL=postgres://postgres@127.0.0.1/onb_load \
//!   QUEUE_URL=redis://127.0.0.1:6379 WORKERS=256 cargo run --release --all-features --example server
//! # terminal 2
//! cargo run --release --all-features --example loadgen -- --api-key secret --server-pid $(pgrep -n server) \
//!   --clients 4 --requests 200 --floor-postgres postgres://postgres@127.0.0.1/onb_load --floor-redis redis://127.0.0.1:6379
//! ```
//!
//! Phases, in one run:
//! 1. raw floor on the same servers (when `--floor-postgres` / `--floor-redis`
//!    are given): one set-based `UNNEST` upsert of 1000 rows into a plain
//!    table, one pipelined push of 1000 messages; median of `--floor-reps`;
//! 2. latency to first work on the idle server: `--probes` times, post one
//!    batch, then poll `GET /api/v1/batches/{id}` every millisecond until its
//!    first item leaves `pending`; each probe waits for its batch to finish;
//! 3. load: `--clients` connections post `--requests` batches of `--orgs`
//!    organizations in total (keep-alive, raw HTTP/1.1); latency of each 202;
//! 4. completion: every batch polled until completed (`--completion 0` skips
//!    it, for a server without workers);
//! 5. the floor again, and the server's peak RSS (`VmHWM` of `--server-pid`).
//!
//! Reports accepted requests/s, p50/p95/p99 of the 202, time until every
//! organization is completed, completed organizations/s, peak RSS, the
//! floor and the overhead ratio (p50 of the 202 / floor). With `--out DIR`
//! it also writes `DIR/loadgen.md`, `DIR/loadgen_latency.svg` and
//! `DIR/loadgen_throughput.svg`. The whole run is capped by
//! `--max-seconds` (default 280).

#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::Connection;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone)]
struct Args {
    addr: SocketAddr,
    api_key: String,
    clients: usize,
    requests: usize,
    orgs: usize,
    probes: usize,
    max_seconds: u64,
    server_pid: Option<u32>,
    floor_postgres: Option<String>,
    floor_redis: Option<String>,
    floor_reps: usize,
    /// Whether phase 4 waits for the batches to complete (`--completion 0`
    /// skips it: a server with `WORKERS=0` measures the store alone).
    completion: bool,
    out: Option<String>,
}

const USAGE: &str = "loadgen --api-key KEY [--addr 127.0.0.1:8080] [--clients 4] [--requests 200] \
[--orgs 1000] [--probes 5] [--max-seconds 280] [--server-pid PID] [--floor-postgres URL] \
[--floor-redis URL] [--floor-reps 10] [--completion 1] [--out DIR]";

fn parse_args() -> Result<Args, String> {
    let mut map: HashMap<String, String> = HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.into());
        }
        let name = flag
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {flag:?}\n{USAGE}"))?;
        let value = it
            .next()
            .ok_or_else(|| format!("--{name} needs a value\n{USAGE}"))?;
        map.insert(name.to_owned(), value);
    }
    let get = |k: &str| map.get(k).cloned();
    let num = |k: &str, d: usize| -> Result<usize, String> {
        get(k).map_or(Ok(d), |v| {
            v.parse().map_err(|_| format!("--{k}: not a number"))
        })
    };
    let addr: SocketAddr = get("addr")
        .unwrap_or_else(|| "127.0.0.1:8080".into())
        .parse()
        .map_err(|_| "--addr: expected ip:port".to_owned())?;
    if !addr.ip().is_loopback() {
        return Err(
            "--addr must be a loopback address (this tool only drives local servers)".into(),
        );
    }
    let api_key = get("api-key")
        .or_else(|| std::env::var("LOADGEN_API_KEY").ok())
        .ok_or_else(|| format!("--api-key (or LOADGEN_API_KEY) is required\n{USAGE}"))?;
    let args = Args {
        addr,
        api_key,
        clients: num("clients", 4)?.clamp(1, 256),
        requests: num("requests", 200)?.clamp(1, 100_000),
        orgs: num("orgs", 1000)?.clamp(1, 1000),
        probes: num("probes", 5)?.min(100),
        max_seconds: num("max-seconds", 280)? as u64,
        server_pid: get("server-pid").and_then(|p| p.parse().ok()),
        floor_postgres: get("floor-postgres"),
        floor_redis: get("floor-redis"),
        floor_reps: num("floor-reps", 10)?.clamp(1, 1000),
        completion: num("completion", 1)? != 0,
        out: get("out"),
    };
    for url in [&args.floor_postgres, &args.floor_redis]
        .into_iter()
        .flatten()
    {
        if !(url.contains("127.0.0.1") || url.contains("localhost") || url.contains("[::1]")) {
            return Err(format!("floor URL {url:?} is not on loopback"));
        }
    }
    Ok(args)
}

// ------------------------------------------------------------------ HTTP/1.1

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
}

struct Response {
    status: u16,
    body: Vec<u8>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Self {
        Self { addr, stream: None }
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, BoxError> {
        // One retry on a fresh connection when a kept-alive one was closed.
        for attempt in 0..2 {
            if self.stream.is_none() {
                let s = TcpStream::connect(self.addr).await?;
                s.set_nodelay(true)?;
                self.stream = Some(BufReader::new(s));
            }
            match self.try_request(method, path, key, body).await {
                Ok(r) => return Ok(r),
                Err(e) => {
                    self.stream = None;
                    if attempt == 1 {
                        return Err(e);
                    }
                }
            }
        }
        unreachable!()
    }

    async fn try_request(
        &mut self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, BoxError> {
        let s = self.stream.as_mut().ok_or("not connected")?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\nAccept: application/json\r\n",
            self.addr
        );
        if let Some(b) = body {
            let _ = write!(
                head,
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            );
        }
        head.push_str("\r\n");
        let inner = s.get_mut();
        inner.write_all(head.as_bytes()).await?;
        if let Some(b) = body {
            inner.write_all(b).await?;
        }
        let mut line = String::new();
        if s.read_line(&mut line).await? == 0 {
            return Err("connection closed".into());
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or("bad status line")?;
        let (mut length, mut chunked, mut close) = (None, false, false);
        loop {
            line.clear();
            s.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                match k.as_str() {
                    "content-length" => length = v.parse::<usize>().ok(),
                    "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                    "connection" => close = v.eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                s.read_line(&mut line).await?;
                let n = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)?;
                let mut chunk = vec![0; n + 2];
                s.read_exact(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else if let Some(n) = length {
            body.resize(n, 0);
            s.read_exact(&mut body).await?;
        }
        if close {
            self.stream = None;
        }
        Ok(Response { status, body })
    }
}

// ------------------------------------------------------------------ bodies

fn body(orgs: usize, tag: &str) -> Vec<u8> {
    let organizations: Vec<Value> = (0..orgs)
        .map(|i| {
            serde_json::json!({
                "name": format!("Organization {i} of {tag}"),
                "domain": format!("org{i}-{tag}.example.com"),
                "contact_email": format!("ops{i}@example.com"),
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "organizations": organizations })).unwrap()
}

fn tag() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

fn batch_id(resp: &Response) -> Option<String> {
    let v: Value = serde_json::from_slice(&resp.body).ok()?;
    v.get("batch_id")?.as_str().map(str::to_owned)
}

/// `(total, pending, finished, completed_state)` of a batch status body.
fn progress(resp: &Response) -> Option<(u64, u64, u64, bool)> {
    let v: Value = serde_json::from_slice(&resp.body).ok()?;
    let c = v.get("counts")?;
    let n = |k: &str| c.get(k).and_then(Value::as_u64).unwrap_or(0);
    let total = v.get("total").and_then(Value::as_u64)?;
    let finished = n("completed") + n("failed") + n("cancelled");
    let done = v.get("state").and_then(Value::as_str) != Some("running") && finished == total;
    Some((total, n("pending"), finished, done))
}

// ------------------------------------------------------------------ floor

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn floor_postgres(url: &str, orgs: usize, reps: usize) -> Result<Vec<f64>, BoxError> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let table = format!("loadgen_floor_{}", &tag()[..12]);
    sqlx::query(&format!(
        "CREATE TABLE {table} (domain text PRIMARY KEY, name text NOT NULL, \
         contact_email text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())"
    ))
    .execute(&mut conn)
    .await?;
    let upsert = format!(
        "INSERT INTO {table} (domain, name, contact_email) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]) \
         ON CONFLICT (domain) DO UPDATE SET name = EXCLUDED.name, \
         contact_email = EXCLUDED.contact_email, updated_at = now()"
    );
    let mut out = Vec::new();
    for _ in 0..reps + 1 {
        let t = tag();
        let domains: Vec<String> = (0..orgs)
            .map(|i| format!("org{i}-{t}.example.com"))
            .collect();
        let names: Vec<String> = (0..orgs)
            .map(|i| format!("Organization {i} of {t}"))
            .collect();
        let emails: Vec<String> = (0..orgs).map(|i| format!("ops{i}@example.com")).collect();
        let started = Instant::now();
        sqlx::query(&upsert)
            .bind(&domains)
            .bind(&names)
            .bind(&emails)
            .execute(&mut conn)
            .await?;
        out.push(started.elapsed().as_secs_f64());
    }
    out.remove(0); // the first one prepares the statement
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&mut conn)
        .await?;
    Ok(out)
}

async fn floor_redis(url: &str, orgs: usize, reps: usize) -> Result<Vec<f64>, BoxError> {
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let key = format!("loadgen-floor-{}", tag());
    let mut out = Vec::new();
    for _ in 0..reps {
        let mut pipe = redis::pipe();
        for _ in 0..orgs {
            pipe.rpush(
                &key,
                format!(
                    r#"bench {{"id":"{}","job":{{"item_id":"{}","tenant":"bench","not_before":null}}}}"#,
                    uuid::Uuid::new_v4(),
                    uuid::Uuid::now_v7()
                ),
            )
            .ignore();
        }
        let started = Instant::now();
        pipe.query_async::<()>(&mut conn).await?;
        out.push(started.elapsed().as_secs_f64());
    }
    redis::cmd("DEL")
        .arg(&key)
        .query_async::<()>(&mut conn)
        .await?;
    Ok(out)
}

/// Floor samples (seconds) of PostgreSQL and Redis; empty when not asked.
async fn floor(args: &Args) -> (Vec<f64>, Vec<f64>) {
    let pg = match &args.floor_postgres {
        Some(url) => floor_postgres(url, args.orgs, args.floor_reps)
            .await
            .unwrap_or_else(|e| {
                eprintln!("PostgreSQL floor failed: {e}");
                Vec::new()
            }),
        None => Vec::new(),
    };
    let rd = match &args.floor_redis {
        Some(url) => floor_redis(url, args.orgs, args.floor_reps)
            .await
            .unwrap_or_else(|e| {
                eprintln!("Redis floor failed: {e}");
                Vec::new()
            }),
        None => Vec::new(),
    };
    (pg, rd)
}

// ------------------------------------------------------------------ phases

fn peak_rss_kib(pid: u32) -> Option<u64> {
    onboarding_core::testing::proc_status_kib(pid, "VmHWM:")
}

/// Time from the 202 until the first item leaves `pending`, on an idle server.
async fn probe(args: &Args, conn: &mut Conn) -> Result<Option<f64>, BoxError> {
    let b = body(args.orgs, &tag());
    let r = conn
        .request("POST", "/api/v1/bulk-onboard", &args.api_key, Some(&b))
        .await?;
    let accepted = Instant::now();
    if r.status != 202 {
        return Err(format!(
            "probe answered {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        )
        .into());
    }
    let id = batch_id(&r).ok_or("no batch_id")?;
    let path = format!("/api/v1/batches/{id}");
    let mut first = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let s = conn.request("GET", &path, &args.api_key, None).await?;
        if let Some((total, pending, _, done)) = progress(&s) {
            if first.is_none() && pending < total {
                first = Some(accepted.elapsed().as_secs_f64());
            }
            if done {
                break;
            }
        }
        if first.is_none() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(first)
}

struct Load {
    latencies: Vec<f64>,
    statuses: HashMap<u16, usize>,
    batches: Vec<String>,
    first_sent: Instant,
    last_accepted: Instant,
}

async fn load(args: &Args) -> Load {
    let bodies: Vec<Vec<u8>> = (0..args.requests)
        .map(|_| body(args.orgs, &tag()))
        .collect();
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new((Vec::new(), HashMap::new(), Vec::new())));
    let last = Arc::new(Mutex::new(Instant::now()));
    let first_sent = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let (bodies, next, results, last, args) = (
            bodies.clone(),
            next.clone(),
            results.clone(),
            last.clone(),
            args.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(args.addr);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(b) = bodies.get(i) else { break };
                let started = Instant::now();
                let r = conn
                    .request("POST", "/api/v1/bulk-onboard", &args.api_key, Some(b))
                    .await;
                let elapsed = started.elapsed().as_secs_f64();
                let back_off = {
                    let mut res = results.lock().unwrap();
                    match r {
                        Ok(r) => {
                            *res.1.entry(r.status).or_insert(0) += 1;
                            if r.status == 202 {
                                res.0.push(elapsed);
                                if let Some(id) = batch_id(&r) {
                                    res.2.push(id);
                                }
                                *last.lock().unwrap() = Instant::now();
                            }
                            r.status == 429
                        }
                        Err(e) => {
                            *res.1.entry(0).or_insert(0) += 1;
                            eprintln!("request failed: {e}");
                            false
                        }
                    }
                };
                if back_off {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let (latencies, statuses, batches) = std::mem::take(&mut *results.lock().unwrap());
    let last_accepted = *last.lock().unwrap();
    Load {
        latencies,
        statuses,
        batches,
        first_sent,
        last_accepted,
    }
}

/// Polls every batch until all are completed; returns the completion
/// instant and `(seconds since start, organizations finished)` samples.
async fn completion(
    args: &Args,
    batches: &[String],
    since: Instant,
) -> (Option<Instant>, Vec<(f64, u64)>) {
    let mut conn = Conn::new(args.addr);
    let mut open: Vec<(String, u64)> = batches.iter().map(|b| (b.clone(), 0)).collect();
    let mut done_orgs = 0u64;
    let mut samples = Vec::new();
    let deadline = since + Duration::from_secs(args.max_seconds);
    while !open.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for (id, _) in open.drain(..) {
            match conn
                .request("GET", &format!("/api/v1/batches/{id}"), &args.api_key, None)
                .await
                .ok()
                .and_then(|r| progress(&r))
            {
                Some((total, _, _, true)) => done_orgs += total,
                Some((_, _, finished, false)) => still.push((id, finished)),
                None => still.push((id, 0)),
            }
        }
        open = still;
        let partial: u64 = open.iter().map(|(_, f)| f).sum();
        samples.push((since.elapsed().as_secs_f64(), done_orgs + partial));
        if !open.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    (open.is_empty().then(Instant::now), samples)
}

// ------------------------------------------------------------------ charts

fn line_chart(title: &str, x_label: &str, y_label: &str, points: &[(f64, f64)]) -> String {
    let (w, h, l, t, r, b) = (640.0, 360.0, 70.0, 40.0, 20.0, 50.0);
    let xmax = points.iter().map(|p| p.0).fold(0.0_f64, f64::max).max(1e-9);
    let ymax = points.iter().map(|p| p.1).fold(0.0_f64, f64::max).max(1e-9);
    let px = |x: f64| l + x / xmax * (w - l - r);
    let py = |y: f64| h - b - y / ymax * (h - t - b);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="10" y="22" font-size="15" font-weight="bold">{title}</text>"#
    );
    let _ = writeln!(
        s,
        r##"<path d="M{l},{t} V{y0} H{x1}" fill="none" stroke="#333"/>"##,
        y0 = h - b,
        x1 = w - r
    );
    for i in 0..=4 {
        let f = f64::from(i) / 4.0;
        let _ = writeln!(
            s,
            r##"<text x="{x}" y="{y:.1}" text-anchor="end" fill="#555">{v:.3}</text>"##,
            x = l - 6.0,
            y = py(ymax * f) + 4.0,
            v = ymax * f
        );
        let _ = writeln!(
            s,
            r##"<text x="{x:.1}" y="{y}" text-anchor="middle" fill="#555">{v:.2}</text>"##,
            x = px(xmax * f),
            y = h - b + 16.0,
            v = xmax * f
        );
    }
    let mut d = String::new();
    for (i, (x, y)) in points.iter().enumerate() {
        let _ = write!(
            d,
            "{}{:.1},{:.1} ",
            if i == 0 { "M" } else { "L" },
            px(*x),
            py(*y)
        );
    }
    let _ = writeln!(
        s,
        r##"<path d="{d}" fill="none" stroke="#4878a8" stroke-width="2"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{x}" y="{y}" text-anchor="middle">{x_label}</text>"#,
        x = (l + w - r) / 2.0,
        y = h - 12.0
    );
    let _ = writeln!(
        s,
        r#"<text x="14" y="{y}" transform="rotate(-90 14 {y})" text-anchor="middle">{y_label}</text>"#,
        y = (t + h - b) / 2.0
    );
    s.push_str("</svg>\n");
    s
}

// ------------------------------------------------------------------ main

async fn run(args: Args) -> Result<(), BoxError> {
    let started = Instant::now();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "### loadgen: {} clients, {} requests x {} organizations against {}\n",
        args.clients, args.requests, args.orgs, args.addr
    );

    println!("phase 1: raw floor (before load)");
    let (mut pg_floor, mut redis_floor) = floor(&args).await;

    println!(
        "phase 2: latency to first work on the idle server ({} probes)",
        args.probes
    );
    let mut conn = Conn::new(args.addr);
    let mut first_work = Vec::new();
    for _ in 0..args.probes {
        match probe(&args, &mut conn).await? {
            Some(s) => first_work.push(s),
            None => println!("  probe: no item left pending within 60 s"),
        }
    }

    println!("phase 3: load");
    let l = load(&args).await;
    let accepted = l.latencies.len();
    let accept_secs = l
        .last_accepted
        .duration_since(l.first_sent)
        .as_secs_f64()
        .max(1e-9);

    let (completed_at, samples) = if args.completion {
        println!("phase 4: completion of {} batches", l.batches.len());
        completion(&args, &l.batches, l.first_sent).await
    } else {
        println!("phase 4: skipped (--completion 0)");
        (None, Vec::new())
    };

    println!("phase 5: raw floor (after load), peak RSS");
    let (pg2, redis2) = floor(&args).await;
    pg_floor.extend(pg2);
    redis_floor.extend(redis2);
    let rss = args.server_pid.and_then(peak_rss_kib);

    let mut lat = l.latencies.clone();
    lat.sort_by(f64::total_cmp);
    let (p50, p95, p99) = (
        percentile(&lat, 0.50),
        percentile(&lat, 0.95),
        percentile(&lat, 0.99),
    );
    let orgs_accepted = (accepted * args.orgs) as f64;
    let _ = writeln!(md, "| measure | value |\n|---|---:|");
    let _ = writeln!(md, "| responses by status | {:?} |", l.statuses);
    let _ = writeln!(
        md,
        "| accepted requests/s | {:.1} ({:.0} organizations/s) |",
        accepted as f64 / accept_secs,
        orgs_accepted / accept_secs
    );
    let _ = writeln!(
        md,
        "| 202 latency p50 / p95 / p99 | {:.1} / {:.1} / {:.1} ms |",
        p50 * 1e3,
        p95 * 1e3,
        p99 * 1e3
    );
    match completed_at {
        Some(t) => {
            let secs = t.duration_since(l.first_sent).as_secs_f64();
            let _ = writeln!(
                md,
                "| time until every organization completed | {secs:.2} s |"
            );
            let _ = writeln!(
                md,
                "| completed organizations/s | {:.0} |",
                orgs_accepted / secs
            );
        }
        None if args.completion => {
            let _ = writeln!(
                md,
                "| time until every organization completed | not within {} s |",
                args.max_seconds
            );
        }
        None => {}
    }
    let mut fw = first_work.clone();
    let _ = writeln!(
        md,
        "| latency to first work (idle, median of {}) | {:.1} ms (max {:.1} ms) |",
        fw.len(),
        median(&mut fw) * 1e3,
        first_work.iter().copied().fold(f64::NAN, f64::max) * 1e3
    );
    match rss {
        Some(kib) => {
            let _ = writeln!(
                md,
                "| server peak RSS (VmHWM) | {:.1} MiB |",
                kib as f64 / 1024.0
            );
        }
        None => {
            let _ = writeln!(
                md,
                "| server peak RSS (VmHWM) | not measured (no --server-pid) |"
            );
        }
    }
    let (fp, fr) = (median(&mut pg_floor), median(&mut redis_floor));
    if !pg_floor.is_empty() || !redis_floor.is_empty() {
        let floor = if fp.is_nan() { 0.0 } else { fp } + if fr.is_nan() { 0.0 } else { fr };
        let _ = writeln!(
            md,
            "| floor: PG UNNEST upsert of {} rows / Redis pipelined push of {} | {:.2} ms / {:.2} ms |",
            args.orgs,
            args.orgs,
            fp * 1e3,
            fr * 1e3
        );
        let _ = writeln!(
            md,
            "| overhead ratio: p50 of the 202 / (upsert + push) | {:.2}x |",
            p50 / floor
        );
    }
    let _ = writeln!(md, "\nwhole run: {:.1} s", started.elapsed().as_secs_f64());
    println!("\n{md}");

    if let Some(dir) = &args.out {
        let dir = std::path::Path::new(dir);
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("loadgen.md"), &md)?;
        let cdf: Vec<(f64, f64)> = lat
            .iter()
            .enumerate()
            .map(|(i, s)| (s * 1e3, (i + 1) as f64 / lat.len() as f64))
            .collect();
        std::fs::write(
            dir.join("loadgen_latency.svg"),
            line_chart(
                &format!(
                    "202 latency CDF ({} clients, {} orgs/request)",
                    args.clients, args.orgs
                ),
                "latency of the 202 (ms)",
                "fraction of requests",
                &cdf,
            ),
        )?;
        std::fs::write(
            dir.join("loadgen_throughput.svg"),
            line_chart(
                "Organizations finished since the first request",
                "seconds since the first request",
                "organizations finished",
                &samples
                    .iter()
                    .map(|(t, n)| (*t, *n as f64))
                    .collect::<Vec<_>>(),
            ),
        )?;
    }
    Ok(())
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cap = Duration::from_secs(args.max_seconds + 20);
    let result = rt.block_on(async { tokio::time::timeout(cap, run(args)).await });
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            eprintln!("loadgen failed: {e}");
            std::process::exit(1);
        }
        Err(_) => {
            eprintln!("loadgen stopped at its time cap");
            std::process::exit(1);
        }
    }
}
