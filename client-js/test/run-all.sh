#!/bin/sh
# Every client-js test, as CI runs it: npm ci, the Node suites against the
# real binary (auth among them), then the browser suites (Chromium over http
# and over HTTPS/HTTP/2, coturn) inside a loopback-only network namespace.
# Exits non-zero if any test fails. Needs go, node >= 20, and Debian's
# chromium, coturn and iproute2 (ip, ss); with firefox-esr installed, a
# Chromium <-> Firefox call runs too (else skipped).
set -eu
cd "$(dirname "$0")/.."

missing=""
for tool in go node npm unshare ip ss turnserver; do
  command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
[ -x "${CHROMIUM_BIN:-/usr/bin/chromium}" ] || missing="$missing chromium"
if [ -n "$missing" ]; then
  echo "run-all.sh: missing:$missing (apt-get install -y chromium coturn iproute2 util-linux)" >&2
  exit 1
fi

# playwright-core downloads nothing; make sure no other tool does either.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
npm ci --no-audit --no-fund

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/sigbase" ../cmd/sigbase # embeds client-js as it is now
export SIGBASE_BIN="$tmp/sigbase"

node --test --test-timeout=120000 test/*.test.js
sh test/run-e2e.sh
