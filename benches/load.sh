#!/usr/bin/env bash
# End-to-end load benchmark (documented in BENCHMARKS.md).
#
# On loopback, wrk (one thread) pinned to CPU 0; each server under test and the nginx static
# upstream pinned together to CPU 1, one worker each, each its own process. Configurations, run
# interleaved in ROUNDS rounds, every response's status checked (any non-2xx is counted and
# reported):
#
#   nginx_direct          wrk -> nginx upstream (static 200)
#   nginx_proxy           wrk -> nginx pass-through proxy (keep-alive upstream pool) -> upstream
#   haproxy_jwt           wrk -> HAProxy 2.6 jwt_verify RS256 + iss/aud/exp checks, distinct tokens
#   pingora_bare          wrk -> a bare pingora pass-through proxy (benches/bare_pingora.rs)
#   portcullis_pass       wrk -> portcullis `auth: none` route
#   portcullis_pass_logs  the same with portcullis's per-request JSON log on (to /dev/null)
#   portcullis_one        wrk -> portcullis `auth: required` route, one token (cache hits)
#   portcullis_distinct   wrk -> the same route, a different token on every request (no hits)
#   portcullis_nocache    the same with the token cache off (limits.token_cache_entries: 0)
#
# portcullis is restarted for each measurement, so every run starts with an empty token cache.
# Then: latency at half of portcullis_one's throughput (pass-through vs one token, p99), and RSS
# (idle; after 100,000 distinct tokens are cached; over a soak of SOAK seconds).
#
# Two more parts, not run unless PARTS names them, measure HTTP/2 with h2load (one thread on
# CPU 0, CONNS connections, STREAMS concurrent streams on each, DURATION seconds, ROUNDS rounds;
# every response's status checked like wrk's):
#
#   h2c    HTTP/1.1 next to h2c through portcullis to the nginx HTTP/1.1 upstream:
#            h1_pass (wrk) / h2c_pass (h2load)   the `auth: none` route
#            h1_one (wrk) / h2c_one (h2load)     the `auth: required` route, one token
#   grpc   gRPC-shaped POSTs (content-type application/grpc, te: trailers, a 5+6 byte framed
#          message) with one token to a `read:orders` route whose upstream is nginx speaking
#          h2c (`protocol: h2c`), its answer a 200 with a `grpc-status: 0` trailer:
#            grpc_direct    h2load -> nginx h2c upstream
#            grpc_one       h2load -> portcullis -> nginx h2c upstream
#
# And one more, the decision listener (PARTS="decision"), wrk with one token, HTTP/1.1:
#   proxy_one       wrk -> portcullis proxy -> nginx upstream (the same as portcullis_one)
#   decision_one    wrk -> the decision listener, a Traefik-style forward-auth request
#                   (X-Forwarded-Method/-Proto/-Host/-Uri and the token): 200 and identity
#   nginx_auth_one  wrk -> nginx with auth_request (README's snippet as written, addresses
#                   replaced) -> the decision listener, then -> nginx upstream
#   nginx_proxy     wrk -> nginx pass-through proxy (for scale)
#
# And the tracing part (PARTS="tracing"), wrk with one token, HTTP/1.1, the same rounds: the
# proxy with tracing off, and on with sample_ratio 0.01 and 1.0, exporting over OTLP/gRPC to a
# collector that answers at once (benches/otlp_sink.rs, on the wrk CPU); with the spans the
# collector received and portcullis_tracing_spans_dropped_total after each run:
#   trace_off       wrk -> portcullis (no tracing: block) -> nginx upstream
#   trace_001       the same with tracing on, sample_ratio: 0.01
#   trace_100       the same with tracing on, sample_ratio: 1.0
#
# Usage: benches/load.sh            (from the repository root; Debian 12, root for apt-get)
#        PARTS="h2c grpc" DURATION=2 ROUNDS=1 benches/load.sh   (the HTTP/2 parts alone)
# Knobs: PARTS="throughput latency memory" (also: h2c grpc; HALF_RPS=n sets the latency test's rate when
#        throughput is not run) ROUNDS=3 DURATION=4 CONNS=32 STREAMS=10 TOKENS=100000 SOAK=600
#        BASE_PORT=28080 (nine ports)
#        WORK=/tmp/dir (minted tokens are kept there and reused)
#        PORTCULLIS=path (default: build target/release/portcullis)
#        BARE_PINGORA=path (default: build the bare_pingora bench target)
#        PORTCULLIS_ALT=path: a second build (another allocator, say) measured in the same
#        rounds as alt_pass, alt_one, alt_distinct, alt_nocache, with its RSS beside the first one's.
#        ONLY="config ..." measures only the named throughput configurations.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/support/lib.sh
. benches/support/lib.sh

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-4}
CONNS=${CONNS:-32}
STREAMS=${STREAMS:-10}
TOKENS=${TOKENS:-100000}
SOAK=${SOAK:-600}
WRK_CPU=${WRK_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
WORK=${WORK:-$(mktemp -d /tmp/portcullis-load.XXXXXX)}
PARTS=${PARTS:-throughput latency memory}
ISS="https://issuer.example/"
AUD="api://load"
BASE_PORT=${BASE_PORT:-28080}
P_UP=$BASE_PORT P_NGINX=$((BASE_PORT + 1)) P_HAPROXY=$((BASE_PORT + 2))
P_PORTCULLIS=$((BASE_PORT + 3)) P_ADMIN=$((BASE_PORT + 4)) P_UP_H2C=$((BASE_PORT + 5))
P_DECISION=$((BASE_PORT + 6)) P_NGINX_AUTH=$((BASE_PORT + 7)) P_OTLP=$((BASE_PORT + 8))
for p in $P_UP $P_NGINX $P_HAPROXY $P_PORTCULLIS $P_ADMIN $P_UP_H2C $P_DECISION $P_NGINX_AUTH $P_OTLP; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "port $p is already in use: set BASE_PORT to a free range of nine ports" >&2
    exit 1
  fi
done

log() { printf '== %s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------------------
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
# Debian starts the packaged services; they are not ours to measure.
for svc in nginx haproxy; do
  if command -v systemctl >/dev/null 2>&1; then systemctl stop "$svc" >/dev/null 2>&1 || true; fi
done

if [ -z "${PORTCULLIS:-}" ]; then
  log "building portcullis (release profile)"
  cargo build --release --locked --quiet
  PORTCULLIS=target/release/portcullis
fi
if [ -z "${BARE_PINGORA:-}" ]; then
  log "building the bare pingora baseline (bench profile)"
  BARE_PINGORA=$(cargo bench --locked --quiet --bench bare_pingora --no-run --message-format=json 2>/dev/null \
    | grep '"name":"bare_pingora"' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
  [ -x "$BARE_PINGORA" ] || { echo "could not build benches/bare_pingora.rs" >&2; exit 1; }
fi
if [ "$(wc -l <"$WORK/tokens.txt" 2>/dev/null || echo 0)" != "$TOKENS" ]; then
  log "minting $TOKENS tokens into $WORK"
  cargo bench --locked --quiet --bench mint -- "$WORK" "$TOKENS" "$ISS" "$AUD"
fi

# --- configs -----------------------------------------------------------------------------
nginx_conf up <<EOF
  server {
    listen 127.0.0.1:$P_UP default_server;
    location / { return 200 "ok\n"; }
  }
  # HTTP/2 without TLS (prior knowledge): the h2c upstream of the grpc part. A gRPC-shaped
  # answer (the body is not a framed message: nginx cannot write its NUL bytes), then
  # grpc-status 0 as a trailer.
  server {
    listen 127.0.0.1:$P_UP_H2C http2;
    location / {
      default_type application/grpc;
      add_trailer grpc-status 0 always;
      return 200 "ok";
    }
  }
EOF
nginx_conf proxy <<EOF
  upstream up {
    server 127.0.0.1:$P_UP;
    keepalive 64;
    keepalive_requests 10000000;
  }
  server {
    listen 127.0.0.1:$P_NGINX default_server;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
EOF
# HAProxy's documented jwt_verify recipe, with the same rules portcullis applies (alg, iss,
# aud, signature, exp); the key is loaded once at start.
cat >"$WORK/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind 127.0.0.1:$P_HAPROXY
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.jwt_alg) var(txn.bearer),jwt_header_query('\$.alg')
  http-request set-var(txn.iss) var(txn.bearer),jwt_payload_query('\$.iss')
  http-request set-var(txn.aud) var(txn.bearer),jwt_payload_query('\$.aud')
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
  http-request set-var(txn.now) date()
  http-request deny deny_status 401 unless { var(txn.jwt_alg) -m str RS256 }
  http-request deny deny_status 401 unless { var(txn.iss) -m str $ISS }
  http-request deny deny_status 401 unless { var(txn.aud) -m str $AUD }
  http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.jwt_alg,"$WORK/pubkey.pem") -m int 1 }
  http-request deny deny_status 401 if { var(txn.exp),sub(txn.now) -m int lt 0 }
  default_backend be
backend be
  server up 127.0.0.1:$P_UP
EOF
# The gateway's config comes from the config builder the tests use (tests/common/config.rs),
# through the mint tool: `pass` (auth: none) and `api` (read:orders) routes, one issuer with the
# minted key, a token cache that holds every minted token, one worker thread.
cargo bench --locked --quiet --bench mint -- config "127.0.0.1:$P_PORTCULLIS" "127.0.0.1:$P_ADMIN" \
  "127.0.0.1:$P_UP" "127.0.0.1:$P_UP_H2C" "$WORK/jwks.json" "$ISS" "$AUD" >"$WORK/portcullis.yaml"
# The same with the token cache off (portcullis_nocache: what verification costs when every
# token is new and nothing is remembered), and without the h2c upstream and its route for a
# second binary (PORTCULLIS_ALT) that may predate them.
sed 's/token_cache_entries: .*/token_cache_entries: 0/' "$WORK/portcullis.yaml" >"$WORK/portcullis-nocache.yaml"
awk '/^  nginx_h2c:/ {next} /^  - name: grpc$/ {skip=1; next} skip && /^    / {next} {skip=0; print}' \
  "$WORK/portcullis.yaml" >"$WORK/portcullis-alt.yaml"
sed 's/token_cache_entries: .*/token_cache_entries: 0/' "$WORK/portcullis-alt.yaml" >"$WORK/portcullis-alt-nocache.yaml"
# The decision part: the same policy with the decision listener on, believing loopback.
{ cat "$WORK/portcullis.yaml"; printf 'decision_listen: 127.0.0.1:%s\ntrusted_proxies: [127.0.0.1/32]\n' "$P_DECISION"; } \
  >"$WORK/portcullis-decision.yaml"
# The tracing part: the same policy exporting spans to the sink at two sample ratios.
for ratio in 0.01 1.0; do
  { cat "$WORK/portcullis.yaml"; printf 'tracing: { otlp_endpoint: "http://127.0.0.1:%s", sample_ratio: %s }\n' "$P_OTLP" "$ratio"; } \
    >"$WORK/portcullis-trace-$ratio.yaml"
done
# nginx in front of it: the README's auth_request snippet as written, its addresses replaced.
nginx_conf auth < <(awk '/^<!-- nginx -->$/ {on=1; next} on && /^```nginx$/ {next} on && /^```$/ {exit} on' README.md \
  | sed -e "s|listen 80;|listen 127.0.0.1:$P_NGINX_AUTH;|" -e "s|http://app:8080|http://127.0.0.1:$P_UP|" \
        -e "s|http://127.0.0.1:8181|http://127.0.0.1:$P_DECISION|")
# The grpc part's request body: a length-prefixed HealthCheckRequest{service: "load"}.
printf '\x00\x00\x00\x00\x06\x0a\x04load' >"$WORK/grpc.bin"

# wrk scripts: count every non-2xx response and print one machine-readable line.
cat >"$WORK/common.lua" <<'EOF'
local threads = {}
function setup(thread) table.insert(threads, thread) end
bad = 0
function response(status, headers, body)
  if status < 200 or status > 299 then bad = bad + 1 end
end
function done(summary, latency, requests)
  local nb = 0
  for _, t in ipairs(threads) do nb = nb + t:get("bad") end
  local e = summary.errors
  io.write(string.format("RESULT requests=%d rps=%.1f p50=%d p99=%d non2xx=%d errors=%d\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), nb,
    e.connect + e.read + e.write + e.status + e.timeout))
end
EOF
{ cat "$WORK/common.lua"; cat <<EOF
wrk.headers["Authorization"] = "Bearer $(cat "$WORK/token.txt")"
EOF
} >"$WORK/one.lua"
{ cat "$WORK/common.lua"; cat <<EOF
local tokens = {}
local i = 0
function init(args)
  for line in io.lines("$WORK/tokens.txt") do tokens[#tokens + 1] = line end
end
function request()
  i = i % #tokens + 1
  return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. tokens[i] })
end
EOF
} >"$WORK/distinct.lua"
# Paced: each connection sends one request per millisecond (plus the response time).
for s in common one; do
  { cat "$WORK/$s.lua"; echo 'function delay() return 1 end'; } >"$WORK/$s-paced.lua"
