//! A server on a loopback port in the benchmark's process, for the phases
//! that measure over HTTP.

use std::net::SocketAddr;

use onboarding::model::TenantId;
use onboarding::web::{router, serve, HttpConfig, ServeConfig};
use onboarding::OnboardingService;

/// Serves `service` on 127.0.0.1 (an ephemeral port) with one API key for
/// `tenant` and no rate limit, until the process ends; answers its address.
pub async fn serve_local(service: OnboardingService, tenant: TenantId, key: &str) -> SocketAddr {
    let config = HttpConfig::builder()
        .api_key(tenant, key)
        .rate_limit(None)
        .build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(serve(
        listener,
        router(service, config),
        ServeConfig::default(),
        std::future::pending(),
    ));
    addr
}
