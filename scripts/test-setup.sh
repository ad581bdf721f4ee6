#!/usr/bin/env bash
# Prepare every real component the test suite talks to, then write .cache/test-env.
#   - PostgreSQL on 127.0.0.1:5432 (started if installed but stopped; installed with apt if absent),
#     and its server binaries for the test that stops a cluster of its own
#   - Debian's chromium for the browser tests (Playwright drives it; no browser download), and
#     certutil (libnss3-tools) to trust the registry bridge's local CA in its NSS database
#   - sqlite3, the command docs/operations.md backs SQLite up with
#   - Debian's haproxy for the load balancer test (the test runs its own haproxy process; the
#     system service is not started)
#   - Debian's wrk, the benchmarks' second load generator (tests/benchmarks)
#   - Node 22, the pinned MCP conformance suite and oidc-provider from the npm registry
# Idempotent and quick when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .cache
env_file=.cache/test-env
: >"$env_file"

log() { echo "test-setup: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
apt_updated=0
apt_install() {
  command -v apt-get >/dev/null || { log "apt-get not available; install $* yourself"; return 1; }
  # Wait for another apt or dpkg run (an unattended upgrade, a second setup) instead of failing.
  local wait=(-o DPkg::Lock::Timeout=300)
  if [ "$apt_updated" = 0 ]; then as_root apt-get "${wait[@]}" update -qq >/dev/null; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get "${wait[@]}" install -y -qq "$@" >/dev/null
}
pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }

# PostgreSQL ---------------------------------------------------------------------------------
if ! pg_up; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    log "installing PostgreSQL"
    apt_install postgresql || true
  fi
  if ls /etc/postgresql/*/main >/dev/null 2>&1; then
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    log "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null \
      || as_root pg_ctlcluster "$version" main start || true
    for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  fi
fi
if pg_up; then
  if [ -z "${BASTION_TEST_POSTGRES_URL:-}" ]; then
    # A fresh Debian install wants a password over TCP; this machine kind trusts loopback.
    if ! PGCONNECT_TIMEOUT=3 psql -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1; then
      if command -v runuser >/dev/null && [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- psql -qc "ALTER USER postgres PASSWORD 'postgres'" >/dev/null 2>&1 || true
        runuser -u postgres -- createdb test 2>/dev/null || true
        echo "export BASTION_TEST_POSTGRES_URL=postgresql+asyncpg://postgres:postgres@127.0.0.1:5432/test" >>"$env_file"
      fi
    fi
  fi
  log "PostgreSQL is up"
else
  log "PostgreSQL is not available: its tests will skip (or fail where BASTION_REQUIRE_POSTGRES=1)"
fi

# The readiness test runs a PostgreSQL cluster of its own (initdb, pg_ctl), also when the
# shared server is elsewhere (BASTION_TEST_POSTGRES_URL).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  log "installing PostgreSQL's server binaries"
  apt_install postgresql || log "could not install postgresql: the database outage test will skip"
fi

# Chromium -----------------------------------------------------------------------------------
if [ ! -x /usr/bin/chromium ]; then
  log "installing Debian's chromium"
  apt_install chromium || log "could not install chromium: browser tests will fail"
fi
if ! command -v certutil >/dev/null; then
  log "installing libnss3-tools (certutil)"
  apt_install libnss3-tools || log "could not install libnss3-tools: the bridge's browser test will fail"
fi

if ! command -v sqlite3 >/dev/null; then
  log "installing sqlite3 (docs/operations.md backs SQLite up with it)"
  apt_install sqlite3 || log "could not install sqlite3: the SQLite backup test will fail"
fi

# HAProxy ------------------------------------------------------------------------------------
if [ ! -x /usr/sbin/haproxy ]; then
  log "installing Debian's haproxy"
  if apt_install haproxy; then
    # The package enables and starts its service where systemd runs: the tests need only the
    # program (they start haproxy -f deploy/haproxy/bastion.cfg -db themselves).
    if [ -d /run/systemd/system ]; then
      as_root systemctl disable --now haproxy >/dev/null 2>&1 || true
    fi
  else
    log "could not install haproxy: the load balancer test will skip (or fail where BASTION_REQUIRE_POSTGRES=1)"
  fi
fi
if [ -x /usr/sbin/haproxy ]; then
  echo "export BASTION_HAPROXY=/usr/sbin/haproxy" >>"$env_file"
fi

# wrk ----------------------------------------------------------------------------------------
# The benchmarks' second load generator; tests/benchmarks checks that it counts wrong answers.
if ! command -v wrk >/dev/null; then
  log "installing Debian's wrk"
  apt_install wrk || log "could not install wrk: its benchmark test will skip (or fail where BASTION_REQUIRE_POSTGRES=1)"
fi

# Node 22 + MCP conformance suite --------------------------------------------------------------
if ! command -v npm >/dev/null; then
  log "installing node and npm"
  apt_install nodejs npm || true
fi
if conformance=$(bash scripts/setup-node.sh); then
  echo "export BASTION_CONFORMANCE=$conformance" >>"$env_file"
  # node22 (Node 22 + oidc-provider) sits beside the conformance wrapper.
  echo "export BASTION_NODE=$(dirname "$conformance")/node22" >>"$env_file"
else
  log "could not install the conformance suite and oidc-provider: their tests will fail or skip"
fi
log "ready"
