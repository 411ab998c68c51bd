"""Cluster mode: many ``avatar-engine serve`` nodes behaving as one service, on Redis.

Off by default. ``--redis redis://...`` gives the server's runtime a
:class:`~avatar_engine.cluster.placement.ClusterPlacement` instead of the single-process
placement; without it nothing here is imported. See docs/deploy.md for the topology and the
measured figures.
"""
