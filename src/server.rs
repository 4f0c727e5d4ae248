//! Assemble and run the gateway: the control runtime (key refresh, admin listener), then the
//! pingora server, with a SIGTERM drain that exits as soon as nothing is in flight.

use crate::admin::{self, AdminState};
use crate::config::Policy;
use crate::keys::{IssuerKeyConfig, KeyStore};
use crate::metrics::Metrics;
use crate::proxy::Gateway;
use crate::token::Authenticator;
use async_trait::async_trait;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Build the live key store from the policy's key plans (inline key sets were parsed at load).
pub fn key_store(policy: &Policy) -> KeyStore {
    KeyStore::new(
        policy
            .keys
            .iter()
            .zip(&policy.issuers)
            .map(|(plan, rules)| {
                for skipped in &plan.skipped {
                    tracing::warn!(issuer = %rules.name, "inline jwks: {skipped}");
                }
                IssuerKeyConfig {
                    name: rules.name.clone(),
                    settings: plan.settings.clone(),
                    inline: plan.inline.clone(),
                    hmac_only: plan.hmac_only,
                }
            })
            .collect(),
    )
}

/// Resolve port 0 to a free port now, so the address can be reported before pingora binds it.
fn concrete(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    std::net::TcpListener::bind(addr)?.local_addr()
}

/// A gateway with its listeners chosen, ready to serve.
pub struct Prepared {
    /// The main listener's address (port 0 already resolved).
    pub listen: SocketAddr,
    /// The admin listener's bound address.
    pub admin: Option<SocketAddr>,
    server: Server,
    drain: Drain,
    control: tokio::runtime::Runtime,
}

/// Start key refresh and the admin listener on `control`, and set up pingora for `policy`.
pub fn prepare(policy: Policy, control: tokio::runtime::Runtime) -> std::io::Result<Prepared> {
    let policy = Arc::new(policy);
    let metrics = Arc::new(Metrics::new());
    let keys = Arc::new(key_store(&policy));
    let auth = Arc::new(Authenticator::new(policy.limits.token_cache_entries));
    let in_flight = Arc::new(AtomicUsize::new(0));

    let cache = Arc::clone(&auth);
    keys.on_change(Arc::new(move |issuer, set| {
        cache.forget_removed_keys(issuer, set)
    }));
    keys.spawn_refreshers(control.handle(), Arc::clone(&metrics));
    let admin_addr = match policy.admin_listen {
        Some(addr) => {
            let listener = control.block_on(tokio::net::TcpListener::bind(addr))?;
            let bound = listener.local_addr()?;
            let state = Arc::new(AdminState::new(
                Arc::clone(&keys),
                Arc::clone(&metrics),
                Arc::clone(&auth),
            ));
            control.spawn(admin::serve(listener, state));
            Some(bound)
        }
        None => None,
    };
    let listen = concrete(policy.listen)?;

    let mut conf = ServerConf {
        threads: policy.server.threads,
        // pingora sleeps this long on SIGTERM: the drain watcher below exits sooner.
        grace_period_seconds: Some(policy.server.shutdown_grace.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    conf.upstream_keepalive_pool_size = 256;
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let gateway = Gateway {
        policy: Arc::clone(&policy),
        keys,
        auth,
        metrics,
        in_flight: Arc::clone(&in_flight),
    };
    let mut service = pingora::proxy::http_proxy_service(&server.configuration, gateway);
    service.add_tcp(&listen.to_string());
    server.add_service(service);

    tracing::info!(
        listen = %listen,
        admin = %admin_addr.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
        routes = policy.routes.routes().len(),
        issuers = policy.issuers.len(),
        "listening"
    );
    Ok(Prepared {
        listen,
        admin: admin_addr,
        server,
        drain: Drain {
            in_flight,
            budget: policy.server.shutdown_grace,
        },
        control,
    })
}

impl Prepared {
    /// Serve until SIGTERM / SIGINT. Blocks; the process exits from the drain watcher.
    pub fn run(self) {
        self.server.run(RunArgs {
            shutdown_signal: Box::new(self.drain),
        });
        drop(self.control);
    }
}

/// Compile-and-serve in one call: what `portcullis run` does.
pub fn run(policy: Policy, control: tokio::runtime::Runtime) -> std::io::Result<()> {
    prepare(policy, control)?.run();
    Ok(())
}

/// Counts a request as in flight for as long as it lives: SIGTERM waits for none to be left.
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    pub fn enter(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(count))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// SIGTERM: stop accepting, then exit as soon as no request is in flight, or when the budget
/// ends. SIGINT: the same, without waiting.
struct Drain {
    in_flight: Arc<AtomicUsize>,
    budget: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for Drain {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot watch signals");
            return std::future::pending().await;
        };
        let budget = tokio::select! {
            _ = term.recv() => self.budget,
            _ = int.recv() => Duration::ZERO,
        };
        tracing::info!(
            budget_ms = budget.as_millis() as u64,
            "shutting down: draining in-flight requests"
        );
        let in_flight = Arc::clone(&self.in_flight);
        std::thread::spawn(move || {
            let start = Instant::now();
            while in_flight.load(Ordering::Acquire) > 0 && start.elapsed() < budget {
                std::thread::sleep(Duration::from_millis(10));
            }
            tracing::info!(cut = in_flight.load(Ordering::Acquire), "shutdown complete");
            std::process::exit(0);
        });
        ShutdownSignal::GracefulTerminate
    }
}
