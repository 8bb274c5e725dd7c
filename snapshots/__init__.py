"""PostgreSQL snapshots of the sagas: the store (with its own retention), the
changelog-to-PostgreSQL mirror, and the rebuild/restore commands. Kafka's changelog is the
source of truth; PostgreSQL is a view, which keeps a row (without personal data) for every
saga retention took out of the live tables."""
