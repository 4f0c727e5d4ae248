#!/usr/bin/env bash
# Instructions per request, counted by callgrind (documented in BENCHMARKS.md).
#
# Wall-clock rounds on a shared 2-core machine swing by ±15%; an instruction count does not: the
# same binary given the same requests executes the same instructions whatever else the machine
# does. Each server below runs under `valgrind --tool=callgrind --instr-atstart=no`; it is warmed
# up with WARM requests, counting is switched on (`callgrind_control -i on`), N requests are sent
# with h2load (4 connections, one thread; the nginx static upstream runs outside valgrind),
# counting is switched off and the counts dumped. Every response's status is checked. The
# figure is the dump's total (user-space instructions of every thread of the server) ÷ N. The
# dumps stay in WORK (callgrind.ROW.1, callgrind.ROW.before.1) for callgrind_annotate.
#
#   bare_h1       h2load --h1 -> bare pingora proxy (benches/bare_pingora.rs) -> nginx
#   bare_to_h1    the same with the gateway's default upstream timeouts set on the peer (a
#                 pingora timer per upstream read and write; not part of the targets)
#   pass_h1       h2load --h1 -> portcullis `auth: none` route -> nginx
#   hit_h1        h2load --h1 -> portcullis `read:orders` route, one RS256 token (cache hits)
#   nocache_h1    the same with the token cache off: every request verifies the signature
#   deny_h1       h2load --h1 -> portcullis `read:orders` route without a token: 401, no upstream
#   bare_hdrs_h1  bare_h1 with ten more request headers, as a browser sends them (not part of the
#                 targets: h2load's own requests carry three)
#   pass_hdrs_h1  pass_h1 with the same ten headers
#   bare_h2c      h2load (HTTP/2, prior knowledge) -> bare pingora -> nginx (HTTP/1.1)
#   pass_h2c      h2load (HTTP/2, prior knowledge) -> portcullis `auth: none` -> nginx
#   rsa_verify    one RSA-2048 PKCS#1 v1.5 SHA-256 verification with aws-lc, key parsed once
#                 (benches/rsa_verify.rs, run twice: the difference of two counts)
#
# It builds nothing: build the release binaries first (BENCHMARKS.md, "Instructions per request"):
#   cargo build --release --locked
#   cargo bench --locked --no-run --bench bare_pingora --bench mint --bench rsa_verify
# Usage: benches/instructions.sh                    (from the repository root)
# Knobs: N=5000 WARM=2000 BASE_PORT=29080 (three ports) WORK=/tmp/dir ONLY="pass_h1 bare_h1"
#        PORTCULLIS=path BARE_PINGORA=path MINT=path RSA_VERIFY=path (default: the newest
#        release builds under target/)
#        TRACING='{ otlp_endpoint: …, sample_ratio: … }': the gateway with tracing on.
#        BEFORE=path: a second gateway build (the one before a change), counted on the same
#        rows in the same run: the table shows before, after and the change.
#        SAVE=file: write the per-request counts there (as `row count` lines);
#        CHECK=file: fail when a row counts more than 10% above that file's figure.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benches/support/lib.sh
. benches/support/lib.sh

N=${N:-5000}
WARM=${WARM:-2000}
BASE_PORT=${BASE_PORT:-29080}
P_UP=$BASE_PORT P_GW=$((BASE_PORT + 1)) P_ADMIN=$((BASE_PORT + 2))
WORK=${WORK:-$(mktemp -d /tmp/portcullis-instr.XXXXXX)}
ISS="https://issuer.example/"
AUD="api://load"
log() { printf '== %s\n' "$*" >&2; }

for tool in valgrind callgrind_control h2load nginx curl; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || {
    echo "$tool is missing (Debian: apt-get install valgrind nghttp2-client nginx-light curl)" >&2
    exit 1
  }
done
for p in $P_UP $P_GW $P_ADMIN; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "port $p is already in use: set BASE_PORT to a free range of three ports" >&2
    exit 1
  fi
done

