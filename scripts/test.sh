#!/usr/bin/env bash
# The project's test command (README: `npm test`). On a fresh machine it installs what the tests
# need, builds, checks types and style, and runs the whole suite. Extra arguments go to vitest
# (e.g. `npm test -- test/mvcc.test.ts`).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: the real etcd 3.4 (differential tests), etcdctl (real client), openssl.
missing=()
command -v etcd >/dev/null 2>&1 || [ -x /usr/bin/etcd ] || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || [ -x /usr/bin/etcdctl ] || missing+=(etcd-client)
# openssl makes the TLS tests' throwaway certificates.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# Docker Engine for the Docker runtime's tests, and busybox for the node image's shell.
command -v dockerd >/dev/null 2>&1 || [ -x /usr/sbin/dockerd ] || missing+=(docker.io)
[ -x /bin/busybox ] || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "test: the tests need ${missing[*]}; run as root or install them: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "test: installing ${missing[*]} (apt-get)"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# A Docker Engine must answer; start one when none does (its log: /tmp/lab-dockerd.log).
if ! docker info >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && { command -v dockerd >/dev/null 2>&1 || [ -x /usr/sbin/dockerd ]; }; then
    echo "test: starting dockerd"
    nohup "$(command -v dockerd || echo /usr/sbin/dockerd)" >/tmp/lab-dockerd.log 2>&1 &
    # The suite owns this daemon: the Docker tests may restart it (and only then).
    export LAB_TEST_DOCKERD_PID=$!
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { echo "test: dockerd did not start; see /tmp/lab-dockerd.log" >&2; exit 1; }
  else
    echo "test: no Docker Engine answers; start dockerd (as root) and run the tests again" >&2
    exit 1
  fi
fi

# npm dependencies (also builds dist/ through the prepare script).
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
else
  npm run build
fi

npx tsc -p tsconfig.json --noEmit
npx biome check .

report="$(mktemp -t lab-vitest-XXXXXX.json)"
status=0
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@" || status=$?
# One plain closing line that any CI log reader understands.
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed` + (skipped ? `, ${skipped} skipped` : ""));
' "$report" || true
rm -f "$report"
exit $status
