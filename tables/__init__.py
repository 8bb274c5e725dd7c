"""Changelog-backed Faust tables, one module per saga."""