done
# A forward-auth request as Traefik sends it, with the token.
{ cat "$WORK/one.lua"; cat <<EOF
wrk.headers["X-Forwarded-Method"] = "GET"
wrk.headers["X-Forwarded-Proto"] = "http"
wrk.headers["X-Forwarded-Host"] = "127.0.0.1"
wrk.headers["X-Forwarded-Uri"] = "/api/orders/7"
EOF
} >"$WORK/forward-auth.lua"

# --- processes ---------------------------------------------------------------------------
PIDS=()
cleanup() {
  for p in "${PIDS[@]}" ${PORTCULLIS_PID:-}; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/up/nginx.pid" ] && kill "$(cat "$WORK/up/nginx.pid")" 2>/dev/null || true
  [ -f "$WORK/proxy/nginx.pid" ] && kill "$(cat "$WORK/proxy/nginx.pid")" 2>/dev/null || true
  [ -f "$WORK/auth/nginx.pid" ] && kill "$(cat "$WORK/auth/nginx.pid")" 2>/dev/null || true
}
trap cleanup EXIT


start_nginx() { # dir
  taskset -c "$SERVER_CPU" nginx -p "$WORK/$1" -c "$WORK/$1/nginx.conf" -e "$WORK/$1/error.log"
}

PORTCULLIS_PID=
start_portcullis() { # RUST_LOG value [binary [config]]
  RUST_LOG=$1 taskset -c "$SERVER_CPU" "${2:-$PORTCULLIS}" run -c "${3:-$WORK/portcullis.yaml}" \
    >/dev/null 2>"$WORK/portcullis.err" &
  PORTCULLIS_PID=$!
  wait_port $P_PORTCULLIS
  for _ in $(seq 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P_ADMIN/readyz")" = 200 ] && return 0
    sleep 0.05
  done
  echo "portcullis never became ready" >&2
  exit 1
}
stop_portcullis() {
  kill -TERM "$PORTCULLIS_PID" 2>/dev/null || true
  for _ in $(seq 60); do kill -0 "$PORTCULLIS_PID" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$PORTCULLIS_PID" 2>/dev/null || true
  wait "$PORTCULLIS_PID" 2>/dev/null || true
  PORTCULLIS_PID=
}
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
metric() { # name-and-labels prefix
  curl -s "http://127.0.0.1:$P_ADMIN/metrics" | awk -v m="$1" 'index($0, m) == 1 {print $2}' | head -1
}

