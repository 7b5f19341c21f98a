#!/usr/bin/env bash
# Installs the Debian packages the tests need when they are missing (sourced by
# scripts/test.sh; as root, or it says what to install).
# command -> Debian package that provides it
declare -A wanted=(
  [etcd]=etcd-server
  [etcdctl]=etcd-client
  [dockerd]=docker.io
  [git]=git
  [sshd]=openssh-server
  [ssh]=openssh-client
  [ip]=iproute2
  [faketime]=faketime  # the clock-offset test shifts one worker's clock
)
missing=()
for command in "${!wanted[@]}"; do
  # sshd lives in /usr/sbin, which a non-login shell may not have on PATH.
  if ! command -v "$command" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$command" ]; then
    missing+=("${wanted[$command]}")
  fi
done
# The test containers run the static busybox; python3 -m venv needs ensurepip.
[ -x /bin/busybox ] || missing+=(busybox-static)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "error: missing packages: ${missing[*]} (hint: run as root, or: sudo apt-get install -y ${missing[*]})" >&2
    exit 1
  fi
  say "installing missing packages: ${missing[*]} (apt-get, quiet)"
  export DEBIAN_FRONTEND=noninteractive
  # The tests start their own sshd, dockerd and etcd on free loopback ports: keep the
  # packages' own services from starting (an SSH server on port 22, say) while installing.
  policy=/usr/sbin/policy-rc.d
  own_policy=no
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=yes
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ "$own_policy" = yes ] && rm -f "$policy"
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    # Not left enabled either: the tests run sshd themselves, on a port of their own.
    systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true
  fi
  say "installed: ${missing[*]}"
else
  say "all system packages present"
fi

