//! Assemble and run the gateway: the control runtime (key refresh, admin listener), then the
//! pingora server, with a SIGTERM drain that exits as soon as nothing is in flight. Every
//! listener (main, admin, decision) is bound before anything else starts, and config reload (`reload`) and, on a TLS
//! listener, certificate reload (`tls`) are set up before the `listening` line.

use crate::admin::{self, AdminState};
use crate::config::{Limits, Policy};
use crate::decision::{self, DecisionState};
use crate::live::Generation;
use crate::metrics::Metrics;
use crate::proxy::Gateway;
use crate::reload::{ConfigFile, Reloader};
use crate::tls::Certificates;
use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::protocols::http::v2::server::H2Options;
use pingora::server::configuration::ServerConf;
use pingora::server::{
    ListenFds, RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch,
};
use std::net::SocketAddr;
use std::os::fd::IntoRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::Signal;

/// Bind a listener now, so that a port in use stops the start with a message naming it,
/// before anything else runs (pingora would retry a bind for half a minute, serving nothing).
fn bind(addr: SocketAddr, setting: &str) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr).map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr} ({setting}): {e}"),
        )
    })?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// A listener bound in `prepare`, handed to `control`'s reactor.
fn on_runtime(
    control: &tokio::runtime::Runtime,
    listener: std::net::TcpListener,
) -> std::io::Result<tokio::net::TcpListener> {
    let _entered = control.enter();
    tokio::net::TcpListener::from_std(listener)
}

/// A gateway with its listeners bound, ready to serve.
pub struct Prepared {
    /// The main listener's address (port 0 already resolved).
    pub listen: SocketAddr,
    /// The admin listener's bound address.
    pub admin: Option<SocketAddr>,
    /// The decision listener's bound address.
    pub decision: Option<SocketAddr>,
    server: Server,
    drain: Drain,
    control: tokio::runtime::Runtime,
}

