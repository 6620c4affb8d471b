"""Throwaway servers for the lessons and tests that crash, freeze or fail over a database: unprivileged processes
on loopback ports, removed when the block that started them ends.

- ``local``: what they share (free ports, spawning, waiting, signals).
- ``redis_connect``: which Redis a lesson uses (``REDIS_URL``, ``REDIS_CLUSTER_URL``), a throwaway one when none
  is configured.
- ``redis``: one Redis server, or a Redis Cluster of primaries and replicas (lessons 09 and 10).
- ``patroni``: a PostgreSQL cluster with automatic failover (etcd + Patroni, lesson 12).
- ``galera``: a three-node MariaDB Galera cluster (lesson 12).
"""
