"""Stand-ins for gestion-de-integraciones and gestion-de-alianzas, speaking the same
Pulsar topics and CloudEvents, with configurable latency, failure and no-reply rates."""
