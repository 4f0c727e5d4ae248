//! `portcullis demo` starts on loopback and the curl commands it prints work as labelled.
mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_starts_and_its_printed_tokens_get_200_403_and_401() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["demo", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _guard = Kill(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Collect the first four `curl` lines: valid, lacking a scope, expired, no token.
    let mut curls = Vec::new();
    while curls.len() < 4 {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("demo printed its curl commands");
        if line.starts_with("curl -i http") {
            curls.push(line);
        }
    }
    let parse = |line: &str| {
        let url = line.split_whitespace().nth(2).unwrap().to_string();
        let token = line
            .split("Bearer ")
            .nth(1)
            .map(|t| t.trim_end_matches('\'').to_string());
        (url, token)
    };
    let (url, _) = parse(&curls[0]);
    let hostport = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let addr: std::net::SocketAddr = hostport.parse().unwrap();
    let path = url
        .trim_start_matches("http://")
        .trim_start_matches(&hostport)
        .to_string();
    // The banner is printed just before the listener binds.
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut statuses = Vec::new();
    for line in &curls {
        let (_, token) = parse(line);
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let raw =
            format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\n{auth}Connection: close\r\n\r\n");
        let mut r = send_raw(addr, raw.as_bytes()).await;
        // The first request may race the demo issuer's first key fetch.
        for _ in 0..50 {
            if r.status != 503 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            r = send_raw(addr, raw.as_bytes()).await;
        }
        if statuses.is_empty() {
            assert_eq!(r.echo().header("x-auth-subject"), Some("demo-user"));
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses, vec![200, 403, 401, 401]);
}
