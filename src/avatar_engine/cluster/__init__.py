"""Cluster mode: many ``avatar-engine serve`` nodes behaving as one service, on Redis.

Off by default. ``--redis redis://...`` attaches a :class:`~avatar_engine.cluster.node.ClusterNode`
to the server's runtime; without it nothing here is imported and the server is the embedded
single-process one. See docs/deploy.md for the topology and the measured figures.
"""

from __future__ import annotations

from avatar_engine.cluster.node import ClusterNode
from avatar_engine.cluster.quotas import RedisQuotas

__all__ = ["ClusterNode", "RedisQuotas"]
