#!/bin/sh
# Runs the browser tests inside a new network namespace whose only interface
# is loopback, so no WebRTC packet can leave 127.0.0.1. Needs root (or
# unprivileged user namespaces: then `unshare -rn`), iproute2 (ip, ss),
# /usr/bin/chromium, and turnserver (coturn) for the relay test. The HTTPS
# test serves sigbase with --tls-self-signed inside the same namespace.
# Arguments go to node --test.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then userns=""; else userns="-r"; fi
[ "$#" -gt 0 ] || set -- test/e2e/
exec unshare $userns -n sh -c 'ip link set lo up && exec node --test --test-concurrency=1 --test-timeout=180000 "$@"' sh "$@"
