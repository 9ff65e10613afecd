//! OpenTelemetry traces of the examples: on when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! is set and the examples are built with `--features otel`
//! (`onboarding::otel`); `service.name` is `OTEL_SERVICE_NAME`, else
//! `onboarding-server` / `onboarding-worker`.

/// The exporter when traces are on.
pub struct Traces {
    #[cfg(feature = "otel")]
    otel: Option<onboarding::otel::Otel>,
    /// An endpoint set for a binary built without the feature.
    #[cfg(not(feature = "otel"))]
    ignored: bool,
}

/// The `service.name` when `OTEL_SERVICE_NAME` is unset: `onboarding-server`, `onboarding-worker`.
fn default_service_name() -> String {
    format!("onboarding-{}", env!("CARGO_CRATE_NAME"))
}

#[cfg(feature = "otel")]
impl Traces {
    /// Reads the standard `OTEL_*` variables; starts the exporter when on.
    pub fn from_env() -> Result<Self, String> {
        let otel = match onboarding::otel::OtelConfig::from_env(&default_service_name())? {
            Some(config) => Some(config.start()?),
            None => None,
        };
        Ok(Self { otel })
    }

    /// The layer exporting spans (`info` and above), when on.
    pub fn layer<S>(&self) -> Option<impl tracing_subscriber::Layer<S>>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        use tracing_subscriber::Layer as _;
        self.otel.as_ref().map(|o| {
            o.layer()
                .with_filter(tracing::level_filters::LevelFilter::INFO)
        })
    }

    /// Logs whether traces are exported.
    pub fn announce(&self) {
        if self.otel.is_some() {
            tracing::info!("exporting traces over OTLP");
        }
    }

    /// Exports the spans still buffered (at exit).
    pub async fn shutdown(self) {
        if let Some(otel) = self.otel {
            let _ = tokio::task::spawn_blocking(move || otel.shutdown()).await;
        }
    }
}

#[cfg(not(feature = "otel"))]
impl Traces {
    /// Built without `otel`: nothing to start.
    pub fn from_env() -> Result<Self, String> {
        let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
        Ok(Self {
            ignored: set("OTEL_EXPORTER_OTLP_ENDPOINT")
                || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        })
    }

    /// No layer.
    pub fn layer(&self) -> Option<tracing_subscriber::layer::Identity> {
        None
    }

    /// Warns about an endpoint that is ignored.
    pub fn announce(&self) {
        if self.ignored {
            tracing::warn!(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set but this binary is built without the `otel` feature: no traces are exported"
            );
        }
    }

    /// Nothing to flush.
    pub async fn shutdown(self) {}
}
