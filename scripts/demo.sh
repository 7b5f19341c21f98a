#!/usr/bin/env bash
# maomao's main job on one machine: a local etcd, a Docker engine, the example tool on a
# short schedule with a spike planted in one run, and a worker in the foreground.
#
#   sudo bash scripts/demo.sh [--for 60s]   run it (Ctrl-C stops it; both print the results)
#   sudo bash scripts/demo.sh --stop        stop the etcd and dockerd it started
#   sudo bash scripts/demo.sh --reset       stop them and remove the demo's data
#
# Running it twice does no harm: what is present is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
# Tables fit the terminal; piped or logged, they get 150 columns.
[ -t 1 ] || export COLUMNS="${COLUMNS:-150}"
DURATION=""
ACTION=run
while [ $# -gt 0 ]; do
  case "$1" in
    --for) DURATION="${2:?--for needs a duration, e.g. 60s}"; shift 2 ;;
    --for=*) DURATION="${1#--for=}"; shift ;;
    --stop) ACTION=stop; shift ;;
    --reset) ACTION=reset; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

# pip, without the "Location ... is ignored" lines some machines' pip.conf produce.
pip_install() {
  .venv/bin/python -m pip install --quiet "$@" 2> >(grep -v "^WARNING: Location '" >&2)
}
# Bold on a terminal; plain when piped or logged, or with NO_COLOR set.
if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
else
  say() { printf '==> %s\n' "$*"; }
fi
DOCKER_DIR=/var/lib/maomao-demo/docker
DOCKER_SOCK=/run/maomao-demo/docker.sock
MAOMAO="$ROOT/.venv/bin/maomao"
CONFIG_DIR="${XDG_CONFIG_HOME:-$HOME/.config}/maomao"

stop_services() {
  if [ -x "$MAOMAO" ]; then "$MAOMAO" etcd stop || true; fi
  if [ -f /run/maomao-demo/dockerd.pid ]; then
    pid=$(cat /run/maomao-demo/dockerd.pid)
    if kill "$pid" 2>/dev/null; then say "stopping the demo's dockerd (pid $pid)"; fi
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    rm -f /run/maomao-demo/dockerd.pid
  fi
}

if [ "$ACTION" = stop ]; then stop_services; exit 0; fi
if [ "$ACTION" = reset ]; then
  stop_services
  data=$("$MAOMAO" config --json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin)["data"]; print(d["importdir"], d["statedir"])' || true)
  say "removing the demo's data: $data $DOCKER_DIR"
  # shellcheck disable=SC2086
  rm -rf $data "$DOCKER_DIR"
  exit 0
fi

# 1. System packages -----------------------------------------------------------
declare -A wanted=([etcd]=etcd-server [etcdctl]=etcd-client [dockerd]=docker.io [git]=git)
missing=()
for command in "${!wanted[@]}"; do
  command -v "$command" >/dev/null 2>&1 || missing+=("${wanted[$command]}")
done
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)  # the example image's shell
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "error: missing packages: ${missing[*]}" >&2
    echo "hint: run this as root, or first: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  say "installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "system packages present: etcd, docker.io, busybox-static, git, python3-venv"
fi

# 2. maomao itself -------------------------------------------------------------
if [ ! -x "$MAOMAO" ]; then
  say "creating .venv and installing maomao (pip)"
  python3 -m venv .venv
  pip_install --upgrade pip
  pip_install -c constraints.txt -e .
else
  say "maomao already installed in .venv"
fi
# An editable install leaves maomao's modules uncompiled, and with PYTHONDONTWRITEBYTECODE
# set every command would compile them again: written once here.
.venv/bin/python -m compileall -q src > /dev/null
if [ "$(id -u)" = 0 ] && [ ! -e /usr/local/bin/maomao ]; then
  ln -s "$MAOMAO" /usr/local/bin/maomao
  say "linked /usr/local/bin/maomao, so a second terminal can run maomao"
fi

# 3. Docker engine -------------------------------------------------------------
docker_host=""
if "$ROOT/.venv/bin/python" -c 'import docker,sys; docker.from_env(timeout=3).ping()' >/dev/null 2>&1; then
  say "a Docker engine is running (${DOCKER_HOST:-/var/run/docker.sock})"
