#!/bin/sh
# Every container starts here. The Prometheus multi-process directory must be empty when a process
# tree starts, or counters of dead processes would be added again.
set -eu
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
  mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
  find "$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -delete
fi
exec "$@"
