//! How the server and the worker listen: the public listener's limits
//! (header and idle timeouts, a connection cap) and the operator listener
//! (`METRICS_ADDR`: `/health`, `/ready`, `/metrics`).

use std::time::Duration;

use onboarding::web::{operator_router, serve, Metrics, ServeConfig};
use onboarding::OnboardingService;

/// File descriptors kept for database and queue connections, logs and
/// the listeners themselves, below the open-file limit.
const FD_RESERVE: u64 = 256;

/// Limits of every listener of the process.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Listening")]
pub struct ServeArgs {
    /// A request head (request line and headers) must arrive within this
    /// many ms (from its first byte; from the connection's start for the
    /// first request), or the connection is closed.
    #[arg(long, env = "HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// A connection with no request in progress and no byte moving for
    /// this many ms is closed (idle keep-alive, a client that stopped reading).
    #[arg(long, env = "IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,
    /// Connections open at once; more wait in the listen backlog. Capped
    /// below the open-file limit, whose soft value is raised to the hard one.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
}

impl ServeArgs {
    /// The listeners' limits. Raises the soft open-file limit to the hard
    /// one, and caps the connections below it.
    pub fn config(&self) -> ServeConfig {
        let mut max = self.max_connections.max(1);
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(limit) => {
                let room = usize::try_from(limit.saturating_sub(FD_RESERVE).max(1)).unwrap_or(max);
                if room < max {
                    tracing::warn!(
                        max_connections = max,
                        open_file_limit = limit,
                        "MAX_CONNECTIONS lowered to {room} to stay below the open-file limit"
                    );
                    max = room;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read or raise the open-file limit"),
        }
        ServeConfig::default()
            .with_header_timeout(Duration::from_millis(self.header_timeout_ms))
            .with_idle_timeout(Duration::from_millis(self.idle_timeout_ms))
            .with_max_connections(max)
    }
}

/// `off` (or empty) turns the operator listener off.
pub fn operator_addr(value: &str) -> Option<&str> {
    let value = value.trim();
    (!value.is_empty() && value != "off").then_some(value)
}

/// Starts the operator listener on `addr` (`METRICS_ADDR`): `/health`,
/// `/ready` and `/metrics`, without authentication, so keep it on a
/// private address. It runs until the process exits.
pub async fn start_operator(
    addr: &str,
    service: OnboardingService,
    metrics: Metrics,
    config: ServeConfig,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        format!("cannot listen on {addr} (METRICS_ADDR): {e}; set METRICS_ADDR to a free address, 127.0.0.1:0 for any port, or off")
    })?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(addr = %local, "operator endpoints (/health, /ready, /metrics) listening");
    tokio::spawn(serve(
        listener,
        operator_router(service, metrics),
        config,
        std::future::pending(),
    ));
    Ok(())
}
