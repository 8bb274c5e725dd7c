"""The first version's entry point, kept: `uv run python app.py` starts one orchestrator worker.

It is `python -m orchestrator worker -l info` (make worker): the settings are checked and the
services probed first (one readable line and exit code 2 when something is wrong), then the
Faust worker runs. Extra arguments go to the worker, e.g. `--web-port 6067`.
"""

from __future__ import annotations

import sys

from orchestrator.__main__ import main

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "worker", "-l", "info", *sys.argv[1:]]
    main()
