#!/usr/bin/env bash
# Runs sigbench scenarios against fresh sigbase servers on loopback and
# prints each run's JSON line; BENCHMARKS.md reports medians of these.
#
#   bash benchmarks/run.sh [-n RUNS] [-store etcd://127.0.0.1:2379] SCENARIO [sigbench flags...]
#
# Every run starts its own server on 127.0.0.1:0 with a fresh database
# (bbolt in a temp dir, or a fresh etcd key prefix), raised stream limits and
# the per-IP rate limit off, then stops it. Scenarios: write, fanout, rooms,
# idle. The load generator shares the machine with the server.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=3 store=""
while [ $# -gt 0 ]; do
	case $1 in
	-n) runs=$2; shift 2 ;;
	-store) store=$2; shift 2 ;;
	*) break ;;
	esac
done
[ $# -ge 1 ] || { sed -n '2,11p' "$0" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/sigbase" ./cmd/sigbase
go build -o "$tmp/sigbench" ./cmd/sigbench
for i in $(seq "$runs"); do
	data=(--data "$tmp/db-$i")
	[ -z "$store" ] || data=(--store "$store/bench-$$-$i")
	"$tmp/sigbase" serve --addr 127.0.0.1:0 "${data[@]}" --log-level warn --rate-limit 0 \
		--max-streams 20000 --max-streams-per-room 20000 --max-streams-per-ip 20000 >"$tmp/out-$i" 2>"$tmp/err-$i" &
	pid=$!
	for _ in $(seq 100); do grep -q listening "$tmp/out-$i" && break; sleep 0.1; done
	url=$(sed -n 's/^listening on //p' "$tmp/out-$i")
	"$tmp/sigbench" "$@" -url "$url" -server-pid "$pid" | tee "$tmp/bench-$i" | grep -v '^{' >&2 || true
	grep '^{' "$tmp/bench-$i" || true
	kill -TERM "$pid"
	wait "$pid" || true
done