run_wrk() { # script url [duration] [connections] -> RESULT line
  taskset -c "$WRK_CPU" wrk -t1 -c"${4:-$CONNS}" -d"${3:-$DURATION}s" --latency -s "$WORK/$1" "$2" \
    | grep '^RESULT' || { echo "RESULT requests=0 rps=0 p50=0 p99=0 non2xx=-1 errors=-1"; }
}
field() { sed -n "s/.*$1=\\([^ ]*\\).*/\\1/p"; }
# h2load's summary as a RESULT line like run_wrk's (h2load gives a mean, not percentiles).
run_h2load() { # url [h2load options...] -> RESULT line
  local url=$1
  shift
  taskset -c "$WRK_CPU" h2load -t1 -c"$CONNS" -m"$STREAMS" -D"$DURATION" "$@" "$url" 2>&1 | awk '
    /^finished in/ { rps = $4 }
    /^requests:/ { total = $2; failed = $10; errored = $12; timeout = $14 }
    /^status codes:/ { ok = $3 }
    /^time for request:/ { mean = $6 }
    END { printf "RESULT requests=%d rps=%.1f mean=%s non2xx=%d errors=%d\n",
      total, rps, mean, total - ok, failed + errored + timeout }' | grep '^RESULT' \
    || echo "RESULT requests=0 rps=0 mean=0 non2xx=-1 errors=-1"
}