# The newest release build of a bench target (cargo names it NAME-HASH under deps/).
newest() {
  local found
  found=$(ls -t target/release/deps/"$1"-* 2>/dev/null | grep -E "/$1-[0-9a-f]{16}$" | head -1) || true
  [ -n "$found" ] || { echo "no release build of benches/$1.rs: cargo bench --locked --no-run --bench $1" >&2; exit 1; }
  echo "$found"
}
PORTCULLIS=${PORTCULLIS:-target/release/portcullis}
[ -x "$PORTCULLIS" ] || { echo "$PORTCULLIS is missing: cargo build --release --locked" >&2; exit 1; }
BARE_PINGORA=${BARE_PINGORA:-$(newest bare_pingora)}
MINT=${MINT:-$(newest mint)}
RSA_VERIFY=${RSA_VERIFY:-$(newest rsa_verify)}

# --- inputs ------------------------------------------------------------------------------
[ -s "$WORK/token.txt" ] || "$MINT" "$WORK" 1 "$ISS" "$AUD" >/dev/null
"$MINT" config "127.0.0.1:$P_GW" "127.0.0.1:$P_ADMIN" "127.0.0.1:$P_UP" "127.0.0.1:$P_UP" \
  "$WORK/jwks.json" "$ISS" "$AUD" >"$WORK/portcullis.yaml"
# TRACING='{ otlp_endpoint: "http://127.0.0.1:4317", sample_ratio: 0.01 }': the gateway rows
# with tracing on (a collector must listen there, e.g. benches/otlp_sink.rs).
if [ -n "${TRACING:-}" ]; then echo "tracing: $TRACING" >>"$WORK/portcullis.yaml"; fi
sed 's/token_cache_entries: .*/token_cache_entries: 0/' "$WORK/portcullis.yaml" >"$WORK/nocache.yaml"
TOKEN=$(cat "$WORK/token.txt")
nginx_conf up <<EOF
  server {
    listen 127.0.0.1:$P_UP default_server;
    location / { return 200 "ok\n"; }
  }
EOF

SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill -KILL "$SERVER_PID" 2>/dev/null || true
  [ -f "$WORK/up/nginx.pid" ] && kill "$(cat "$WORK/up/nginx.pid")" 2>/dev/null || true
}
trap cleanup EXIT
nginx -p "$WORK/up" -c "$WORK/up/nginx.conf" -e "$WORK/up/error.log"
wait_port "$P_UP"

# h2load, checking that all N answers have the expected class (2xx, or 4xx for a denial).
load() { # count class url [h2load options...]
  local n=$1 class=$2 url=$3 out got
  shift 3
  out=$(h2load -n "$n" -c4 -t1 "$@" "$url" 2>&1)
  got=$(echo "$out" | awk -v c="$class" '/^status codes:/ {
    for (i = 3; i <= NF; i += 2) if ($(i + 1) == c ",") print $i; else if ($(i + 1) == c) print $i }' | head -1)
  if [ "${got:-0}" != "$n" ]; then
    echo "$url: expected $n answers $class, got ${got:-0}:" >&2
    echo "$out" | grep -E '^(requests|status codes)' >&2
    exit 1
  fi
}

# One row: the server under callgrind, warmed up, then N counted requests.
count() { # row class url h2load-options -- server command...
  local row=$1 class=$2 url=$3 opts=() out
  shift 3
  while [ "$1" != -- ]; do opts+=("$1"); shift; done
  shift
  RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="$WORK/callgrind.$row" "$@" >"$WORK/$row.out" 2>"$WORK/$row.err" &
  SERVER_PID=$!
  wait_port "$P_GW" 60 # valgrind starts slowly
  if [ "${row#bare_}" = "$row" ]; then
    for _ in $(seq 600); do
      [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$P_ADMIN/readyz")" = 200 ] && break
      sleep 0.1
    done
  fi
  load "$WARM" "$class" "$url" "${opts[@]}"
  callgrind_control -i on "$SERVER_PID" >/dev/null 2>&1
  load "$N" "$class" "$url" "${opts[@]}"
  callgrind_control -i off "$SERVER_PID" >/dev/null 2>&1
  rm -f "$WORK/callgrind.$row".*
  callgrind_control -d "$SERVER_PID" >/dev/null 2>&1
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
  out=$(ls "$WORK/callgrind.$row".* | head -1)
  awk -v n="$N" '/^totals:/ {print int($2 / n + 0.5); exit}' "$out"
}

