"""Faust agents: thin loops that decode, call the domain, and send."""
