"""`python -m orchestrator worker ...`: check the settings and services, then run Faust.
`python -m orchestrator sagas ...`: the operator's CLI (orchestrator/cli.py)."""

from __future__ import annotations

import logging
import os
import sys

from orchestrator.cli import main as sagas
from orchestrator.cli import sagas_argv
from orchestrator.config import ConfigError, load_settings
from orchestrator.preflight import check_access


def main() -> None:
    cli_argv = sagas_argv(sys.argv[1:])
    if cli_argv is not None:  # the operator's CLI: HTTP only, no settings
        raise SystemExit(sagas(cli_argv))
    try:
        cfg = load_settings()
        cfg.install_event_loop()
        if len(sys.argv) > 1 and sys.argv[1] == "worker":
            cfg.datadir.mkdir(parents=True, exist_ok=True)
            warnings = check_access(cfg)  # each service as the worker speaks to it; creates the topics
            from orchestrator.auth import Authority

            warnings += Authority.from_settings(cfg).warnings()
            for warning in warnings:
                logging.getLogger("orchestrator").warning(warning)
    except ConfigError as exc:
        print(f"saga-orchestrator: {exc}", file=sys.stderr, flush=True)
        # Out at once: a Pulsar client that was refused may still hold a C++ thread, whose
        # teardown at interpreter exit aborts ("terminate called ...") after the one line.
        sys.stdout.flush()
        os._exit(2)
    from orchestrator.worker import app

    app.main()


if __name__ == "__main__":
    main()
