#!/bin/sh
# The dummy collector: one data file and one control value per run.
#
# maomao tells it who and when it is (docs/tools.md): MAOMAO_MEMBER names its state, and
# MAOMAO_FIRE_TIME (the nominal firing) its files, so two members running one firing
# never write the same name, and a retry of a firing rewrites that firing's files.
#
#   VALUE=N          write N as the control value instead of a random one
#   ODD_MEMBER=M     on member M, add ODD_DELTA (default 10) to the value (peer audits)
#   SPIKE_AT=N       the N-th run of this member (counted in the data dir) writes a spike
#   SPIKE_AT_FIRE=T  the run of the firing at T (as MAOMAO_FIRE_TIME says it) writes a spike
#   SPIKE=1          this run writes a big spike
#   INSIGHTS=1       leave an insights.json (the value and the run count) for maomao
#   SLEEP=N          sleep N seconds before writing (to test timeouts and Ctrl-C)
#   EXIT_CODE=N      exit with N after writing (to test failures)
set -eu
DATA=/usr/src/app/data
member="${MAOMAO_MEMBER:-local}"
STATE="$DATA/.dummy-run-count-$member"

count=0
[ -f "$STATE" ] && count=$(cat "$STATE")
count=$((count + 1))
echo "$count" > "$STATE"

echo "dummy-tool: run $count starting"
echo "dummy-tool: member $member, ${MAOMAO_TRIGGER:-manual}, firing ${MAOMAO_FIRE_TIME:-now}"
if [ "${SLEEP:-0}" != "0" ]; then
    echo "dummy-tool: sleeping ${SLEEP}s"
    sleep "$SLEEP"
fi

# Sortable and unique: the firing's UTC time (20261201T090145Z); a manual run adds its
# run id's tail, since two manual runs may start in the same second. Without maomao
# (plain `docker run`): the time now and the run count.
if [ -n "${MAOMAO_FIRE_TIME:-}" ]; then
    stamp=$(echo "$MAOMAO_FIRE_TIME" | tr -d ':-')
    if [ "${MAOMAO_TRIGGER:-manual}" = "manual" ]; then
        stamp="$stamp-${MAOMAO_RUN_ID##*-}"
    fi
else
    stamp="$(date -u +%Y%m%dT%H%M%SZ)-$(printf '%06d' "$count")"
fi

if [ -n "${VALUE:-}" ]; then
    value=$VALUE
else
    # A noisy but stable baseline: 100 plus or minus 5, from one random byte.
    byte=$(od -An -N1 -tu1 /dev/urandom | tr -d ' \n')
    value=$((95 + byte % 11))
fi
if [ -n "${ODD_MEMBER:-}" ] && [ "$ODD_MEMBER" = "$member" ]; then
    value=$((value + ${ODD_DELTA:-10}))
fi
spike=0
[ "${SPIKE:-0}" = "1" ] && spike=1
[ "${SPIKE_AT:-0}" = "$count" ] && spike=1
[ -n "${SPIKE_AT_FIRE:-}" ] && [ "$SPIKE_AT_FIRE" = "${MAOMAO_FIRE_TIME:-}" ] && spike=1
if [ "$spike" = "1" ]; then
    value=$((value * 10))
    echo "dummy-tool: spike!"
fi

echo "time=$stamp value=$value" > "$DATA/data-$stamp.txt"
if [ "${INSIGHTS:-0}" = "1" ]; then
    echo "{\"value\": $value, \"runs\": $count, \"member\": \"$member\"}" > "$DATA/insights.json"
fi
echo "$value" > "$DATA/control-$stamp.csv"
echo "dummy-tool: wrote control-$stamp.csv = $value"

exit "${EXIT_CODE:-0}"