/// Bind the listeners, start key refresh and the admin and decision listeners on `control`,
/// and set up pingora for `policy`. A config file, when given, is watched and reloaded on
/// change and on SIGHUP.
pub fn prepare(
    policy: Policy,
    file: Option<ConfigFile>,
    control: tokio::runtime::Runtime,
) -> std::io::Result<Prepared> {
    let main_listener = bind(policy.listen, "listen")?;
    let admin_listener = match policy.admin_listen {
        Some(addr) => Some(bind(addr, "admin_listen")?),
        None => None,
    };
    let decision_listener = match policy.decision_listen {
        Some(addr) => Some(bind(addr, "decision_listen")?),
        None => None,
    };
    let listen = main_listener.local_addr()?;
    let listener_tls = policy.tls.clone();
    let in_flight = Arc::new(AtomicUsize::new(0));
    let draining = Arc::new(AtomicBool::new(false));
    let budget = policy.server.shutdown_grace;
    let delay = policy.server.shutdown_delay;
    let threads = policy.server.threads;
    let metrics = Arc::new(Metrics::new());
    let tracing = &policy.tracing;
    crate::telemetry::install(
        crate::telemetry::Settings {
            otlp_endpoint: tracing.otlp_endpoint.as_deref(),
            sample_ratio: tracing.sample_ratio,
            service_name: &tracing.service_name,
        },
        metrics.tracing_spans_dropped.clone(),
        control.handle(),
    )
    .map_err(std::io::Error::other)?;
    let live = Generation::start(policy, Arc::clone(&metrics), control.handle());
    let admin_addr = match admin_listener {
        Some(listener) => {
            let listener = on_runtime(&control, listener)?;
            let bound = listener.local_addr()?;
            let state = Arc::new(AdminState::new(
                Arc::clone(&live),
                Arc::clone(&metrics),
                Arc::clone(&draining),
            ));
            control.spawn(admin::serve(listener, state));
            Some(bound)
        }
        None => None,
    };
    let decision_addr = match decision_listener {
        Some(listener) => {
            let listener = on_runtime(&control, listener)?;
            let bound = listener.local_addr()?;
            let state = Arc::new(DecisionState {
                live: Arc::clone(&live),
                metrics: Arc::clone(&metrics),
                in_flight: Arc::clone(&in_flight),
            });
            control.spawn(decision::serve(listener, state));
            Some(bound)
        }
        None => None,
    };
    // SIGTERM and SIGINT are caught from here on, before the `listening` line: a signal that
    // arrives before pingora asks for it is kept for the drain, not the default (instant) death.
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        let _entered = control.enter();
        (
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        )
    };
    match file {
        Some(file) => Arc::new(Reloader::new(
            file,
            Arc::clone(&live),
            Arc::clone(&metrics),
            control.handle().clone(),
        ))
        .spawn()?,
        None => ignore_hangup(&control)?,
    }

    let mut conf = ServerConf {
        threads,
        // pingora sleeps this long on SIGTERM: the drain watcher below exits sooner.
        grace_period_seconds: Some(budget.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    conf.upstream_keepalive_pool_size = 256;
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let gateway = Gateway {
        live: Arc::clone(&live),
        metrics: Arc::clone(&metrics),
        in_flight: Arc::clone(&in_flight),
    };
    let limits = live.load().policy.limits.clone();
    let mut service = pingora::proxy::http_proxy_service(&server.configuration, gateway);
    if let Some(proxy) = service.app_logic_mut() {
        // A cleartext listener takes HTTP/2 with prior knowledge next to HTTP/1.1 on the one
        // port (pingora reads the client preface to tell them apart); a TLS one offers h2
        // through ALPN. The HTTP/2 limits are the same either way.
        let mut options = HttpServerOptions::default();
        options.h2c = listener_tls.is_none();
        // An HTTP/2 connection without a request open is closed like an idle HTTP/1.1 one.
        options.h2_idle_timeout = Some(limits.client_idle_timeout);
        proxy.server_options = Some(options);
        proxy.h2_options = Some(h2_options(&limits));
    }
    // The same address key either way: `PreBound` hands pingora the bound socket under it.
    match &listener_tls {
        Some(tls) => {
            let certificates = Arc::new(Certificates::new(tls, Arc::clone(&metrics)));
            let settings = crate::tls::listener_settings(tls, &certificates)?;
            certificates.spawn(control.handle())?;
            service.add_tls_with_settings(&listen.to_string(), None, settings);
        }
        None => service.add_tcp(&listen.to_string()),
    }
    server.add_service(PreBound {
        inner: service,
        listener: Some(main_listener),
        addr: listen.to_string(),
    });

    let policy = &live.load().policy;
    tracing::info!(
        listen = %listen,
        tls = listener_tls.is_some(),
        admin = %admin_addr.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
        decision = %decision_addr.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
        routes = policy.routes.routes().len(),
        issuers = policy.issuers.len(),
        "listening"
    );
    Ok(Prepared {
        listen,
        admin: admin_addr,
        decision: decision_addr,
        server,
        drain: Drain {
            in_flight,
            budget,
            delay,
            draining,
            signals: std::sync::Mutex::new(Some(signals)),
        },
        control,
    })
}

/// Small DATA frames (under 256 bytes: a small gRPC message, a slowly written body) that each
/// open stream may have received and not yet had read, before the connection is refused.
const SMALL_FRAMES_PER_STREAM: usize = 16;

/// The SETTINGS of client HTTP/2 connections, from `limits:` as they are at start.
///
/// The `h2` crate closes a connection (GOAWAY `ENHANCE_YOUR_CALM`, every stream on it lost) once
/// the small DATA frames it holds unread cost more than a budget, by default half the
/// connection window: about 130 frames, which 100 streams sending their bodies in small pieces
/// reach while their requests are judged. The budget here lets every stream the connection may
/// have open hold `SMALL_FRAMES_PER_STREAM` of them (400 KiB of accounting at 100 streams).
fn h2_options(limits: &Limits) -> H2Options {
    let mut options = pingora::protocols::http::v2::server::default_h2_options();
    let streams = usize::try_from(limits.h2_max_concurrent_streams).unwrap_or(usize::MAX);
    options
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(limits.h2_max_header_list_size())
        .data_frame_budget(streams.saturating_mul(SMALL_FRAMES_PER_STREAM * 256));
    options
}

/// Without a config file (the demo) there is nothing to reload: SIGHUP is logged, not fatal.
fn ignore_hangup(control: &tokio::runtime::Runtime) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = {
        let _entered = control.enter();
        signal(SignalKind::hangup())?
    };
    control.spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP: no config file to reload");
        }
    });
    Ok(())
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
pub fn run(
    policy: Policy,
    file: Option<ConfigFile>,
    control: tokio::runtime::Runtime,
) -> std::io::Result<()> {
    prepare(policy, file, control)?.run();
    Ok(())
}

