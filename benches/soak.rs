//! The driver of `benches/soak.sh` (not a measurement): steady load on a real `portcullis run`
//! while its config file is rewritten every few seconds (in place, by rename, and by
//! ConfigMap-style `..data` symlink swaps) and the issuer rotates its signing key twice.
//!
//! Every config generation `k` sends `/stable/**` (token required) to the upstream that answers
//! `gen-<k mod 8>`, and adds a public `/r/<k>`. A client keeps the last generation it was
//! answered by; the generation of each answer must lie between that one and the last one
//! written: anything else was answered under the wrong policy. One request in ten carries a
//! token without the route's scope and must get 403.
//!
//! `cargo bench --bench soak -- PORTCULLIS WORKDIR` with SOAK (seconds, 600), RATE (requests
//! per second, all clients, 400), CONNS (clients, 8), REWRITE (seconds between config writes,
//! 3). Exits 1 when a request failed or was answered under the wrong policy.

#[path = "../tests/common/config.rs"]
mod config;

use bytes::Bytes;
use config::{Config, IssuerBlock, Route};
use http_body_util::Full;
use jsonwebtoken::Algorithm;
use portcullis::demo::issuer::Issuer;
use portcullis::demo::keys::{jwks, now, SigningKey};
use serde_json::json;
use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

const TAGS: u64 = 8;
const AUD: &str = "api://soak";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [binary, work] = args.as_slice() else {
        // `cargo bench` runs every bench target: this one has nothing to measure.
        eprintln!(
            "soak: usage: cargo bench --bench soak -- PORTCULLIS WORKDIR (see benches/soak.sh)"
        );
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ok = runtime.block_on(soak(PathBuf::from(binary), PathBuf::from(work)));
    std::process::exit(if ok { 0 } else { 1 });
}

/// The tokens clients send: one with the route's scope, one without, both signed by the
/// issuer's current key.
struct Tokens {
    good: String,
    no_scope: String,
}

fn mint(key: &SigningKey, iss: &str) -> Tokens {
    let claims = |scope: &str| {
        json!({"iss": iss, "aud": AUD, "sub": "soak", "scope": scope,
               "iat": now(), "exp": now() + 86_400})
    };
    Tokens {
        good: key.mint(&claims("read")),
        no_scope: key.mint(&claims("other")),
    }
}

/// An upstream answering every request 200 with `tag` as its body.
async fn tagged(tag: u64) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = Bytes::from(format!("gen-{tag}"));
    tokio::spawn(portcullis::http1::serve(
        listener,
        move |_req: http::Request<hyper::body::Incoming>| {
            std::future::ready(http::Response::new(Full::new(body.clone())))
        },
    ));
    addr
}

fn generation(k: u64, iss: &str, upstreams: &[SocketAddr]) -> String {
    let tag = k % TAGS;
    Config::new()
        .upstream(
            &format!("u{tag}"),
            &format!("http://{}", upstreams[tag as usize]),
        )
        .default_upstream(&format!("u{tag}"))
        .issuer(
            IssuerBlock::new("idp", iss)
                .discovery()
                .allow_http()
                .audiences(&[AUD])
                .algorithms(&["RS256"])
                .set("refetch_cooldown", "5s"),
        )
        .identity_header("x-auth-subject", "sub")
        .route(Route::new("stable", "/stable/**").scopes("[read]"))
        .route(Route::new(&format!("r{k}"), &format!("/r/{k}")).auth("none"))
        .yaml()
}

