#!/usr/bin/env bash
# Debian's Chromium and chromedriver for the browser tests (tests/browser) and the PDF reports: installed
# from Debian's packages when missing (no browser download at run time). Needs root or sudo.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
sudo_=""
[ "$(id -u)" -eq 0 ] || sudo_="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo_ apt-get update -qq
$sudo_ apt-get install -y -qq chromium chromium-driver >/dev/null
/usr/bin/chromium --version
