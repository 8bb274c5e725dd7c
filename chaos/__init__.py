"""The fault harness: sagas under load while workers, brokers and the database fail."""
