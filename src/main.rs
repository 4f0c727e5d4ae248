//! The `portcullis` command line: parse arguments, load the config, start the server.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc instead of glibc malloc: more req/s and lower RSS under load in `benches/load.sh`
/// (BENCHMARKS.md has the numbers; Cargo.toml says why `no_thp`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "portcullis",
    // `portcullis 0.1.0 (git 1a2b3c4d5e6f)`; build.rs records the revision.
    version = concat!(env!("CARGO_PKG_VERSION"), " (git ", env!("PORTCULLIS_REVISION"), ")"),
    about = "Reverse-proxy auth gateway: JWT verification, scope and claim rules, identity headers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with a config file.
    Run {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Validate a config file; exits non-zero with the error on a bad file.
    Check {
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Run the whole thing on loopback with a built-in issuer and echo upstream.
    Demo {
        /// Gateway listener (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
}

/// JSON lines on stdout, filtered by `RUST_LOG`. pingora's own debug and trace output dumps
/// whole request heads (query strings, cookies, tokens), so it is dropped whatever `RUST_LOG`
/// asks: no secret reaches a log line at any level.
fn init_logs() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,pingora=warn,pingora_core=warn,pingora_proxy=warn")
    });
    let no_request_dumps = tracing_subscriber::filter::filter_fn(|meta| {
        !(meta.target().starts_with("pingora") && *meta.level() > tracing::Level::INFO)
    });
    let json = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_writer(std::io::stdout)
        .with_filter(filter)
        .with_filter(no_request_dumps);
    tracing_subscriber::registry().with(json).init();
}

fn control_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("portcullis-control")
        .enable_all()
        .build()
        .context("cannot start the control runtime")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { config } => match portcullis::config::load(&config) {
            Ok(policy) => {
                println!(
                    "{}: ok ({} routes, {} issuers, {} upstreams)",
                    config.display(),
                    policy.routes.routes().len(),
                    policy.issuers.len(),
                    policy.upstreams.len()
                );
                Ok(())
            }
            Err(e) => Err(anyhow::anyhow!(e)),
        },
        Command::Run { config } => {
            init_logs();
            portcullis::reload::load(&config)
                .map_err(anyhow::Error::from)
                .and_then(|(policy, file)| {
                    portcullis::server::run(policy, Some(file), control_runtime()?)
                        .context("cannot start the server")
                })
        }
        Command::Demo { listen } => {
            init_logs();
            portcullis::demo::run(listen).map_err(|e| anyhow::anyhow!("{e}"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
