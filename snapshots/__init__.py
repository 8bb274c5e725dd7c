"""PostgreSQL snapshots of the sagas: the store, the changelog-to-PostgreSQL mirror, and the
rebuild/restore commands. Kafka's changelog is the source of truth; PostgreSQL is a view."""