/// pingora's listening service, handed the main listener bound in `prepare`. pingora takes a
/// listener it finds in its fd table (the table of its zero-downtime upgrade) instead of
/// binding the address itself.
struct PreBound<S> {
    inner: S,
    listener: Option<std::net::TcpListener>,
    /// The address as given to `add_tcp`: the key pingora looks the fd up by.
    addr: String,
}

#[async_trait]
impl<S: pingora::services::Service> pingora::services::Service for PreBound<S> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
    ) {
        if let (Some(fds), Some(listener)) = (&fds, self.listener.take()) {
            fds.lock().add(self.addr.clone(), listener.into_raw_fd());
        }
        self.inner
            .start_service(fds, shutdown, listeners_per_fd)
            .await
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn threads(&self) -> Option<usize> {
        self.inner.threads()
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        self.inner.listen_addresses()
    }
}

/// The longest a SIGTERM waits for the collector to take the last spans.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// SIGTERM: `/readyz` 503 at once, keep accepting and serving for `delay`, then stop accepting
/// and exit as soon as no request is in flight, or when the budget (delay included) ends.
/// SIGINT: the same, without waiting.
struct Drain {
    in_flight: Arc<AtomicUsize>,
    budget: Duration,
    /// Spent first, inside `budget` (config refuses a delay above the budget).
    delay: Duration,
    /// Set on the signal: `/readyz` answers 503 from then on.
    draining: Arc<AtomicBool>,
    /// SIGTERM and SIGINT, registered in `prepare` (on the control runtime, which delivers them).
    signals: std::sync::Mutex<Option<(Signal, Signal)>>,
}

#[async_trait]
impl ShutdownSignalWatch for Drain {
    async fn recv(&self) -> ShutdownSignal {
        let taken = self.signals.lock().ok().and_then(|mut s| s.take());
        let Some((mut term, mut int)) = taken else {
            tracing::error!("cannot watch signals");
            return std::future::pending().await;
        };
        let (budget, delay) = tokio::select! {
            _ = term.recv() => (self.budget, self.delay.min(self.budget)),
            _ = int.recv() => (Duration::ZERO, Duration::ZERO),
        };
        let start = Instant::now();
        self.draining.store(true, Ordering::Release);
        if !delay.is_zero() {
            tracing::info!(
                delay_ms = delay.as_millis() as u64,
                "shutting down: /readyz is 503, still accepting until the delay ends"
            );
            // Listeners and connections carry on meanwhile; SIGINT cuts the delay short.
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = int.recv() => return self.exit_now(),
            }
        }
        tracing::info!(
            budget_ms = budget.saturating_sub(start.elapsed()).as_millis() as u64,
            "shutting down: draining in-flight requests"
        );
        let in_flight = Arc::clone(&self.in_flight);
        std::thread::spawn(move || {
            while in_flight.load(Ordering::Acquire) > 0 && start.elapsed() < budget {
                std::thread::sleep(Duration::from_millis(10));
            }
            // The spans of the last requests, queued for their batch: sent now, within what is
            // left of the budget (at most FLUSH_WAIT).
            crate::telemetry::flush(FLUSH_WAIT.min(budget.saturating_sub(start.elapsed())));
            tracing::info!(cut = in_flight.load(Ordering::Acquire), "shutdown complete");
            std::process::exit(0);
        });
        ShutdownSignal::GracefulTerminate
    }
}

impl Drain {
    /// SIGINT during the delay: stop without draining.
    fn exit_now(&self) -> ShutdownSignal {
        tracing::info!(
            cut = self.in_flight.load(Ordering::Acquire),
            "shutdown complete"
        );
        std::process::exit(0);
    }
}
