#!/usr/bin/env bash
# Soak: steady load on a real `portcullis run` for SOAK seconds while its config file is
# rewritten every REWRITE seconds (in place, by rename, by ConfigMap-style `..data` symlink
# swaps) and the issuer rotates its signing key twice. Reports requests sent, failed, answered
# under the wrong policy (both must be 0), the slowest reload to take effect, RSS and open file
# descriptors at start and end, and the exit status after SIGTERM. Exits 1 on any failure.
#
# Everything runs on loopback: an in-process OpenID issuer and tagged upstreams, the gateway as
# a child process. The load is bounded: CONNS clients sharing RATE requests per second.
#
# Usage: benches/soak.sh                      (from the repository root)
# Knobs: SOAK=600 RATE=400 CONNS=8 REWRITE=3 WORK=/tmp/dir
#        PORTCULLIS=path (default: build target/release/portcullis; PROFILE=dev builds the
#        debug binary instead, faster to build, slower and larger at run time)
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=${WORK:-$(mktemp -d /tmp/portcullis-soak.XXXXXX)}
PROFILE=${PROFILE:-release}
if [ -z "${PORTCULLIS:-}" ]; then
  echo "== building portcullis ($PROFILE profile)" >&2
  cargo build --locked --quiet --profile "$PROFILE"
  if [ "$PROFILE" = dev ]; then PORTCULLIS=target/debug/portcullis; else PORTCULLIS=target/$PROFILE/portcullis; fi
fi
echo "== soak of ${SOAK:-600} s against $PORTCULLIS (work dir $WORK)" >&2
exec cargo bench --locked --quiet --profile dev --bench soak -- "$(realpath "$PORTCULLIS")" "$WORK"
