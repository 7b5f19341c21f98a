#!/bin/sh
# The dummy collector: one data file and one control value per run.
#
#   SPIKE_AT=N   the N-th run (counted in the data dir) writes a big spike
#   SPIKE=1      this run writes a big spike
#   SLEEP=N      sleep N seconds before writing (to test timeouts and Ctrl-C)
#   EXIT_CODE=N  exit with N after writing (to test failures)
set -eu
DATA=/usr/src/app/data
STATE="$DATA/.dummy-run-count"

count=0
[ -f "$STATE" ] && count=$(cat "$STATE")
count=$((count + 1))
echo "$count" > "$STATE"

echo "dummy-tool: run $count starting"
if [ "${SLEEP:-0}" != "0" ]; then
    echo "dummy-tool: sleeping ${SLEEP}s"
    sleep "$SLEEP"
fi

# Sortable and unique even for runs a second apart: UTC time, then the run count.
stamp="$(date -u +%Y%m%dT%H%M%SZ)-$(printf '%06d' "$count")"

# A noisy but stable baseline: 100 plus or minus 5, from one random byte.
byte=$(od -An -N1 -tu1 /dev/urandom | tr -d ' \n')
value=$((95 + byte % 11))
if [ "${SPIKE:-0}" = "1" ] || [ "${SPIKE_AT:-0}" = "$count" ]; then
    value=$((value * 10))
    echo "dummy-tool: spike!"
fi

echo "run=$count time=$stamp value=$value" > "$DATA/data-$stamp.txt"
echo "$value" > "$DATA/control-$stamp.csv"
echo "dummy-tool: wrote control-$stamp.csv = $value"

exit "${EXIT_CODE:-0}"
