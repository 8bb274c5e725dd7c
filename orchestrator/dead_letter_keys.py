"""`python -m orchestrator dead-letters new-key|unseal`: the keys that seal dead letters'
originals (agents/dead_letters.py).

    python -m orchestrator dead-letters new-key          # a new Fernet key, for DEAD_LETTER_KEYS
    python -m orchestrator dead-letters unseal SEALED    # the original of a letter (its `sealed`
    ... | python -m orchestrator dead-letters unseal -   #   header or Pulsar property), on stdout

`unseal` opens with DEAD_LETTER_KEYS / DEAD_LETTER_KEYS_FILE, else DATADIR/dead-letter.key (the
key a worker made for itself), and with every `--key-file` given. Exit codes: 0 done, 1 no key
opens it, 2 usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from common.sealing import InvalidToken, Sealer, new_key, parse_keys
from common.security import read_secret
from runtime.settings import ConfigError, load_settings

__all__ = ["main"]


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m orchestrator dead-letters",
                                description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("new-key", help="print a new key")
    un = sub.add_parser("unseal", help="print the original of a sealed dead letter")
    un.add_argument("sealed", help="the letter's `sealed` header, or - to read it from stdin")
    un.add_argument("--key-file", action="append", default=[], help="a file of keys (repeat for several)")
    args = p.parse_args(argv)
    if args.command == "new-key":
        print(new_key())
        return 0
    sealed = sys.stdin.read() if args.sealed == "-" else args.sealed
    try:
        keys = [k for f in args.key_file for k in parse_keys(read_secret(f))]
        try:
            keys += load_settings().dead_letter_keys_list()
        except (ConfigError, ValueError):
            if not keys:
                raise
        original = Sealer(keys).unseal(sealed.strip())
    except (ConfigError, ValueError) as exc:
        print(f"dead-letters: {exc}", file=sys.stderr)
        return 2
    except InvalidToken:
        print("dead-letters: no key opens it (another worker's key? give it with --key-file), or it "
              "was altered", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(original)
    sys.stdout.buffer.flush()
    return 0
