"""The orchestrator process: configuration, the Faust app and its web views."""