# One RSA verification: two runs, the difference of their totals over the difference of counts.
rsa_count() {
  local a b
  valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.rsa10" "$RSA_VERIFY" "$WORK" 10 2>/dev/null
  valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.rsa210" "$RSA_VERIFY" "$WORK" 210 2>/dev/null
  a=$(awk '/^totals:/ {print $2; exit}' "$WORK/callgrind.rsa10")
  b=$(awk '/^totals:/ {print $2; exit}' "$WORK/callgrind.rsa210")
  echo $(((b - a) / 200))
}

ROWS="bare_h1 bare_to_h1 pass_h1 hit_h1 nocache_h1 deny_h1 bare_h2c pass_h2c rsa_verify bare_hdrs_h1 pass_hdrs_h1"
# What a browser adds to a request besides Host and User-Agent.
BROWSER=(-H "accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
  -H "accept-language: en-GB,en;q=0.9" -H "cache-control: no-cache" -H "pragma: no-cache"
  -H "referer: https://app.example.com/orders" -H "cookie: theme=dark; session_hint=abc123"
  -H "sec-fetch-dest: document" -H "sec-fetch-mode: navigate" -H "sec-fetch-site: same-origin"
  -H "upgrade-insecure-requests: 1")
[ -n "${ONLY:-}" ] && ROWS=$ONLY
# C: the counts of PORTCULLIS (and of the baselines); B: of BEFORE, on the gateway's rows.
declare -A C B
gateway() { # row binary name (the dump is $WORK/callgrind.NAME.1)
  local cfg=$WORK/portcullis.yaml tok=(-H "authorization: Bearer $TOKEN")
  case $1 in
    pass_h1) count "$3" 2xx "http://127.0.0.1:$P_GW/pass/x" --h1 -- "$2" run -c "$cfg" ;;
    pass_h2c) count "$3" 2xx "http://127.0.0.1:$P_GW/pass/x" -- "$2" run -c "$cfg" ;;
    pass_hdrs_h1) count "$3" 2xx "http://127.0.0.1:$P_GW/pass/x" --h1 "${BROWSER[@]}" -- "$2" run -c "$cfg" ;;
    hit_h1) count "$3" 2xx "http://127.0.0.1:$P_GW/api/orders/7" --h1 "${tok[@]}" -- "$2" run -c "$cfg" ;;
    nocache_h1) count "$3" 2xx "http://127.0.0.1:$P_GW/api/orders/7" --h1 "${tok[@]}" -- "$2" run -c "$WORK/nocache.yaml" ;;
    deny_h1) count "$3" 4xx "http://127.0.0.1:$P_GW/api/orders/7" --h1 -- "$2" run -c "$cfg" ;;
  esac
}
for row in $ROWS; do
  log "$row"
  case $row in
    bare_h1) C[$row]=$(count "$row" 2xx "http://127.0.0.1:$P_GW/pass/x" --h1 -- "$BARE_PINGORA" "127.0.0.1:$P_GW" "127.0.0.1:$P_UP") ;;
    bare_to_h1) C[$row]=$(count "$row" 2xx "http://127.0.0.1:$P_GW/pass/x" --h1 -- "$BARE_PINGORA" "127.0.0.1:$P_GW" "127.0.0.1:$P_UP" timeouts) ;;
    bare_hdrs_h1) C[$row]=$(count "$row" 2xx "http://127.0.0.1:$P_GW/pass/x" --h1 "${BROWSER[@]}" -- "$BARE_PINGORA" "127.0.0.1:$P_GW" "127.0.0.1:$P_UP") ;;
    bare_h2c) C[$row]=$(count "$row" 2xx "http://127.0.0.1:$P_GW/pass/x" -- "$BARE_PINGORA" "127.0.0.1:$P_GW" "127.0.0.1:$P_UP") ;;
    pass_h1 | pass_h2c | pass_hdrs_h1 | hit_h1 | nocache_h1 | deny_h1)
      C[$row]=$(gateway "$row" "$PORTCULLIS" "$row")
      if [ -n "${BEFORE:-}" ]; then B[$row]=$(gateway "$row" "$BEFORE" "$row.before"); fi
      ;;
    rsa_verify) C[$row]=$(rsa_count) ;;
    *) echo "unknown row $row" >&2; exit 1 ;;
  esac
