"""Kafka topics of the orchestrator, one module per saga."""
