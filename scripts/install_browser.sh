#!/usr/bin/env bash
# Installs Debian's chromium for the headless-browser test of the dashboard
# (tests/viz/test_dashboard_browser.py calls this from a session fixture). Needs root and apt.
# Exit codes: 0 chromium available, 3 cannot install (not root / no apt), other: apt failed.
set -euo pipefail
for exe in chromium chromium-browser; do
  if command -v "$exe" >/dev/null 2>&1; then echo "$(command -v "$exe")"; exit 0; fi
done
if [ "$(id -u)" != 0 ]; then echo "not root: cannot apt-get install chromium" >&2; exit 3; fi
if ! command -v apt-get >/dev/null 2>&1; then echo "no apt-get on this system" >&2; exit 3; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
# Recommends pull in desktop bits we do not need headless; one font keeps page text legible.
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
command -v chromium