else
  docker_host="unix://$DOCKER_SOCK"
  if ! DOCKER_HOST="$docker_host" "$ROOT/.venv/bin/python" -c 'import docker; docker.from_env(timeout=3).ping()' >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
      echo "error: no Docker engine is running and starting one needs root (hint: sudo bash scripts/demo.sh)" >&2
      exit 1
    fi
    say "starting a Docker engine for the demo on $DOCKER_SOCK (no bridge network: the tool needs none)"
    mkdir -p /run/maomao-demo "$DOCKER_DIR"
    nohup dockerd --host "$docker_host" --data-root "$DOCKER_DIR/data" --exec-root /run/maomao-demo/exec \
      --pidfile /run/maomao-demo/dockerd.pid --bridge=none --iptables=false --ip6tables=false \
      >"$DOCKER_DIR/dockerd.log" 2>&1 &
    for _ in $(seq 1 100); do
      DOCKER_HOST="$docker_host" "$ROOT/.venv/bin/python" -c 'import docker; docker.from_env(timeout=2).ping()' >/dev/null 2>&1 && break
      sleep 0.3
    done
  else
    say "the demo's Docker engine is running on $DOCKER_SOCK"
  fi
fi

# 4. Configuration (only written when absent, so it never overrides yours) -------
if [ ! -f "$CONFIG_DIR/config.toml" ]; then
  mkdir -p "$CONFIG_DIR"
  {
    echo "# written by scripts/demo.sh; see config.toml in the repository for every key"
    echo "[docker]"
    [ -n "$docker_host" ] && echo "host = \"$docker_host\""
    echo 'network = "none"'
  } >"$CONFIG_DIR/config.toml"
  say "wrote $CONFIG_DIR/config.toml"
fi
if [ -n "$docker_host" ]; then export MAOMAO_DOCKER_HOST="$docker_host"; fi

# 5. etcd, the example tool, the schedule ---------------------------------------
if "$MAOMAO" status >/dev/null 2>&1; then
  say "etcd is reachable at $("$MAOMAO" config --json | python3 -c 'import json,sys; print(",".join(json.load(sys.stdin)["etcd"]["endpoints"]))')"
else
  "$MAOMAO" etcd start
fi
say "building the example tool offline (examples/dummy-tool)"
DOCKER_HOST="${docker_host:-${DOCKER_HOST:-}}" "$ROOT/.venv/bin/python" examples/dummy-tool/build.py --tag maomao/dummy-tool:latest 2>&1 | tail -1
data_dir=$("$MAOMAO" config --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["importdir"])')/tools/dummy
count=$(cat "$data_dir/.dummy-run-count" 2>/dev/null || echo 0)
spike_at=$((count + 6))
"$MAOMAO" register dummy maomao/dummy-tool:latest --network none --env "SPIKE_AT=$spike_at" \
  --description "MAO-MAO example collector (spike planted in run $spike_at)"
"$MAOMAO" run dummy --cron "*/3 * * * * *" --name dummy-demo

# 6. The worker in the foreground ------------------------------------------------
say "worker running$( [ -n "$DURATION" ] && echo " for $DURATION" ); Ctrl-C stops it"
trap '' INT  # Ctrl-C goes to the worker, which stops cleanly; this script goes on
status=0
if [ -n "$DURATION" ]; then
  "$MAOMAO" worker &
  worker=$!
  sleep "$DURATION" &
  sleeper=$!
  # Until the duration is over, or the worker stops first (Ctrl-C); then say why it stops.
  wait -n "$worker" "$sleeper" || true
  if kill -0 "$worker" 2>/dev/null; then
    say "$DURATION are over: stopping the worker (it finishes the runs it started)"
    kill -TERM "$worker" 2>/dev/null || true
  fi
  kill "$sleeper" 2>/dev/null || true
  wait "$worker" || status=$?
else
  "$MAOMAO" worker || status=$?
fi
trap - INT

echo
"$MAOMAO" runs --tool dummy  # the newest 20, and how many more
"$MAOMAO" spikes --tool dummy
"$MAOMAO" spikes --tool dummy --chart || true
cat <<TXT

How to go on (in any terminal):
  maomao tools                      what is registered
  maomao schedule list              schedules and their next firings
  maomao worker                     run the worker again (etcd and Docker stay up)
  maomao spikes --tool dummy        the spikes workers found
  maomao register NAME IMAGE        add your own collector (docs/tools.md)
  sudo bash scripts/demo.sh --stop  stop the demo's etcd and dockerd;  --reset also removes its data
TXT
exit "$status"