done

k() { awk -v x="$1" 'BEGIN {printf "%.1fk", x / 1000}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}'; }
verdict() { awk -v x="$1" -v t="$2" 'BEGIN {print (x <= t) ? "met" : "NOT MET"}'; }
echo
echo "instructions per request (callgrind, N=$N after $WARM to warm up, h2load -c4 -t1)"
if [ -n "${BEFORE:-}" ]; then
  echo "before: $BEFORE"
  echo "after:  $PORTCULLIS"
  printf '%-12s %10s %10s %8s\n' row before after change
  for row in $ROWS; do
    if [ -n "${B[$row]:-}" ]; then
      printf '%-12s %10s %10s %7s%%\n' "$row" "$(k "${B[$row]}")" "$(k "${C[$row]}")" \
        "$(awk -v a="${B[$row]}" -v b="${C[$row]}" 'BEGIN {printf "%+.1f", (b - a) * 100 / a}')"
    else
      printf '%-12s %10s %10s\n' "$row" "" "$(k "${C[$row]}")"
    fi
  done
else
  printf '%-12s %10s\n' row instructions
  for row in $ROWS; do printf '%-12s %10s\n' "$row" "$(k "${C[$row]}")"; done
fi
have() { for r in "$@"; do [ -n "${C[$r]:-}" ] || return 1; done; }
echo
printf '%-52s %7s %6s %7s %s\n' measure before ratio target verdict
target() { # label before after target
  printf '%-52s %7s %6s %7s %s\n' "$1" "$2" "$3" "≤ $4" "$(verdict "$3" "$4")"
}
both() { # row baseline-count -> "before after" ratios
  local b=-
  [ -n "${B[$1]:-}" ] && b=$(ratio "${B[$1]}" "$2")
  echo "$b $(ratio "${C[$1]}" "$2")"
}
if have pass_h1 bare_h1; then
  read -r b a <<<"$(both pass_h1 "${C[bare_h1]}")"
  target "auth: none ÷ bare pingora (HTTP/1.1)" "$b" "$a" 1.10
fi
if have hit_h1 bare_h1; then
  read -r b a <<<"$(both hit_h1 "${C[bare_h1]}")"
  target "cache hit ÷ bare pingora" "$b" "$a" 1.20
fi
if have nocache_h1 bare_h1 rsa_verify; then
  read -r b a <<<"$(both nocache_h1 "$((C[bare_h1] + C[rsa_verify]))")"
  target "every token new ÷ (bare pingora + one RSA verify)" "$b" "$a" 1.05
fi
if have pass_hdrs_h1 bare_hdrs_h1; then
  read -r b a <<<"$(both pass_hdrs_h1 "${C[bare_hdrs_h1]}")"
  printf '%-52s %7s %6s\n' "  (with a browser's headers: auth: none ÷ bare)" "$b" "$a"
fi
if have pass_h2c bare_h2c; then
  read -r b a <<<"$(both pass_h2c "${C[bare_h2c]}")"
  target "h2c auth: none ÷ bare pingora over h2c" "$b" "$a" 1.10
fi
if have deny_h1 bare_h1; then
  read -r b a <<<"$(both deny_h1 "${C[bare_h1]}")"
  target "401 without a token ÷ bare pingora's request" "$b" "$a" 0.55
fi

if [ -n "${SAVE:-}" ]; then
  for row in $ROWS; do echo "$row ${C[$row]}"; done >"$SAVE"
fi
if [ -n "${CHECK:-}" ]; then
  bad=0
  while read -r row kept; do
    [ -n "${C[$row]:-}" ] || continue
    if [ "${C[$row]}" -gt $((kept + kept / 10)) ]; then
      echo "REGRESSION: $row counts ${C[$row]} per request, more than 10% above the kept $kept" >&2
      bad=1
    fi
  done <"$CHECK"
  exit $bad
fi
