#!/usr/bin/env python3
"""Saga lifecycle events as they happen, one line each (`make monitor`).

Reads the saga-lifecycle topic on the Pulsar broker of BROKER_URL (SAGA_LIFECYCLE_TOPIC), as
`python -m orchestrator.monitor` does; Ctrl-C stops it.

    uv run python scripts/monitor_saga_events.py
    BROKER_URL=pulsar://127.0.0.1:6650 uv run python scripts/monitor_saga_events.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrator.monitor import main

if __name__ == "__main__":
    main()
