//! Baseline for `benches/load.sh` (not a measurement): a bare pingora pass-through proxy, a
//! `ProxyHttp` with only `upstream_peer`, with the same server settings as portcullis (one
//! worker thread, upstream keep-alive pool), the same allocator (mimalloc) and the same build
//! profile (the bench profile inherits the release one: fat LTO, one codegen unit), and the same
//! listener options (HTTP/2 with prior knowledge beside HTTP/1.1 on the one port). The load
//! script sets it beside portcullis's `auth: none` route, which separates pingora's own cost
//! per request from portcullis's; `benches/instructions.sh` counts both.
//!
//! `cargo bench --bench bare_pingora -- LISTEN_ADDR UPSTREAM_ADDR [timeouts]`
//!
//! With `timeouts`, the upstream peer gets the gateway's default upstream timeouts (connect 2 s,
//! read and write 30 s), which cost pingora a timer per read and write: `benches/instructions.sh`
//! counts that too.

use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::upstreams::peer::HttpPeer;
use std::net::SocketAddr;
use std::time::Duration;

/// The gateway's allocator (src/main.rs), so that the difference is code, not malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bare {
    upstream: SocketAddr,
    timeouts: bool,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> pingora::Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream, false, String::new());
        if self.timeouts {
            peer.options.connection_timeout = Some(Duration::from_secs(2));
            peer.options.read_timeout = Some(Duration::from_secs(30));
            peer.options.write_timeout = Some(Duration::from_secs(30));
        }
        Ok(Box::new(peer))
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (listen, upstream, timeouts) = match args.as_slice() {
        [listen, upstream] => (listen, upstream, false),
        [listen, upstream, t] if t == "timeouts" => (listen, upstream, true),
        _ => {
            // `cargo bench` runs every bench target: this one has nothing to measure by itself.
            eprintln!("bare_pingora: usage: cargo bench --bench bare_pingora -- LISTEN UPSTREAM [timeouts]");
            return;
        }
    };
    let mut conf = ServerConf {
        threads: 1,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..ServerConf::default()
    };
    conf.upstream_keepalive_pool_size = 256;
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let upstream = upstream.parse().expect("UPSTREAM is host:port");
    let mut service =
        pingora::proxy::http_proxy_service(&server.configuration, Bare { upstream, timeouts });
    if let Some(proxy) = service.app_logic_mut() {
        let mut options = HttpServerOptions::default();
        options.h2c = true;
        proxy.server_options = Some(options);
    }
    service.add_tcp(listen);
    server.add_service(service);
    server.run_forever();
}
