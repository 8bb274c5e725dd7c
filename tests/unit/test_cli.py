"""The operator's CLI without a worker: where its options may go, which token it sends (on
every call) and what a refusal says. A stand-in HTTP server records what it is sent."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from orchestrator.cli import _parser, main, sagas_argv

TOKEN = "cli-token-0123456789"


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("SAGA_URL", "SAGA_TOKEN", "OPERATOR_TOKEN", "WEB_PORT"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize("argv", [
    ["sagas", "list", "--json", "--url", "http://w:1"],
    ["sagas", "--url", "http://w:1", "list", "--json"],
    ["sagas", "--json", "list", "--url=http://w:1"],
    ["--url", "http://w:1", "sagas", "list", "--json"],
    ["--url", "http://w:1", "--json", "sagas", "list"],
])
def test_options_go_before_or_after_the_command(argv: list[str]) -> None:
    cli = sagas_argv(argv)
    assert cli is not None
    args = _parser().parse_args(cli)
    assert (args.command, args.url, args.json, args.token) == ("list", "http://w:1", True, None)


@pytest.mark.parametrize("argv", [["worker", "-l", "info"], ["--url", "http://w:1", "worker"], [],
                                  ["--web-port", "6066", "sagas"]])
def test_anything_else_is_not_the_cli(argv: list[str]) -> None:
    assert sagas_argv(argv) is None


def test_the_defaults_and_where_the_token_comes_from(monkeypatch: pytest.MonkeyPatch) -> None:
    args = _parser().parse_args(["show", "s-1"])
    assert (args.url, args.token, args.json) == ("http://127.0.0.1:6066", None, False)
    monkeypatch.setenv("OPERATOR_TOKEN", "from-operator-token-env")
    assert _parser().parse_args(["history", "s-1"]).token == "from-operator-token-env"
    monkeypatch.setenv("SAGA_TOKEN", "from-saga-token-env")
    assert _parser().parse_args(["history", "s-1"]).token == "from-saga-token-env"
    assert _parser().parse_args(["--token", "given", "retry", "s-1"]).token == "given"
    assert _parser().parse_args(["retry", "s-1", "--token", "after"]).token == "after"


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str, str | None]]] = []
    status: ClassVar[int] = 200

    def _answer(self) -> None:
        _Recorder.seen.append((self.command, self.path, self.headers.get("Authorization")))
        if self.status != 200:
            body: Any = {"error": "missing bearer token"}
        elif self.path.startswith("/api/v1/saga/status/"):
            body = {"saga_id": "s-1", "status": "compensation_failed", "transitions": []}
        elif self.path.endswith("/history"):
            body = {"saga_id": "s-1", "transitions": []}
        elif self.path.endswith("/erase"):
            body = {"saga_id": "s-1", "outcome": "accepted"}
        elif self.command == "POST":
            body = {"accepted": True, "status_before": "compensation_failed"}
        else:
            body = {"sagas": [], "next_cursor": None}
        data = json.dumps(body).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def worker() -> Iterator[str]:
    _Recorder.seen, _Recorder.status = [], 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_the_token_goes_with_every_call(worker: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAGA_TOKEN", TOKEN)
    out = io.StringIO()
    for argv in (["list", "--json", "--url", worker], ["--url", worker, "list", "--attention"],
                 ["show", "s-1", "--url", worker], ["history", "s-1", "--url", worker, "--json"],
                 ["retry", "s-1", "--url", worker], ["cancel", "s-1", "--reason", "r", "--url", worker]):
        assert main(argv, out=out) == 0, argv
    assert len(_Recorder.seen) == 7  # show reads the state and the history
    assert {auth for _, _, auth in _Recorder.seen} == {f"Bearer {TOKEN}"}
    assert [p for m, p, _ in _Recorder.seen if m == "POST"] == ["/api/v1/sagas/s-1/retry",
                                                               "/api/v1/sagas/s-1/cancel"]


def test_a_401_without_a_token_says_where_to_put_one(worker: str, capsys: pytest.CaptureFixture[str]) -> None:
    _Recorder.status = 401
    assert main(["list", "--url", worker]) == 1
    err = capsys.readouterr().err
    assert "HTTP 401: missing bearer token" in err and "SAGA_TOKEN" in err and "--token" in err
    assert _Recorder.seen[0][2] is None  # no token: no header


def test_erase_takes_a_saga_or_a_partner(worker: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["erase", "--url", worker]) == 2
    assert main(["erase", "s-1", "--partner-id", "p-1", "--url", worker]) == 2
    assert "a saga id or --partner-id" in capsys.readouterr().err
    assert _Recorder.seen == []  # nothing asked
    assert main(["erase", "s-1", "--url", worker, "--token", TOKEN]) == 0
    assert main(["erase", "--partner-id", "p 1", "--url", worker, "--token", TOKEN]) == 0
    assert [(m, p) for m, p, _ in _Recorder.seen] == [("POST", "/api/v1/sagas/s-1/erase"),
                                                      ("POST", "/api/v1/partners/p%201/erase")]
