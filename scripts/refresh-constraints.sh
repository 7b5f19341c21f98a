#!/usr/bin/env bash
# Re-resolves the dependencies (newest versions within pyproject.toml's bounds) in a fresh
# virtual environment and writes them to constraints.txt. Run the suite and the benches
# on the result before committing it: constraints.txt holds what they passed with.
set -euo pipefail
cd "$(dirname "$0")/.."
fresh="$(mktemp -d)"
trap 'rm -rf "$fresh"' EXIT
python3 -m venv "$fresh/venv"
"$fresh/venv/bin/python" -m pip install --quiet --upgrade pip
"$fresh/venv/bin/python" -m pip install --quiet -e '.[test,plot,bench]'
{
  echo "# The exact versions the suite and the benches pass with (pip install -c constraints.txt ...)."
  echo "# Refresh: bash scripts/refresh-constraints.sh, then run bash scripts/test.sh and the benches."
  "$fresh/venv/bin/python" -m pip freeze --exclude-editable
} > constraints.txt
echo "==> wrote constraints.txt; now run: bash scripts/test.sh"
