#!/usr/bin/env bash
# The one command that runs every test on a fresh machine: installs npm packages and Debian's chromium and
# ffmpeg when missing, type-checks, then runs the whole vitest suite (unit, integration, contract, e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
npx tsc -p tsconfig.json
npx vitest run "$@"
