"""The cluster a manager keeps (its id, made once with its database), told to its workers.

Workers label their containers with the id and list, watch and remove only those, so two
clusters sharing a Docker engine, even with the same node names, never touch each
other's containers. A worker learns the id from the `ClusterInfo` sent while its
heartbeats name none or another, and from every `RunTask`.
"""

from __future__ import annotations

from manager.effects import Decision, Outgoing
from shared import topology
from shared.codec import encode
from shared.messages import ClusterInfo, Heartbeat


def introduce(beat: Heartbeat, cluster: str) -> Decision:
    """Tell a worker its cluster while its heartbeats name none, or another."""
    if beat.part != 0 or beat.cluster == cluster:
        return Decision()
    told = ClusterInfo(cluster=cluster)
    return Decision(outgoing=[Outgoing(topology.DISPATCH, beat.node, encode(told))])
