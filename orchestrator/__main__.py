"""`python -m orchestrator worker ...`: check the settings and services, then run Faust.
`python -m orchestrator sagas ...`: the operator's CLI (orchestrator/cli.py).
`python -m orchestrator dead-letters ...`: the keys of dead letters (orchestrator/dead_letter_keys.py)."""

from __future__ import annotations

import logging
import os
import sys

from orchestrator.cli import main as sagas
from orchestrator.cli import sagas_argv
from orchestrator.preflight import check_access
from runtime.settings import ConfigError, load_settings


def main() -> None:
    cli_argv = sagas_argv(sys.argv[1:])
    if cli_argv is not None:  # the operator's CLI: HTTP only, no settings
        raise SystemExit(sagas(cli_argv))
    if sys.argv[1:2] == ["dead-letters"]:
        from orchestrator.dead_letter_keys import main as dead_letters

        raise SystemExit(dead_letters(sys.argv[2:]))
    try:
        cfg = load_settings()
        cfg.install_event_loop()
        if len(sys.argv) > 1 and sys.argv[1] == "worker":
            cfg.datadir.mkdir(parents=True, exist_ok=True)
            try:
                cfg.dead_letter_sealer(create=True)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"configuration error: dead letters' key (DEAD_LETTER_KEYS, "
                                  f"DEAD_LETTER_KEYS_FILE or DATADIR/dead-letter.key): {exc}") from None
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
