#!/usr/bin/env bash
# Make `promtool` and `prometheus` available (Debian bookworm package `prometheus` ships both).
# Idempotent: does nothing when both are already on PATH. Used by the tests (tests/test_infra) and by
# anyone who wants to run Prometheus locally against the services (README, Operations).
#
# The package's maintainer scripts would start a `prometheus` system service on :9090; we only want the
# binaries, so service starts are refused for the time of the install (policy-rc.d, the standard Debian
# mechanism) when no policy is in place already. Our tests run their own Prometheus on a free port.
set -euo pipefail

log() { printf 'prometheus-install: %s\n' "$*" >&2; }

if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  log "promtool/prometheus not found and apt-get is not available: install Prometheus >= 2.37 yourself"; exit 1
fi
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { log "need root (or sudo) to apt-get install prometheus"; exit 1; }
  SUDO="sudo"
fi

POLICY=/usr/sbin/policy-rc.d
created_policy=""
if [[ ! -e $POLICY ]]; then
  printf '#!/bin/sh\n# temporary, from respmon infra/prometheus/install.sh: no service starts\nexit 101\n' \
    | $SUDO tee "$POLICY" >/dev/null
  $SUDO chmod 755 "$POLICY"
  created_policy=1
fi
cleanup() { if [[ -n $created_policy ]]; then $SUDO rm -f "$POLICY"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
log "installing Debian package prometheus (promtool, prometheus)"
$SUDO apt-get update -qq >&2
$SUDO apt-get install -y -qq --no-install-recommends prometheus >&2
command -v promtool >/dev/null && command -v prometheus >/dev/null || { log "install did not provide promtool/prometheus"; exit 1; }
