#!/usr/bin/env bash
# Starts the Celery workers for every queue and stops them together.
# The custodian runs in a process of its own with its own queue: it is the only one that loads the
# Paillier private key, and in production the only container that mounts the key volume.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
CONCURRENCY=${WORKER_CONCURRENCY:-2}
LOGLEVEL=${WORKER_LOGLEVEL:-INFO}

pids=()
stop() { kill -TERM "${pids[@]}" 2>/dev/null || true; wait; }
trap stop INT TERM EXIT

"$BIN/celery" -A config worker -Q domain,scoring,webhooks -n "main@%h" -c "$CONCURRENCY" -l "$LOGLEVEL" &
pids+=($!)
"$BIN/celery" -A config worker -Q custodian --include datadomain.custodian -n "custodian@%h" -c 1 -l "$LOGLEVEL" &
pids+=($!)
wait -n
