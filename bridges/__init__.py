"""Bridges between Pulsar (where the participants are) and Kafka (where Faust works)."""
