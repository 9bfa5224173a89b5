#!/usr/bin/env bash
# Make sure Debian's chromium and its chromedriver are installed (the browser tests drive them).
# Nothing is downloaded by a test tool: the browser comes from the distribution's packages.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "chromium is missing and installing it needs root: apt-get install -y chromium chromium-driver" >&2; exit 1; }
  SUDO=sudo
fi
echo "installing chromium and chromium-driver" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
