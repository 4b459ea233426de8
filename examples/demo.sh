#!/usr/bin/env bash
# The whole demo against a fresh development vault: start vaultd, load
# synthetic consumers through the API, train a propensity model on streamed
# pseudonymous features, print its ROC AUC, stop vaultd.
#   examples/demo.sh [CONSUMERS]        (default 5000)
# Uses build/vaultd (scripts/build) unless VAULTD is set.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5000}
vaultd=${VAULTD:-build/vaultd}
dir=$(mktemp -d)
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$vaultd" --dev --data-dir "$dir/vault" --listen "127.0.0.1:$port" --log-level warn &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 200); do
  [ -f "$dir/vault/dev-token" ] && "${VAULTCTL:-build/vaultctl}" --addr "127.0.0.1:$port" \
    --token-file "$dir/vault/dev-token" health >/dev/null 2>&1 && break
  sleep 0.1
done
cd examples
/usr/bin/python3 generate.py --addr "127.0.0.1:$port" --token-file "$dir/vault/dev-token" --consumers "$n"
/usr/bin/python3 train.py --addr "127.0.0.1:$port" --token-file "$dir/vault/dev-token"
