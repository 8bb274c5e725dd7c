"""A pass-through Faust agent: the yardstick for benchmarks/agent_rate.py.

Same Faust settings as the orchestrator (runtime.app.create_app: at-least-once, raw
keys and values, the same consumer transport); one agent that sends every value of
`<APP_ID>-in` to `<APP_ID>-out` under the same key, and nothing else: no tables, no bridges.

    APP_ID=... python -m benchmarks.passthrough worker -l warning
"""

from __future__ import annotations

from faust.types import StreamT

from runtime.app import create_app
from runtime.settings import settings

cfg = settings()
cfg.install_event_loop()  # the same loop as the worker's
app = create_app(cfg)
source = app.topic(f"{cfg.app_id}-in", key_type=bytes, value_type=bytes)
sink = app.topic(f"{cfg.app_id}-out", key_type=bytes, value_type=bytes)


@app.agent(source, name="pass-through")
async def pass_through(stream: StreamT[bytes]) -> None:
    async for event in stream.events():
        await sink.send(key=event.key, value=event.value)


if __name__ == "__main__":
    app.main()
