//! Domain checks by DNS (feature `dns`): a [`Processor`] that fails an item
//! whose domain does not exist before the real work runs.
//!
//! [`DomainCheck`] wraps a deployment's processor. For each item it asks
//! DNS for the organization's domain: the MX records, and when there are
//! none, the A/AAAA records.
//!
//! - Records found: the domain exists; the wrapped processor runs.
//! - `NXDOMAIN`, or no MX, A or AAAA record: the item fails **permanently**
//!   (no retry), its error message starting with [`DOMAIN_NOT_FOUND`].
//! - The resolver times out, answers `SERVFAIL` (or `REFUSED`, or cannot be
//!   reached): the attempt fails **retryably**, its message starting with
//!   [`DNS_UNAVAILABLE`], and the worker's retry policy tries again later.
//!
//! ```rust,no_run
//! use std::sync::Arc;
//! use onboarding::dns::{DnsConfig, DomainCheck};
//! use onboarding::NoopProcessor;
//!
//! # fn demo() -> onboarding::Result<()> {
//! // The system's resolver (/etc/resolv.conf) …
//! let checked = DomainCheck::new(Arc::new(NoopProcessor), DnsConfig::default())?;
//! // … or a given one.
//! let config = DnsConfig::default().with_resolver("10.0.0.2:53".parse().expect("address"));
//! let checked = DomainCheck::new(Arc::new(NoopProcessor), config)?;
//! # let _ = checked;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::{Resolver, TokioResolver};
use onboarding_core::model::Domain;
use onboarding_core::{Error, ErrorKind, ProcessError, Processor, WorkItem};

/// Start of the error message of an item whose domain does not exist.
pub const DOMAIN_NOT_FOUND: &str = "domain_not_found";
/// Start of the error message of an attempt the resolver could not answer.
pub const DNS_UNAVAILABLE: &str = "dns_unavailable";

/// Which resolver to ask and how long to wait.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// The resolver (UDP, TCP for long answers); `None` (the default): the
    /// system's, from `/etc/resolv.conf`.
    pub resolver: Option<SocketAddr>,
    /// Longest wait for one answer (default 2 s).
    pub timeout: Duration,
    /// Tries per question before the attempt fails as unavailable (default 2).
    pub attempts: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            resolver: None,
            timeout: Duration::from_secs(2),
            attempts: 2,
        }
    }
}

impl DnsConfig {
    /// Asks the resolver at `address` instead of the system's.
    pub fn with_resolver(mut self, address: SocketAddr) -> Self {
        self.resolver = Some(address);
        self
    }

    /// Sets the timeout of one answer (at least 10 ms).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(10));
        self
    }

    /// Sets the tries per question (at least 1).
    pub fn with_attempts(mut self, attempts: usize) -> Self {
        self.attempts = attempts.max(1);
        self
    }
}

/// What DNS says about a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// It has MX, A or AAAA records.
    Exists,
    /// It does not exist, or has none of those records; why, in words.
    NotFound(String),
    /// The resolver did not answer (timeout, `SERVFAIL`, …); why, in words.
    Unavailable(String),
}

/// A [`Processor`] that checks the organization's domain in DNS first
/// (see the [module documentation](self)).
pub struct DomainCheck {
    inner: Arc<dyn Processor>,
    resolver: TokioResolver,
}

impl std::fmt::Debug for DomainCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DomainCheck").finish_non_exhaustive()
    }
}

impl DomainCheck {
    /// Wraps `inner`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Invalid`] when the system's resolver configuration
    /// cannot be read (with `resolver: None`) or the resolver cannot be built.
    pub fn new(inner: Arc<dyn Processor>, config: DnsConfig) -> onboarding_core::Result<Self> {
        let invalid = |e: NetError| {
            Error::new(ErrorKind::Invalid, "cannot set up the DNS resolver").with_source(e)
        };
        let mut builder = match config.resolver {
            Some(address) => {
                let connection = |mut c: ConnectionConfig| {
                    c.port = address.port();
                    c
                };
                let server = NameServerConfig::new(
                    address.ip(),
                    true,
                    vec![
                        connection(ConnectionConfig::udp()),
                        connection(ConnectionConfig::tcp()),
                    ],
                );
                Resolver::builder_with_config(
                    ResolverConfig::from_parts(None, Vec::new(), vec![server]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => Resolver::builder_tokio().map_err(invalid)?,
        };
        let options: &mut ResolverOpts = builder.options_mut();
        options.timeout = config.timeout;
        options.attempts = config.attempts;
        // Names are absolute; /etc/hosts says nothing about a customer's domain.
        options.ndots = 0;
        options.use_hosts_file = ResolveHosts::Never;
        let resolver = builder.build().map_err(invalid)?;
        Ok(Self { inner, resolver })
    }

    /// Asks DNS about `domain`: MX records, else A/AAAA records.
    pub async fn lookup(&self, domain: &Domain) -> Lookup {
        // Absolute: no search domains appended.
        let name = format!("{}.", domain.as_str());
        match self.resolver.mx_lookup(name.as_str()).await {
            Ok(mx) if mx.answers().iter().next().is_some() => return Lookup::Exists,
            Ok(_) => {}
            Err(e) if e.is_nx_domain() => {
                return Lookup::NotFound(format!("{domain} does not exist (NXDOMAIN)"))
            }
            Err(e) if e.is_no_records_found() => {}
            Err(e) => return Lookup::Unavailable(format!("MX lookup of {domain}: {e}")),
        }
        match self.resolver.lookup_ip(name.as_str()).await {
            Ok(ips) if ips.iter().next().is_some() => Lookup::Exists,
            Ok(_) => Lookup::NotFound(format!("{domain} has no MX, A or AAAA record")),
            Err(e) if e.is_nx_domain() => {
                Lookup::NotFound(format!("{domain} does not exist (NXDOMAIN)"))
            }
            Err(e) if e.is_no_records_found() => {
                Lookup::NotFound(format!("{domain} has no MX, A or AAAA record"))
            }
            Err(e) => Lookup::Unavailable(format!("address lookup of {domain}: {e}")),
        }
    }
}

#[async_trait]
impl Processor for DomainCheck {
    async fn process(&self, item: &WorkItem) -> Result<(), ProcessError> {
        match self.lookup(&item.organization.domain).await {
            Lookup::Exists => self.inner.process(item).await,
            Lookup::NotFound(why) => Err(ProcessError::Permanent(format!(
                "{DOMAIN_NOT_FOUND}: {why}"
            ))),
            Lookup::Unavailable(why) => {
                Err(ProcessError::Retryable(format!("{DNS_UNAVAILABLE}: {why}")))
            }
        }
    }
}