log "starting nginx upstream, nginx proxy, HAProxy (all on CPU $SERVER_CPU)"
start_nginx up
wait_port $P_UP
start_nginx proxy
wait_port $P_NGINX
taskset -c "$SERVER_CPU" haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
PIDS+=($!)
wait_port $P_HAPROXY
# Sanity: each path answers 200 before anything is measured.
tok=$(cat "$WORK/token.txt")
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $tok" "http://127.0.0.1:$P_HAPROXY/api/x")" = 200 ] \
  || { echo "HAProxy refused a valid token" >&2; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P_HAPROXY/api/x")" = 401 ] \
  || { echo "HAProxy accepted a request without a token" >&2; exit 1; }

CONFIGS="nginx_direct nginx_proxy haproxy_jwt pingora_bare portcullis_pass portcullis_pass_logs portcullis_one portcullis_distinct portcullis_nocache"
[ -n "${PORTCULLIS_ALT:-}" ] && CONFIGS="$CONFIGS alt_pass alt_one alt_distinct alt_nocache"
# ONLY="a b ...": measure these configurations alone (the summary's ratios need both sides).
if [ -n "${ONLY:-}" ]; then
  CONFIGS=$(for c in $CONFIGS; do case " $ONLY " in *" $c "*) echo "$c" ;; esac; done | xargs)
