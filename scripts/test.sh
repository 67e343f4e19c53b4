#!/usr/bin/env bash
# The one command that runs every test on a fresh machine (`npm test`): installs the npm packages and Debian's
# chromium and ffmpeg when missing, type-checks, then runs the whole vitest suite (unit, contract, integration,
# browser end-to-end) and prints a closing "N passed, N failed, N skipped" line.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
npx tsc -p tsconfig.json
mkdir -p test/.tmp
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json=test/.tmp/results.json "$@" || status=$?
node -e '
  const r = JSON.parse(require("fs").readFileSync("test/.tmp/results.json", "utf8"));
  const skipped = (r.numPendingTests || 0) + (r.numTodoTests || 0);
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
' || true
exit $status
