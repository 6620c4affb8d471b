"""The session stores the course builds, each held to the SDK's session contract (``session_management.contract``).

- ``course_session``: one store per database (SQLite, PostgreSQL, MySQL) on the SDK's own tables, in two round
  trips per turn (lesson 09).
- ``summarizing_session``: a wrapper over any session that summarizes old turns and never loses them (lesson 11).
- ``redis_cluster_session``: a store for Redis Cluster, where the SDK's ``RedisSession`` cannot write (lessons 09
  and 10).

They are the course's code, not the SDK's: lessons show them as labelled excerpts, never as something to paste.
"""