/// Replace the config the three ways an operator's tools do, in turn.
fn write_config(dir: &Path, k: u64, yaml: &str) -> &'static str {
    let path = dir.join("config.yaml");
    match k % 3 {
        0 => {
            std::fs::write(&path, yaml).unwrap();
            "in-place"
        }
        1 => {
            let tmp = dir.join(format!(".config.yaml.{k}"));
            std::fs::write(&tmp, yaml).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
            "rename"
        }
        _ => {
            let version = format!("..v{k}");
            std::fs::create_dir(dir.join(&version)).unwrap();
            std::fs::write(dir.join(&version).join("config.yaml"), yaml).unwrap();
            let old = std::fs::read_link(dir.join("..data")).ok();
            std::os::unix::fs::symlink(&version, dir.join("..data_tmp")).unwrap();
            std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
            if std::fs::read_link(&path).is_err() {
                let tmp = dir.join("config.yaml.link");
                std::os::unix::fs::symlink("..data/config.yaml", &tmp).unwrap();
                std::fs::rename(&tmp, &path).unwrap();
            }
            if let Some(old) = old {
                let _ = std::fs::remove_dir_all(dir.join(old));
            }
            "symlink swap"
        }
    }
}

/// (RSS in KiB, open file descriptors) of a process.
fn usage(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (rss, fds)
}

#[derive(Default)]
struct Tally {
    sent: u64,
    ok: u64,
    denied_as_expected: u64,
    failed: u64,
    wrong_policy: u64,
    examples: Vec<String>,
}

