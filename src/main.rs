//! The `portcullis` command line: parse arguments, load the config, start the server.

use anyhow::Context;
use clap::{Parser, Subcommand};
use portcullis::tools::explain::{DpopInput, Request, TokenInput};
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

/// Output of `check`, `explain` and `test`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// Lines for a person.
    Human,
    /// One JSON document.
    Json,
}

// Parsed once per process: the size of its largest variant (`explain`'s options) costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Serve with a config file.
    Run {
        /// The config file (YAML).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate a config file offline and warn about routes that can never match, public
    /// routes that hide protected ones and unused issuers. Exit 0: loads (warnings or not);
    /// 1: does not load; 2: warnings under --strict.
    Check {
        /// The config file (YAML).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
        /// Exit 2 when there are warnings.
        #[arg(long)]
        strict: bool,
    },
    /// Show, step by step, what the gateway would do with one request, offline.
    Explain {
        /// The config file (YAML).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// The request method (upper-case, as the gateway requires).
        #[arg(long, value_name = "M")]
        method: String,
        /// `https://host/path?query` (the host becomes the Host header), or `/path?query`.
        #[arg(long)]
        url: String,
        /// A request header, `Name: value`; repeatable.
        #[arg(long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
        /// A bearer token, verified against the issuer's inline or file keys.
        #[arg(long, conflicts_with = "claims")]
        token: Option<String>,
        /// Send the token (or claims) with the DPoP scheme and this `DPoP` proof.
        #[arg(long, conflicts_with = "dpop_key")]
        dpop_proof: Option<String>,
        /// Send the token (or claims) with the DPoP scheme and a valid proof made now for the
        /// request, signed with this PKCS#8 PEM private key (EC P-256/P-384, Ed25519, RSA).
        #[arg(long, value_name = "PEM_FILE")]
        dpop_key: Option<PathBuf>,
        /// The token's claims as JSON; its signature is not checked, missing iss, aud and exp
        /// are filled in for the route's issuer.
        #[arg(long, value_name = "JSON")]
        claims: Option<String>,
        /// The client's address (default 127.0.0.1).
        #[arg(long, value_name = "IP")]
        peer: Option<std::net::IpAddr>,
        /// The request came over TLS (default: whether the config's listener is TLS).
        #[arg(long, value_name = "BOOL")]
        tls: Option<bool>,
        /// HTTP/2's `:authority` (default: none, as over HTTP/1.1).
        #[arg(long, value_name = "HOST")]
        authority: Option<String>,
        /// The subject of a client certificate the listener verified, RFC 4514
        /// (`CN=alice,O=Example`); needs TLS and `tls.client_ca_file`.
        #[arg(long, value_name = "DN")]
        client_subject: Option<String>,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
    },
    /// Run policy test cases (a YAML file) against a config, offline. Exit 0: all pass;
    /// 1: a case fails or the config does not load; 2: the case file cannot be read.
    Test {
        /// The config file (YAML).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// The case file (YAML): `cases: [{ name, request, claims | token, expect }]`.
        cases: PathBuf,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
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
    // The filter's most verbose level, told to `tracing` and to the `log` bridge: pingora
    // logs through `log`, and without a hint each of its per-request `debug!` calls would reach
    // the subscriber to be dropped there (2% of a pass-through request's CPU, BENCHMARKS.md).
    let max_level = filter
        .max_level_hint()
        .unwrap_or(tracing_subscriber::filter::LevelFilter::TRACE);
    let no_request_dumps = tracing_subscriber::filter::filter_fn(|meta| {
        !(meta.target().starts_with("pingora") && *meta.level() > tracing::Level::INFO)
    })
    .with_max_level_hint(max_level);
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
        Command::Check {
            config,
            format,
            strict,
        } => {
            let report = portcullis::tools::check::check(&config);
            match format {
                Format::Human => {
                    let (out, err) = report.human();
                    emit(&out);
                    eprint!("{err}");
                }
                Format::Json => emit(&format!("{:#}\n", report.json())),
            }
            return ExitCode::from(report.exit_code(strict));
        }
        Command::Explain {
            config,
            method,
            url,
            headers,
            token,
            dpop_proof,
            dpop_key,
            claims,
            peer,
            tls,
            authority,
            client_subject,
            format,
        } => {
            let dpop = match (dpop_proof, dpop_key) {
                (Some(p), _) => Some(DpopInput::Proof(p)),
                (None, Some(k)) => Some(DpopInput::Key(k)),
                (None, None) => None,
            };
            let request = Request {
                method,
                url,
                headers: Vec::new(),
                peer,
                token: TokenInput::None,
                dpop,
                tls,
                authority,
                client_subject,
            };
            return explain(config, request, headers, token, claims, format);
        }
        Command::Test {
            config,
            cases,
            format,
        } => return test(config, cases, format),
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

/// `portcullis explain`: exit 0 whatever the decision; 1 when the config does not load or the
/// request cannot be built.
/// `request` has what the command line gives as is; `headers`, `token` and `claims` are parsed
/// here.
fn explain(
    config: PathBuf,
    mut request: Request,
    headers: Vec<String>,
    token: Option<String>,
    claims: Option<String>,
    format: Format,
) -> ExitCode {
    use portcullis::tools::explain::Explainer;
    let fail = |message: String| {
        eprintln!("error: {message}");
        ExitCode::FAILURE
    };
    let explainer = match Explainer::load(&config) {
        Ok(e) => e,
        Err(e) => return fail(e.to_string()),
    };
    let mut parsed = Vec::new();
    for h in &headers {
        match h.split_once(':') {
            Some((name, value)) => parsed.push((name.to_string(), value.to_string())),
            None => return fail(format!("--header {h:?}: write it as 'Name: value'")),
        }
    }
    let token = match (token, claims) {
        (Some(t), _) => TokenInput::Token(t),
        (None, Some(c)) => match serde_json::from_str(&c) {
            Ok(v @ serde_json::Value::Object(_)) => TokenInput::Claims(v),
            _ => return fail("--claims: give a JSON object, such as '{\"sub\": \"u1\"}'".into()),
        },
        (None, None) => TokenInput::None,
    };
    request.headers = parsed;
    request.token = token;
    match explainer.explain(&request) {
        Ok(e) => {
            match format {
                Format::Human => emit(&e.human()),
                Format::Json => emit(&format!("{:#}\n", e.json())),
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e.to_string()),
    }
}

/// `portcullis test`: exit 0 when every case passes, 1 when one fails or the config does not
/// load, 2 when the case file cannot be read.
fn test(config: PathBuf, cases: PathBuf, format: Format) -> ExitCode {
    let cases = match portcullis::tools::test::read_cases(&cases) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let explainer = match portcullis::tools::explain::Explainer::load(&config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcomes = portcullis::tools::test::run(&explainer, &cases);
    match format {
        Format::Human => emit(&portcullis::tools::test::human(&outcomes)),
        Format::Json => emit(&format!("{:#}\n", portcullis::tools::test::json(&outcomes))),
    }
    if outcomes.iter().all(|o| o.differences.is_empty()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Write a command's output to stdout. A reader that went away (`| head -c 600`: a broken pipe)
/// is not an error: the rest of the output is dropped and the command exits as it would have.
fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: cannot write the output: {e}");
        }
    }
}
