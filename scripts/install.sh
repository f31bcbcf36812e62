#!/usr/bin/env bash
# Idempotent set-up: a project-local virtualenv with Astralog installed, and with `test` also the
# test tools and the real components the suite drives (Debian packages). Safe to run every time.
set -euo pipefail
cd "$(dirname "$0")/.."
want="${1:-run}"
venv="${VENV:-.venv}"
python="${PYTHON:-python3}"

"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "Astralog needs Python 3.11 or newer ($python is $("$python" --version))" >&2; exit 1; }
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"

extras="."
[ "$want" = test ] && extras=".[test]"
stamp="$venv/.installed-$want-$(cat pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet --editable "$extras"
  touch "$stamp"
fi

if [ "$want" = test ]; then
  wait_lock=(-o DPkg::Lock::Timeout=300)  # another apt on the machine: wait, don't fail
  need=()
  command -v syslog-ng >/dev/null 2>&1 || need+=(syslog-ng-core syslog-ng-mod-http)
  command -v loggen >/dev/null 2>&1 || need+=(syslog-ng-core)
  [ -x /usr/bin/chromium ] || need+=(chromium)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  command -v npm >/dev/null 2>&1 || need+=(nodejs npm)  # the SSO tests' OpenID Provider
  # The container image test (tests/test_docker_image.py starts dockerd itself) and the compose
  # file's validation; debootstrap makes the base image where no registry is reachable.
  [ -x /usr/sbin/dockerd ] || need+=(docker.io)
  [ -x /usr/sbin/debootstrap ] || need+=(debootstrap)
  command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
  # The PostgreSQL event store's tests run a throwaway cluster (tests/postgres_server.py).
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
  # rsyslog conflicts with syslog-ng's packages on Debian 12: its debs are unpacked into the
  # venv, not installed; the libraries it links are ordinary packages.
  rsyslog="$venv/rsyslog"
  libs=(libestr0 libfastjson4 liblognorm5 libcurl4)
  dpkg -s "${libs[@]}" >/dev/null 2>&1 || need+=("${libs[@]}")
  if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      apt-get "${wait_lock[@]}" update -qq
      DEBIAN_FRONTEND=noninteractive apt-get "${wait_lock[@]}" install -y -qq \
        --no-install-recommends "${need[@]}" >/dev/null
    else
      echo "the tests need Debian packages: ${need[*]} (run as root or: sudo apt-get install ${need[*]})" >&2
      exit 1
    fi
  fi
  if [ ! -x "$rsyslog/usr/sbin/rsyslogd" ]; then
    mkdir -p "$rsyslog/debs"
    download() { (cd "$rsyslog/debs" && apt-get download -qq rsyslog rsyslog-elasticsearch); }
    download || { apt-get "${wait_lock[@]}" update -qq && download; }  # package lists not read yet
    for deb in "$rsyslog"/debs/*.deb; do dpkg -x "$deb" "$rsyslog"; done
  fi
  # npm packages the tests drive, exactly as each package-lock.json pins them: oidc-provider for
  # the SSO tests (tests/idp), axe-core for the UI's accessibility audit (tests/axe).
  for prefix in tests/idp tests/axe; do
    if [ ! -f "$prefix/node_modules/.package-lock.json" ] \
      || [ "$prefix/package-lock.json" -nt "$prefix/node_modules/.package-lock.json" ]; then
      npm ci --prefix "$prefix" --no-audit --no-fund --loglevel=error
    fi
  done
fi
