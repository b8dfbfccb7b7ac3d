#!/usr/bin/env bash
# Starts the Celery workers for every queue and stops them together: one per trust zone (ops/db_zones.py).
# The custodian runs in a process of its own with its own queue: it is the only one that loads the
# Paillier private key, and in production the only container that mounts the key volume.
# Each worker connects as its zone's database role when DOMAIN_DATABASE_URL, SCORING_DATABASE_URL or
# CUSTODIAN_DATABASE_URL names one (`manage.py db_roles` creates them); otherwise it uses DATABASE_URL.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
CONCURRENCY=${WORKER_CONCURRENCY:-2}
LOGLEVEL=${WORKER_LOGLEVEL:-INFO}

# No gossip, start-up sync or heartbeat events between workers: nothing reads them (readiness pings and
# counts the heartbeat task), and each worker would spend CPU every 2 s on every other worker's.
QUIET=(--without-gossip --without-mingle --without-heartbeat)

pids=()
stop() { kill -TERM "${pids[@]}" 2>/dev/null || true; wait; }
trap stop INT TERM EXIT

start() {  # zone, then the worker's arguments
  local url_variable="${1^^}_DATABASE_URL"
  shift
  if [ -n "${!url_variable:-}" ]; then
    DATABASE_URL="${!url_variable}" "$BIN/celery" -A config worker "${QUIET[@]}" "$@" &
  else
    "$BIN/celery" -A config worker "${QUIET[@]}" "$@" &
  fi
  pids+=($!)
}

start domain -Q domain -n "domain@%h" -c "$CONCURRENCY" -l "$LOGLEVEL"
start scoring -Q scoring,webhooks -n "scoring@%h" -c "$CONCURRENCY" -l "$LOGLEVEL"
start custodian -Q custodian --include datadomain.custodian -n "custodian@%h" -c 1 -l "$LOGLEVEL"
wait -n
