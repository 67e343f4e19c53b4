#!/usr/bin/env bash
# Installs what Parley's tests need and the machine may lack: npm packages (from the lockfile), and Debian's
# chromium (browser tests), ffmpeg (test videos), nats-server (the bus between nodes), nginx (the balancer in
# front of them) and a CJK font (fonts-wqy-zenhei, for the zh-CN pages). Idempotent; quick when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ] || [ package.json -nt node_modules/.package-lock.json ]; then
  # Not `npm ci`: npm 11 refuses this lockfile's optional per-platform packages (msgpackr-extract's) as "not in
  # sync" even when freshly generated. `npm install` honours the lockfile's versions all the same.
  npm install --no-audit --no-fund
fi
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
# Debian puts these two in /usr/sbin, which a non-root PATH may lack.
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
# A CJK font, so the zh-CN pages (tests and README screenshots) draw Chinese rather than empty boxes.
[ -f /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ] || need+=(fonts-wqy-zenhei)
if [ ${#need[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "installing Debian packages: ${need[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
