//! The HTTP side of `onboard`: one client with the server URL and key,
//! answers checked for success, problem documents turned into readable errors.

use std::fmt;

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde_json::Value;

/// What went wrong, printed as is (never a debug dump).
#[derive(Debug)]
pub(crate) struct CliError(pub(crate) String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for CliError {
    fn from(s: String) -> Self {
        Self(s)
    }
}

pub(crate) type CliResult<T> = Result<T, CliError>;

/// The server and the key every request carries.
pub(crate) struct Client {
    http: reqwest::Client,
    base: Url,
    key: String,
}

impl Client {
    pub(crate) fn new(base: &str, key: String) -> CliResult<Self> {
        let mut base = Url::parse(base).map_err(|e| format!("the server URL {base:?}: {e}"))?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("onboard/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {}", chain(&e)))?;
        Ok(Self { http, base, key })
    }

    /// `path` relative to the server URL (`api/v1/batches`), with query pairs.
    pub(crate) fn url(&self, path: &str, query: &[(&str, String)]) -> CliResult<Url> {
        let mut url = self
            .base
            .join(path)
            .map_err(|e| format!("bad path {path:?}: {e}"))?;
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    pub(crate) fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.http.request(method, url).bearer_auth(&self.key)
    }

    /// Sends, and answers the response when its status is a success; else
    /// the server's problem (title, detail, each field error) as the error.
    pub(crate) async fn send(&self, request: RequestBuilder) -> CliResult<Response> {
        let response = request
            .send()
            .await
            .map_err(|e| format!("cannot reach {}: {}", self.base, chain(&e)))?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(problem(response).await)
    }

    /// Sends and reads a JSON answer, with its headers.
    pub(crate) async fn json(&self, request: RequestBuilder) -> CliResult<(HeaderMap, Value)> {
        let response = self.send(request).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("reading the answer: {}", chain(&e)))?;
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("the server's answer ({status}) is not JSON: {e}"))?;
        Ok((headers, value))
    }

    /// `GET path` as JSON.
    pub(crate) async fn get_json(&self, path: &str, query: &[(&str, String)]) -> CliResult<Value> {
        let url = self.url(path, query)?;
        Ok(self.json(self.request(Method::GET, url)).await?.1)
    }

    /// `POST path` (no body) as JSON.
    pub(crate) async fn post_json(&self, path: &str) -> CliResult<Value> {
        let url = self.url(path, &[])?;
        Ok(self.json(self.request(Method::POST, url)).await?.1)
    }
}

/// The error of a non-success answer: its problem document when it is one.
async fn problem(response: Response) -> CliError {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.bytes().await.unwrap_or_default();
    let mut text = match serde_json::from_slice::<Value>(&body) {
        Ok(doc) if doc.get("title").is_some() || doc.get("detail").is_some() => {
            describe_problem(status, &doc)
        }
        _ => {
            let raw = String::from_utf8_lossy(&body);
            let raw = raw.trim();
            let shown: String = raw.chars().take(300).collect();
            if shown.is_empty() {
                format!("the server answered {status}")
            } else {
                format!("the server answered {status}: {shown}")
            }
        }
    };
    if let Some(after) = retry_after {
        text.push_str(&format!("\n  retry after {after} s"));
    }
    CliError(text)
}

/// `title (status): detail`, then one line per field error.
fn describe_problem(status: StatusCode, doc: &Value) -> String {
    let title = doc["title"].as_str().unwrap_or("error");
    let mut text = format!("{title} ({})", status.as_u16());
    if let Some(detail) = doc["detail"].as_str().filter(|d| !d.is_empty()) {
        text.push_str(&format!(": {detail}"));
    }
    let errors = doc["errors"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    for e in errors.iter().take(20) {
        let place = e["parameter"]
            .as_str()
            .or_else(|| e["pointer"].as_str().filter(|p| !p.is_empty()))
            .unwrap_or("request");
        let code = e["code"].as_str().unwrap_or("");
        let detail = e["detail"].as_str().unwrap_or("");
        text.push_str(&format!("\n  {place}: {detail} ({code})"));
    }
    if errors.len() > 20 {
        text.push_str(&format!("\n  … and {} more", errors.len() - 20));
    }
    text
}

/// An error with its causes, `a: b: c`.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = e.source();
    }
    text
}
