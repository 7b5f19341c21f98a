"""What `maomao status` says about etcd's storage: its size against the quota, whether
history is compacted, its alarms. Pure: a function of one StoreStatus, tested as a table
(tests/unit/test_store_health.py)."""

from __future__ import annotations

from ..store.base import StoreStatus

# Above this share of the quota etcd is close to its NOSPACE alarm.
QUOTA_WARNING = 0.8
# A history this long that was never compacted means compaction is off: a maomao-started
# etcd compacts every hour (--auto-compaction-retention 1), long before this many.
UNCOMPACTED_REVISIONS = 100_000


def compaction(status: StoreStatus) -> str:
    """on (compacted up to revision N), off (never compacted), or unknown."""
    if status.compact_revision is None:
        return "unknown"
    if status.compact_revision > 0:
        return f"on (compacted up to revision {status.compact_revision})"
    return "off (never compacted)"


def warnings(status: StoreStatus) -> list[str]:
    """One line per storage problem, most urgent first."""
    found = [
        "etcd's database is full (NOSPACE alarm): compact and defragment, see docs/cluster.md"
        if alarm == "NOSPACE"
        else f"etcd raised the {alarm} alarm: see docs/cluster.md"
        for alarm in status.alarms
    ]
    if status.quota and status.db_size > QUOTA_WARNING * status.quota:
        share = 100 * status.db_size / status.quota
        found.append(
            f"etcd's database is at {share:.0f} % of its quota "
            f"({status.db_size / 2**20:.1f} of {status.quota / 2**20:.0f} MiB): "
            "compact and defragment, see docs/cluster.md"
        )
    if status.compact_revision == -1 and status.revision > UNCOMPACTED_REVISIONS:
        found.append(
            f"etcd has never compacted its history ({status.revision} revisions): "
            "run it with --auto-compaction-retention, see docs/cluster.md"
        )
    return found
