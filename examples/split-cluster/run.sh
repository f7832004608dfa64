#!/usr/bin/env bash
# The chat as 2 gateways and 2 workers on RabbitMQ; clients keep talking while the workers are
# reloaded one at a time. Needs RabbitMQ on 127.0.0.1:5672 and a build (`npm install` makes one).
#   bash examples/split-cluster/run.sh
# Environment: GATEWIRE_* variables override examples/split-cluster/config.json (the broker URL,
# the exchange, the port: the talking clients follow GATEWIRE_GATEWAY__LISTEN); TALK_SECONDS is
# how long the clients talk (12).
set -euo pipefail
cd "$(dirname "$0")/../.."
config=examples/split-cluster/config.json
pidfile=$(mktemp -u /tmp/gatewire-split.XXXXXX.pid)
log=$(mktemp /tmp/gatewire-split.XXXXXX.log)

# The supervisor's lines go to the terminal and to $log, where this script waits for them.
node bin/gatewire.js start --config "$config" --gateways 2 --workers 2 --pid-file "$pidfile" 2> >(tee "$log" >&2) &
supervisor=$!
trap 'node bin/gatewire.js stop --pid-file "$pidfile" >/dev/null 2>&1 || kill $supervisor 2>/dev/null || true; rm -f "$log"' EXIT
# Every gateway listens and every worker runs once the supervisor says so.
until grep -q "cluster running" "$log"; do
  kill -0 $supervisor 2>/dev/null || { echo "the cluster did not start" >&2; exit 1; }
  sleep 0.2
done

node dist/examples/split-cluster/talk.js 20 "${TALK_SECONDS:-12}" &
talk=$!
sleep 4
echo "== reloading the workers while the clients talk"
node bin/gatewire.js reload --pid-file "$pidfile"
sleep 2
node bin/gatewire.js status --config "$config"
wait $talk
