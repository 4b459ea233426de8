#!/usr/bin/env bash
# The whole demo against a fresh development vault, on the vaultd Python
# package (client/python, installed into a venv here): start vaultd, load
# synthetic consumers through the API, train a propensity model on streamed
# pseudonymous features (pandas + sklearn, then PyTorch with two workers
# reading disjoint shards), delete a few consumers and purge them from the
# saved training set through the deletion feed, stop vaultd.
#   examples/demo.sh [CONSUMERS]        (default 5000)
# Uses build/vaultd (scripts/build) unless VAULTD is set.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5000}
vaultd=$(realpath "${VAULTD:-build/vaultd}")
vaultctl=$(realpath "${VAULTCTL:-build/vaultctl}")
dir=$(mktemp -d)
scripts/python-package install "$dir/venv"
py="$dir/venv/bin/python"
port=$($py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$vaultd" --dev --data-dir "$dir/vault" --listen "127.0.0.1:$port" \
  --metrics-listen off --log-level warn &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 200); do
  [ -f "$dir/vault/dev-token" ] && "$vaultctl" --addr "127.0.0.1:$port" \
    --token-file "$dir/vault/dev-token" health >/dev/null 2>&1 && break
  sleep 0.1
done
export VAULT_ADDR="127.0.0.1:$port" VAULT_TOKEN_FILE="$dir/vault/dev-token"
cd examples
$py generate.py --addr "$VAULT_ADDR" --token-file "$VAULT_TOKEN_FILE" --consumers "$n"
$py train.py --dataset propensity-demo --save "$dir/training-set" \
  --addr "$VAULT_ADDR" --token-file "$VAULT_TOKEN_FILE"
$py torch_train.py --workers 2 --addr "$VAULT_ADDR" --token-file "$VAULT_TOKEN_FILE"
# Ten consumers ask to be deleted; the training set already holds them.
for i in $(seq 10 19); do
  "$vaultctl" delete "$(printf 'cust-%07d@example.test' "$i")" >/dev/null
done
$py purge.py --dataset propensity-demo --dir "$dir/training-set" \
  --addr "$VAULT_ADDR" --token-file "$VAULT_TOKEN_FILE"