async fn soak(binary: PathBuf, work: PathBuf) -> bool {
    let duration = Duration::from_secs(env("SOAK", 600));
    let rate = env("RATE", 400).max(1);
    let conns = env("CONNS", 8).max(1);
    let rewrite = Duration::from_secs(env("REWRITE", 3).max(1));

    let mut key = SigningKey::generate("k1", Algorithm::RS256);
    let issuer = Issuer::start(jwks(&[&key])).await.expect("issuer");
    let iss = issuer.url();
    let tokens = Arc::new(RwLock::new(mint(&key, &iss)));
    let mut upstreams = Vec::new();
    for tag in 0..TAGS {
        upstreams.push(tagged(tag).await);
    }
    let dir = work.join("config");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.yaml"), generation(0, &iss, &upstreams)).unwrap();

    let mut child = Command::new(&binary)
        .args(["run", "-c"])
        .arg(dir.join("config.yaml"))
        .env(
            "RUST_LOG",
            "info,access=off,pingora=warn,pingora_core=warn,pingora_proxy=warn",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start portcullis");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let log_path = work.join("gateway.log");
    let mut log = std::fs::File::create(&log_path).unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("\"message\":\"listening\"") {
                let _ = tx.send(line.clone());
            }
            let _ = writeln!(log, "{line}");
        }
    });
    let listening: serde_json::Value =
        serde_json::from_str(&rx.recv_timeout(Duration::from_secs(30)).expect("listening"))
            .unwrap();
    let base = format!("http://{}", listening["listen"].as_str().unwrap());
    let admin = format!("http://{}", listening["admin"].as_str().unwrap());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(conns as usize + 2)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let ready_by = Instant::now() + Duration::from_secs(30);
    while http
        .get(format!("{admin}/readyz"))
        .send()
        .await
        .map_or(true, |r| r.status() != 200)
    {
        assert!(Instant::now() < ready_by, "gateway never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut clients = Vec::new();
    let period = Duration::from_micros(1_000_000 * conns / rate);
    for c in 0..conns {
        let (http, base, written, stop, tally, tokens) = (
            http.clone(),
            base.clone(),
            Arc::clone(&written),
            Arc::clone(&stop),
            Arc::clone(&tally),
            Arc::clone(&tokens),
        );
        clients.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut seen = 0u64;
            let mut n = c;
            while !stop.load(Ordering::Acquire) {
                tick.tick().await;
                n += 1;
                let no_scope = n % 10 == 0;
                let token = {
                    let t = tokens.read().unwrap();
                    if no_scope {
                        t.no_scope.clone()
                    } else {
                        t.good.clone()
                    }
                };
                let answer = http
                    .get(format!("{base}/stable/{n}"))
                    .bearer_auth(token)
                    .send()
                    .await;
                let answer = match answer {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        (status, r.text().await.unwrap_or_default())
                    }
                    Err(e) => (0, e.to_string()),
                };
                let last = written.load(Ordering::Acquire);
                let mut t = tally.lock().unwrap();
                t.sent += 1;
                let tag = answer
                    .1
                    .strip_prefix("gen-")
                    .and_then(|g| g.parse::<u64>().ok());
                let problem = match (no_scope, answer.0, tag) {
                    (true, 403, _) => {
                        t.denied_as_expected += 1;
                        None
                    }
                    (false, 200, Some(tag)) => {
                        // The one generation in [seen, last] with this tag (TAGS apart).
                        match (seen..=last).rev().find(|g| g % TAGS == tag) {
                            Some(g) => {
                                seen = g;
                                t.ok += 1;
                                None
                            }
                            None => {
                                t.wrong_policy += 1;
                                Some(format!(
                                    "gen-{tag} answered, generations {seen}..={last} possible"
                                ))
                            }
                        }
                    }
                    (_, status, _) => {
                        t.failed += 1;
                        Some(format!("{status} {}", answer.1))
                    }
                };
                if let Some(p) = problem {
                    if t.examples.len() < 10 {
                        t.examples.push(p);
                    }
                }
            }
        }));
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    let start = usage(pid);
    let started = Instant::now();
    let rotations = [duration / 3, duration * 2 / 3];
    let mut rotated = 0;
    let mut k = 0u64;
    let mut slowest = Duration::ZERO;
    let mut slow_reloads = 0;
    let mut ways = std::collections::BTreeMap::<&str, u64>::new();
    while started.elapsed() < duration {
        tokio::time::sleep(rewrite).await;
        if rotated < rotations.len() && started.elapsed() >= rotations[rotated] {
            // As an IdP rotates: publish the next key beside the current one (the key before
            // it leaves the set), and sign with it from now on; the first request with its kid
            // refetches the set.
            rotated += 1;
            let next = SigningKey::generate(&format!("k{}", rotated + 1), Algorithm::RS256);
            issuer.set_jwks(jwks(&[&key, &next]));
            *tokens.write().unwrap() = mint(&next, &iss);
            key = next;
            eprintln!("soak: key rotated to {}", key.kid);
        }
        k += 1;
        written.store(k, Ordering::Release);
        let at = Instant::now();
        let how = write_config(&dir, k, &generation(k, &iss, &upstreams));
        *ways.entry(how).or_default() += 1;
        loop {
            let r = http.get(format!("{base}/r/{k}")).send().await;
            if r.is_ok_and(|r| r.status() == 200) {
                break;
            }
            if at.elapsed() > Duration::from_secs(10) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let took = at.elapsed();
        if took > Duration::from_secs(2) {
            slow_reloads += 1;
        }
        slowest = slowest.max(took);
    }
    let end = usage(pid);
    stop.store(true, Ordering::Release);
    for c in clients {
        let _ = c.await;
    }
    let metrics = http
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let exit = child.wait().map(|s| s.code()).ok().flatten();

    let t = tally.lock().unwrap();
    let interesting = |l: &&str| {
        !l.starts_with('#')
            && (l.contains("config_") || l.contains("jwks_refresh_total") || l.contains("kid_miss"))
    };
    println!(
        "soak: {} s, {} clients, {rate} req/s target, config rewritten every {} s",
        duration.as_secs(),
        conns,
        rewrite.as_secs()
    );
    println!("requests             {}", t.sent);
    println!("  200 right policy   {}", t.ok);
    println!("  403 as expected    {}", t.denied_as_expected);
    println!("  failed             {}", t.failed);
    println!("  wrong policy       {}", t.wrong_policy);
    for e in &t.examples {
        println!("    e.g. {e}");
    }
    println!("config writes        {k} ({ways:?}), slowest in effect after {slowest:?}, {slow_reloads} over 2 s");
    println!("key rotations        {rotated}");
    println!(
        "RSS                  {} KiB at start, {} KiB at end",
        start.0, end.0
    );
    println!(
        "open fds             {} at start, {} at end",
        start.1, end.1
    );
    println!("exit after SIGTERM   {exit:?}");
    println!("gateway log          {}", log_path.display());
    for line in metrics.lines().filter(interesting) {
        println!("  {line}");
    }
    t.failed == 0 && t.wrong_policy == 0 && slow_reloads == 0 && exit == Some(0)
}
