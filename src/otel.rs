//! OpenTelemetry traces (feature `otel`): the `tracing` spans of the HTTP
//! handlers and of the worker exported over OTLP/HTTP.
//!
//! Off unless `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set ([`OtelConfig::from_env`]).
//! [`OtelConfig::start`] builds the exporter and installs the W3C trace
//! context propagation of `onboarding_core::trace`: a submission stores the
//! `traceparent` of the request's span with its batch, and the worker's
//! `process_item` span of each attempt is a child of it, so a request and
//! the items it created share one trace, across processes, retries and
//! jobs the sweeper re-enqueued after a queue lost them.
//!
//! ```rust,no_run
//! use tracing_subscriber::layer::SubscriberExt as _;
//! use tracing_subscriber::util::SubscriberInitExt as _;
//!
//! # fn demo() -> Result<(), String> {
//! let otel = match onboarding::otel::OtelConfig::from_env("onboarding")? {
//!     Some(config) => Some(config.start()?),
//!     None => None,
//! };
//! tracing_subscriber::registry()
//!     .with(otel.as_ref().map(|o| o.layer()))
//!     .init();
//! // … run; at exit, send the spans still buffered:
//! if let Some(otel) = otel {
//!     otel.shutdown();
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The export runs on the SDK's batch thread (`reqwest`'s blocking client,
//! rustls), never on the async runtime; a collector that is down costs
//! dropped spans (bounded queue), not requests.

use std::collections::HashMap;
use std::time::Duration;

use onboarding_core::trace::TracePropagation;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt as _};

/// Where and how spans are exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtelConfig {
    /// The full URL spans are POSTed to (`…/v1/traces`).
    pub traces_endpoint: String,
    /// `service.name` of the resource.
    pub service_name: String,
    /// OTLP/HTTP with protobuf (the default) or JSON bodies.
    pub json: bool,
    /// How long spans wait in the batch before an export; `None`: the SDK's
    /// (`OTEL_BSP_SCHEDULE_DELAY`, 5 s by default).
    pub batch_delay: Option<Duration>,
}

impl OtelConfig {
    /// Spans of `service_name` to this traces URL, protobuf, the SDK's batching.
    pub fn new(traces_endpoint: impl Into<String>, service_name: impl Into<String>) -> Self {
        Self {
            traces_endpoint: traces_endpoint.into(),
            service_name: service_name.into(),
            json: false,
            batch_delay: None,
        }
    }

    /// The configuration of the standard environment variables, `None` when
    /// traces are off (see [`OtelConfig::from_vars`]).
    pub fn from_env(default_service_name: &str) -> Result<Option<Self>, String> {
        Self::from_vars(default_service_name, |name| std::env::var(name).ok())
    }

    /// The configuration of these variables: on when
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is) or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` appended) is set and not
    /// empty, unless `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`;
    /// `OTEL_SERVICE_NAME` (else `default_service_name`);
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` `http/protobuf` (default) or `http/json`
    /// (`grpc` is not built in: an error). The SDK itself reads
    /// `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*` and
    /// `OTEL_EXPORTER_OTLP_HEADERS`.
    pub fn from_vars(
        default_service_name: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, String> {
        let set = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
        {
            return Ok(None);
        }
        let endpoint = match set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Some(url) => url,
            None => match set("OTEL_EXPORTER_OTLP_ENDPOINT") {
                Some(base) => format!("{}/v1/traces", base.trim_end_matches('/')),
                None => return Ok(None),
            },
        };
        let json = match set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .as_deref()
        {
            None | Some("http/protobuf") => false,
            Some("http/json") => true,
            Some(other) => {
                return Err(format!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL={other}: only http/protobuf and http/json are built in"
                ))
            }
        };
        let service_name =
            set("OTEL_SERVICE_NAME").unwrap_or_else(|| default_service_name.to_owned());
        Ok(Some(Self {
            json,
            ..Self::new(endpoint, service_name)
        }))
    }

    /// Builds the exporter and the tracer provider, and installs the trace
    /// context propagation (once per process; a second start exports too but
    /// keeps the first propagation, which reads any layer's spans).
    pub fn start(self) -> Result<Otel, String> {
        let protocol = if self.json {
            Protocol::HttpJson
        } else {
            Protocol::HttpBinary
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(protocol)
            .with_endpoint(self.traces_endpoint.clone())
            .build()
            .map_err(|e| format!("OTLP exporter to {}: {e}", self.traces_endpoint))?;
        let mut batch = BatchConfigBuilder::default();
        if let Some(delay) = self.batch_delay {
            batch = batch.with_scheduled_delay(delay);
        }
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch.build())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(
                Resource::builder()
                    .with_service_name(self.service_name.clone())
                    .build(),
            )
            .build();
        onboarding_core::trace::install(W3cTraceContext);
        Ok(Otel { provider })
    }
}

/// Exporting spans: the layer to add to the subscriber, and the provider to
/// shut down at exit.
#[derive(Debug)]
pub struct Otel {
    provider: SdkTracerProvider,
}

impl Otel {
    /// The `tracing` layer that turns spans into OpenTelemetry spans.
    pub fn layer<S>(&self) -> OpenTelemetryLayer<S, SdkTracer>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("onboarding"))
    }

    /// Exports what is buffered now (blocks up to the export timeout).
    pub fn flush(&self) -> Result<(), String> {
        self.provider.force_flush().map_err(|e| e.to_string())
    }

    /// Exports what is buffered and stops the batch thread (blocks: call it
    /// from `spawn_blocking` or after the runtime's work is done).
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "OpenTelemetry shutdown");
        }
    }
}

/// `traceparent` in and out of `tracing` spans through their OpenTelemetry context.
struct W3cTraceContext;

impl TracePropagation for W3cTraceContext {
    fn traceparent(&self, span: &tracing::Span) -> Option<String> {
        let context = span.context();
        if !context.span().span_context().is_valid() {
            return None;
        }
        let mut carrier: HashMap<String, String> = HashMap::new();
        TraceContextPropagator::new().inject_context(&context, &mut carrier);
        carrier.remove("traceparent")
    }

    fn set_parent(&self, span: &tracing::Span, traceparent: &str) {
        let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
        let context = TraceContextPropagator::new().extract(&carrier);
        if context.span().span_context().is_valid() {
            // Fails only for a span already started or without the layer.
            let _ = span.set_parent(context);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Option<OtelConfig>, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        OtelConfig::from_vars("onboarding-server", |name| vars.get(name).cloned())
    }

    #[test]
    fn off_without_an_endpoint() {
        assert_eq!(config(&[]), Ok(None));
        assert_eq!(config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]), Ok(None));
        assert_eq!(config(&[("OTEL_SERVICE_NAME", "x")]), Ok(None));
    }

    #[test]
    fn endpoint_service_name_and_protocol() {
        let on = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")]);
        assert_eq!(
            on,
            Ok(Some(OtelConfig::new(
                "http://collector:4318/v1/traces",
                "onboarding-server"
            )))
        );
        let on = config(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://traces:4318/custom",
            ),
            ("OTEL_SERVICE_NAME", "api-eu"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ])
        .expect("valid")
        .expect("on");
        assert_eq!(on.traces_endpoint, "http://traces:4318/custom");
        assert_eq!(on.service_name, "api-eu");
        assert!(on.json);
    }

    #[test]
    fn disabled_or_unsupported() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        assert_eq!(config(&[endpoint, ("OTEL_SDK_DISABLED", "true")]), Ok(None));
        assert_eq!(
            config(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")]),
            Ok(None)
        );
        assert!(config(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).is_err());
    }
}
