#!/usr/bin/env bash
# The test command: a virtual environment with the project and its test extras, the
# linters and the type checker, then pytest (which starts its own etcd and dockerd).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not docker" -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

# pip, without the "Location ... is ignored" lines some machines' pip.conf produce.
pip_install() {
  .venv/bin/python -m pip install --quiet "$@" 2> >(grep -v "^WARNING: Location '" >&2)
}
say() { printf '==> %s\n' "$*"; }

# shellcheck source=scripts/system-packages.sh
source scripts/system-packages.sh

if [ ! -x .venv/bin/python ]; then
  say "creating the virtual environment .venv (python3 -m venv)"
  python3 -m venv .venv
fi
say "installing maomao with its test extras at the tested versions (pip install -c constraints.txt -e '.[test]')"
pip_install --upgrade pip
pip_install -c constraints.txt -e '.[test]'
# An editable install leaves maomao's own modules uncompiled; where PYTHONDONTWRITEBYTECODE
# is set (as on CI), every maomao process the tests start would compile them all anew
# (about 0.15 s of CPU each, hundreds of processes: issue 14). Written once here.
say "compiling maomao's modules (python -m compileall src tests)"
.venv/bin/python -m compileall -q src tests > /dev/null

say "ruff check src tests"
.venv/bin/ruff check src tests
say "ruff format --check src tests"
.venv/bin/ruff format --check src tests
say "mypy --strict src tests"
.venv/bin/mypy src tests
# Several pytest-xdist processes: most tests wait on etcd, dockerd and git servers rather than
# compute, so more workers than cores pay (docs/architecture.md, "Tests in parallel").
# MAOMAO_TEST_WORKERS=0 runs the suite in this one process.
workers="${MAOMAO_TEST_WORKERS:-4}"
say "pytest -n $workers --dist loadgroup $* (the whole suite takes about 7 to 9 minutes on 2 cores, longer on a busy machine)"
# --durations: the slowest tests in every log, where the suite's time goes (issue 14).
exec .venv/bin/pytest -n "$workers" --dist loadgroup --durations=25 "$@"