fi
declare -A RPS
measure() { # config -> appends rps to RPS[config]
  local c=$1 line
  case $c in
    nginx_direct) line=$(run_wrk common.lua "http://127.0.0.1:$P_UP/pass/x") ;;
    nginx_proxy) line=$(run_wrk common.lua "http://127.0.0.1:$P_NGINX/pass/x") ;;
    haproxy_jwt) line=$(run_wrk distinct.lua "http://127.0.0.1:$P_HAPROXY/api/orders/7") ;;
    pingora_bare)
      taskset -c "$SERVER_CPU" "$BARE_PINGORA" "127.0.0.1:$P_PORTCULLIS" "127.0.0.1:$P_UP" >/dev/null 2>&1 &
      local bare=$!
      wait_port $P_PORTCULLIS
      line=$(run_wrk common.lua "http://127.0.0.1:$P_PORTCULLIS/pass/x")
      kill -KILL $bare
      wait $bare 2>/dev/null || true
      ;;
    portcullis_* | alt_*)
      local bin=$PORTCULLIS level=warn config=$WORK/portcullis.yaml
      [ "${c#alt_}" != "$c" ] && bin=$PORTCULLIS_ALT config=$WORK/portcullis-alt.yaml
      [ "$c" = portcullis_pass_logs ] && level=info
      [ "$c" = portcullis_nocache ] && config=$WORK/portcullis-nocache.yaml
      [ "$c" = alt_nocache ] && config=$WORK/portcullis-alt-nocache.yaml
      start_portcullis "$level" "$bin" "$config"
      case ${c#*_} in
        pass | pass_logs) line=$(run_wrk common.lua "http://127.0.0.1:$P_PORTCULLIS/pass/x") ;;
        one) line=$(run_wrk one.lua "http://127.0.0.1:$P_PORTCULLIS/api/orders/7") ;;
        distinct | nocache)
          line=$(run_wrk distinct.lua "http://127.0.0.1:$P_PORTCULLIS/api/orders/7")
          line="$line hits=$(metric 'portcullis_token_cache_requests_total{result="hit"}' | grep . || echo 0)"
          ;;
      esac
      stop_portcullis
      ;;
  esac
  printf '%-22s round %s  %s\n' "$c" "$r" "$line"
  [ "$(echo "$line" | field non2xx)" = 0 ] && [ "$(echo "$line" | field errors)" = 0 ] \
    || echo "   ^ NOT ALL RESPONSES WERE 2xx: this run does not count" >&2
  [ "$(echo "$line" | field hits)" = "" ] || [ "$(echo "$line" | field hits)" = 0 ] \
    || echo "   ^ TOKENS REPEATED (cache hits): not a distinct-token run; raise TOKENS" >&2
  RPS[$c]="${RPS[$c]:-} $(echo "$line" | field rps)"
  ROUND_RPS[$c,$r]=$(echo "$line" | field rps)
}
declare -A ROUND_RPS
# The median over rounds of a/b taken within each round: other load on a shared machine comes
# and goes between rounds, and a ratio of two medians could mix a quiet round with a busy one.
round_ratio() {
  local r out=""
  for r in $(seq "$ROUNDS"); do out="$out $(ratio "${ROUND_RPS[$1,$r]:-0}" "${ROUND_RPS[$2,$r]:-0}")"; done
  echo "$(echo "$out" | median) (rounds:$out)"
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {print $2/1048576 " GiB"}' /proc/meminfo); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "wrk -t1 -c$CONNS -d${DURATION}s on CPU $WRK_CPU; servers on CPU $SERVER_CPU; $ROUNDS interleaved rounds"
has() { [ "${PARTS#*"$1"}" != "$PARTS" ]; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", (b > 0) ? a / b : 0}'; }
verdict() { awk -v x="$1" -v t="$2" 'BEGIN {print (x >= t) ? "met" : "NOT MET"}'; }
declare -A MED
read -r -a ALL <<<"$CONFIGS"
if has throughput; then
for r in $(seq "$ROUNDS"); do
  # Rotate the order each round so no configuration always runs first or last.
  for k in $(seq 0 $((${#ALL[@]} - 1))); do
    measure "${ALL[$(((k + r - 1) % ${#ALL[@]}))]}"
  done
done

echo
echo "median req/s over $ROUNDS rounds:"
for c in $CONFIGS; do
  MED[$c]=$(echo "${RPS[$c]}" | median)
  printf '  %-22s %10.0f   (%s)\n' "$c" "${MED[$c]}" "${RPS[$c]# }"
done
t1=$(round_ratio portcullis_one portcullis_pass)
t2=$(round_ratio portcullis_distinct haproxy_jwt)
t3=$(round_ratio portcullis_pass nginx_proxy)
t4=$(round_ratio portcullis_pass pingora_bare)
t5=$(round_ratio portcullis_nocache haproxy_jwt)
echo
echo "targets (median of the ratios taken within each round):"
echo "  1. one token / pass-through             $t1  (>= 0.97: $(verdict "${t1%% *}" 0.97))"
echo "  2. distinct tokens / HAProxy jwt_verify $t2  (>= 1.15: $(verdict "${t2%% *}" 1.15))"
echo "     the same, token cache off            $t5  (>= 1.15: $(verdict "${t5%% *}" 1.15))"
echo "  3. pass-through / nginx proxy           $t3  (>= 0.75: $(verdict "${t3%% *}" 0.75))"
echo "  4. pass-through / bare pingora          $t4  (>= 0.98: $(verdict "${t4%% *}" 0.98))"
echo "  bare pingora / nginx proxy              $(round_ratio pingora_bare nginx_proxy)"
echo "  pass-through with request log / without $(round_ratio portcullis_pass_logs portcullis_pass)"
echo "  HAProxy jwt_verify / nginx proxy        $(round_ratio haproxy_jwt nginx_proxy)"
if [ -n "${PORTCULLIS_ALT:-}" ]; then
  echo "  second binary / first: pass-through     $(round_ratio alt_pass portcullis_pass)"
  echo "                         one token        $(round_ratio alt_one portcullis_one)"
  echo "                         distinct tokens  $(round_ratio alt_distinct portcullis_distinct)"
  echo "                         cache off        $(round_ratio alt_nocache portcullis_nocache)"
fi
fi

# --- target 4: added latency at half of maximum load -------------------------------------
# wrk has no fixed-rate mode: each connection sends a request, waits for the answer, then
# pauses 1 ms. A calibration run sets the connection count that gives half the maximum.
if has latency; then
half=${HALF_RPS:-$(awk -v m="${MED[portcullis_one]:-0}" 'BEGIN {printf "%d", m / 2}')}
start_portcullis warn
line=$(run_wrk one-paced.lua "http://127.0.0.1:$P_PORTCULLIS/api/orders/7" 3 8)
stop_portcullis
conns=$(awk -v h="$half" -v r="$(echo "$line" | field rps)" 'BEGIN {c = int(8 * h / ((r > 0) ? r : 1) + 0.5); print (c < 1) ? 1 : c}')
echo
echo "latency at half of portcullis_one's maximum ($half req/s: $conns connections, each pausing 1 ms between requests):"
declare -A P99 P50
for r in $(seq "$ROUNDS"); do
  for c in portcullis_pass portcullis_one; do
    start_portcullis warn
    if [ $c = portcullis_pass ]; then
      line=$(run_wrk common-paced.lua "http://127.0.0.1:$P_PORTCULLIS/pass/x" 8 "$conns")
    else
      line=$(run_wrk one-paced.lua "http://127.0.0.1:$P_PORTCULLIS/api/orders/7" 8 "$conns")
    fi
    stop_portcullis
    printf '  %-16s round %s  %s\n' "$c" "$r" "$line"
    P99[$c]="${P99[$c]:-} $(echo "$line" | field p99)"
    P50[$c]="${P50[$c]:-} $(echo "$line" | field p50)"
  done
done
echo "  p50: one token $(echo "${P50[portcullis_one]}" | median) us, pass-through $(echo "${P50[portcullis_pass]}" | median) us"
p_pass=$(echo "${P99[portcullis_pass]}" | median)
p_one=$(echo "${P99[portcullis_one]}" | median)
added=$(awk -v a="$p_one" -v b="$p_pass" 'BEGIN {print a - b}')
echo "  4. p99 one token ${p_one} us, pass-through ${p_pass} us: added ${added} us (<= 100: $(awk -v x="$added" 'BEGIN {print (x <= 100) ? "met" : "NOT MET"}'))"
fi

# --- target 5: memory --------------------------------------------------------------------
memory() { # label binary soak-seconds config
  echo
  start_portcullis warn "$2" "$4"
  sleep 1
  local idle full entries line need_s
  idle=$(rss_kib "$PORTCULLIS_PID")
  # Enough requests to go through every token twice (a token is cached on its second
  # verification; the cache holds them all).
  need_s=$(awk -v n="$TOKENS" -v r="${MED[portcullis_distinct]:-0}" 'BEGIN {print int(2.3 * n / ((r > 0) ? r : 1000)) + 2}')
  line=$(run_wrk distinct.lua "http://127.0.0.1:$P_PORTCULLIS/api/orders/7" "$need_s")
  entries=$(metric portcullis_token_cache_entries)
  full=$(rss_kib "$PORTCULLIS_PID")
  echo "memory ($1: $2)"
  echo "  idle RSS $((idle / 1024)).$(((idle % 1024) * 10 / 1024)) MiB (<= 16: $([ "$idle" -le 16384 ] && echo met || echo 'NOT MET'))"
  echo "  after ${need_s}s of distinct tokens ($(echo "$line" | field requests) requests, non2xx $(echo "$line" | field non2xx)), ${entries:-?} cached tokens: RSS $((full / 1024)).$(((full % 1024) * 10 / 1024)) MiB (<= 64: $([ "$full" -le 65536 ] && echo met || echo 'NOT MET'))"
  if [ "$3" -gt 0 ]; then
    local step samples=""
    step=$(($3 < 300 ? ($3 + 9) / 10 : 30))
    for _ in $(seq $((($3 + step - 1) / step))); do
      line=$(run_wrk distinct.lua "http://127.0.0.1:$P_PORTCULLIS/api/orders/7" "$step")
      [ "$(echo "$line" | field non2xx)" = 0 ] || echo "   soak: non-2xx responses: $line" >&2
      samples="$samples $(($(rss_kib "$PORTCULLIS_PID") / 1024))"
    done
    echo "  soak ${3}s under distinct-token load, RSS every ${step}s (MiB):$samples"
  fi
  stop_portcullis
}
# --- HTTP/2: h2c next to HTTP/1.1, and gRPC-shaped calls --------------------------------
h2_report() { # config line -> appends rps to RPS[config]
  printf '%-22s round %s  %s\n' "$1" "$r" "$2"
  [ "$(echo "$2" | field non2xx)" = 0 ] && [ "$(echo "$2" | field errors)" = 0 ] \
    || echo "   ^ NOT ALL RESPONSES WERE 2xx: this run does not count" >&2
  RPS[$1]="${RPS[$1]:-} $(echo "$2" | field rps)"
}
h2_medians() { # configs...
  for c in "$@"; do printf '  %-22s %10.0f   (%s)\n' "$c" "$(echo "${RPS[$c]}" | median)" "${RPS[$c]# }"; done
}
if has h2c; then
  echo
  echo "h2c next to HTTP/1.1 (h2load -c$CONNS -m$STREAMS):"
  for r in $(seq "$ROUNDS"); do
    start_portcullis warn
    h2_report h1_pass "$(run_wrk common.lua "http://127.0.0.1:$P_PORTCULLIS/pass/x")"
    h2_report h2c_pass "$(run_h2load "http://127.0.0.1:$P_PORTCULLIS/pass/x")"
    h2_report h1_one "$(run_wrk one.lua "http://127.0.0.1:$P_PORTCULLIS/api/orders/7")"
    h2_report h2c_one "$(run_h2load "http://127.0.0.1:$P_PORTCULLIS/api/orders/7" \
      -H "authorization: Bearer $(cat "$WORK/token.txt")")"
    stop_portcullis
  done
  echo "median req/s over $ROUNDS rounds:"
  h2_medians h1_pass h2c_pass h1_one h2c_one
fi
if has grpc; then
  echo
  echo "gRPC-shaped POSTs over h2c (h2load -c$CONNS -m$STREAMS):"
  grpc_call=(-d "$WORK/grpc.bin" -H "content-type: application/grpc" -H "te: trailers")
  for r in $(seq "$ROUNDS"); do
    h2_report grpc_direct "$(run_h2load "http://127.0.0.1:$P_UP_H2C/grpc.health.v1.Health/Check" "${grpc_call[@]}")"
    start_portcullis warn
    h2_report grpc_one "$(run_h2load "http://127.0.0.1:$P_PORTCULLIS/grpc.health.v1.Health/Check" \
      "${grpc_call[@]}" -H "authorization: Bearer $(cat "$WORK/token.txt")")"
    stop_portcullis
  done
  echo "median req/s over $ROUNDS rounds:"
  h2_medians grpc_direct grpc_one
fi

if has decision; then
  echo
  echo "The decision listener, one token (wrk -c$CONNS):"
  start_nginx auth
  wait_port $P_NGINX_AUTH
  for r in $(seq "$ROUNDS"); do
    start_portcullis warn "$PORTCULLIS" "$WORK/portcullis-decision.yaml"
    wait_port $P_DECISION
    h2_report proxy_one "$(run_wrk one.lua "http://127.0.0.1:$P_PORTCULLIS/api/orders/7")"
    h2_report decision_one "$(run_wrk forward-auth.lua "http://127.0.0.1:$P_DECISION/")"
    h2_report nginx_auth_one "$(run_wrk one.lua "http://127.0.0.1:$P_NGINX_AUTH/api/orders/7")"
    stop_portcullis
    h2_report nginx_proxy "$(run_wrk common.lua "http://127.0.0.1:$P_NGINX/api/orders/7")"
  done
  echo "median req/s over $ROUNDS rounds:"
  h2_medians proxy_one decision_one nginx_auth_one nginx_proxy
fi

if has tracing; then
  echo
  echo "Tracing off and on, one token (wrk -c$CONNS):"
  OTLP_SINK=$(cargo bench --locked --quiet --bench otlp_sink --no-run --message-format=json 2>/dev/null \
    | grep '"name":"otlp_sink"' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
  [ -x "$OTLP_SINK" ] || { echo "could not build benches/otlp_sink.rs" >&2; exit 1; }
  taskset -c "$WRK_CPU" "$OTLP_SINK" "127.0.0.1:$P_OTLP" "$WORK/otlp-spans.txt" &
  PIDS+=($!)
  wait_port $P_OTLP
  for r in $(seq "$ROUNDS"); do
    for c in off 0.01 1.0; do
      case $c in
        off) name=trace_off config="$WORK/portcullis.yaml" ;;
        0.01) name=trace_001 config="$WORK/portcullis-trace-0.01.yaml" ;;
        1.0) name=trace_100 config="$WORK/portcullis-trace-1.0.yaml" ;;
      esac
      before=$(cat "$WORK/otlp-spans.txt")
      start_portcullis warn "$PORTCULLIS" "$config"
      h2_report "$name" "$(run_wrk one.lua "http://127.0.0.1:$P_PORTCULLIS/api/orders/7")"
      # The last batch leaves within a second of the run's end.
      sleep 1.5
      echo "   spans received $(($(cat "$WORK/otlp-spans.txt") - before)), dropped $(metric portcullis_tracing_spans_dropped_total)"
      stop_portcullis
    done
  done
  echo "median req/s over $ROUNDS rounds:"
  h2_medians trace_off trace_001 trace_100
fi

if has memory; then
  memory portcullis "$PORTCULLIS" "$SOAK" "$WORK/portcullis.yaml"
  if [ -n "${PORTCULLIS_ALT:-}" ]; then memory alt "$PORTCULLIS_ALT" 0 "$WORK/portcullis-alt.yaml"; fi
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
