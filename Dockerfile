# syntax=docker/dockerfile:1
# Multi-stage build of the bulk-onboarding server and worker.
#   docker build -t bulk-onboarding .
#   docker run -p 127.0.0.1:8080:8080 -e API_KEYS=acme:<key> bulk-onboarding   # SQLite in /data, in-process workers
#   docker run bulk-onboarding onboarding-worker            # a standalone worker (needs a shared DATABASE_URL)
# No secret is generated into the logs (GENERATE_SECRETS=false): API_KEYS, and
# WEBHOOK_SECRET when WEBHOOK_URLS is set, must be given. /ready and /metrics
# answer on the container's loopback (METRICS_ADDR 127.0.0.1:9090, worker :9091);
# set METRICS_ADDR=0.0.0.0:9090 to let a scraper on the container network in.

FROM rust:1-slim-bookworm AS builder
WORKDIR /src
COPY . .
# Every backend the examples can switch to at run time, and traces (exported
# only when OTEL_EXPORTER_OTLP_ENDPOINT is set).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        --features http,sqlite,postgres,mysql,redis,amqp,otel \
        --example server --example worker \
 && mkdir -p /out \
 && cp target/release/examples/server /out/onboarding-server \
 && cp target/release/examples/worker /out/onboarding-worker

FROM debian:bookworm-slim
# ca-certificates for https webhooks and PROCESSOR_URL; curl for health checks.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /data --create-home onboarding
COPY --from=builder /out/onboarding-server /out/onboarding-worker /usr/local/bin/
USER onboarding:onboarding
WORKDIR /data
ENV BIND_ADDR=0.0.0.0:8080 \
    DATABASE_URL=sqlite:///data/onboarding.db?mode=rwc \
    GENERATE_SECRETS=false \
    RUST_LOG=info
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/health || exit 1
STOPSIGNAL SIGTERM
CMD ["onboarding-server"]
