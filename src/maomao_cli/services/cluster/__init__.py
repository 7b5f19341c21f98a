"""The collaboration's etcd cluster: found it, join it, leave it, inspect it.

- rules.py: quorum arithmetic and when to refuse a join or a leave (pure).
- state.py: what this machine keeps under <statedir>/cluster.
- pki.py: the collaboration's CA and each member's certificates.
- membership.py, joining.py: the changes (init, join, leave, start, stop).
- status.py: the members' health and the cluster's fault tolerance.
- service.py: ClusterService, the commands as one object built with the etcd
  administration port (ports.ConnectAdmin).
"""

from __future__ import annotations

from .joining import Joined
from .membership import Founded, Left
from .rules import (
    MemberHealth,
    caught_up,
    fault_tolerance,
    initial_cluster,
    join_conflicts,
    join_refusals,
    join_risks,
    leave_refusals,
    quorum,
)
from .service import ClusterService
from .state import ClusterPaths, MemberConfig
from .status import ClusterStatus, MemberStatus
from .waiting import Clock

__all__ = [
    "Clock",
    "ClusterPaths",
    "ClusterService",
    "ClusterStatus",
    "Founded",
    "Joined",
    "Left",
    "MemberConfig",
    "MemberHealth",
    "MemberStatus",
    "caught_up",
    "fault_tolerance",
    "initial_cluster",
    "join_conflicts",
    "join_refusals",
    "join_risks",
    "leave_refusals",
    "quorum",
]
