"""make chaos: every scenario at full size, one table. Exits non-zero unless every saga of
every scenario ended as expected (0 ended wrongly, 0 not ended, 0 ended twice)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from chaos.harness import Row, print_table
from chaos.scenarios import SCENARIOS, Size


async def _main(args: argparse.Namespace) -> int:
    size = Size(rate=args.rate, seconds=args.seconds, outage_s=args.outage_s, pg_outage_s=args.pg_outage_s,
                hostile=args.hostile)
    rows: list[Row] = []
    for name in args.only.split(","):
        print(f"chaos: {name} ...", flush=True)
        try:
            rows.append(await SCENARIOS[name](size))
        except Exception as exc:  # the table still prints; the run fails
            logging.exception("scenario %s failed", name)
            rows.append(Row(name, 0, 0, 0, 0, 0, note=f"FAILED: {exc!r}"[:500]))
    print()
    print_table(rows)
    return 0 if all(r.clean for r in rows) else 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rate", type=float, default=40.0, help="sagas started per second")
    p.add_argument("--seconds", type=float, default=30.0, help="of load per scenario")
    p.add_argument("--outage-s", type=float, default=10.0, help="Kafka and Pulsar outages")
    p.add_argument("--pg-outage-s", type=float, default=30.0)
    p.add_argument("--hostile", type=int, default=10_000)
    p.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated: {','.join(SCENARIOS)}")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    code = asyncio.run(_main(p.parse_args()))
    # The Pulsar client's threads can abort the interpreter's exit ("terminate called
    # without an active exception", exit 134) after a clean table: the outcome is decided.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
