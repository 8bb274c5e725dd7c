"""`python -m orchestrator sagas list|show|history|retry|cancel|erase`: the operator's terminal view.

It reaches a worker over HTTP (any worker: status requests are routed to the owner of the
saga's partition), like the dashboard, and prints tables, or JSON with `--json`:

    export SAGA_TOKEN=...                                  # or OPERATOR_TOKEN, or --token
    python -m orchestrator sagas list --status compensation_failed --status compensating
    python -m orchestrator sagas list --search <saga, partner or correlation id> --json
    python -m orchestrator sagas list --attention          # what a person should look at
    python -m orchestrator sagas show <saga id>            # state, deadline, commands, timeline
    python -m orchestrator sagas history <saga id>
    python -m orchestrator sagas retry <saga id>           # a token with the operate role
    python -m orchestrator sagas cancel <saga id> --reason "..."
    python -m orchestrator sagas erase <saga id>           # forget the partner's personal data
    python -m orchestrator sagas erase --partner-id <id>   # ... in every saga of the partner

`--url` (default $SAGA_URL, else http://127.0.0.1:$WEB_PORT, port 6066), `--token` (default
$SAGA_TOKEN, else $OPERATOR_TOKEN: sent as a bearer token with every call) and `--json` go
before or after the command. Exit codes: 0 done, 1 not found (or the worker refused or
failed: the message says why), 2 usage (bad arguments, or a request the worker calls
invalid). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NoReturn, TextIO

__all__ = ["main", "sagas_argv"]

OK, FAILED, USAGE = 0, 1, 2


class CliError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def _default_url() -> str:
    return os.environ.get("SAGA_URL") or f"http://127.0.0.1:{os.environ.get('WEB_PORT', '6066')}"


def _default_token() -> str | None:
    return os.environ.get("SAGA_TOKEN") or os.environ.get("OPERATOR_TOKEN") or None


_NO_TOKEN_HINT = "set SAGA_TOKEN (or OPERATOR_TOKEN) or pass --token"


def _request(base: str, method: str, path: str, *, body: dict[str, Any] | None = None,
             token: str | None = None, timeout: float = 15.0) -> Any:
    headers = {"accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["content-type"] = "application/json"
    if token:
        headers["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(base.rstrip("/") + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            detail = json.loads(raw).get("error") or raw.decode(errors="replace")
        except (ValueError, AttributeError):
            detail = raw.decode(errors="replace")[:300]
        code = FAILED if e.code in (401, 403, 404, 409) or e.code >= 500 else USAGE
        if e.code == 401 and not token:
            detail = f"{detail} ({_NO_TOKEN_HINT})"
        raise CliError(code, f"{method} {path}: HTTP {e.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as e:
        raise CliError(FAILED, f"cannot reach the worker at {base}: {getattr(e, 'reason', e)}") from None


# --- formatting ---------------------------------------------------------------------------
def _epoch(value: Any) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def ago(value: Any, now: float | None = None) -> str:
    """'12 s ago', '3 min ago', 'in 4 s' for an epoch or ISO time; '-' when there is none."""
    t = _epoch(value)
    if t is None:
        return "-"
    d = (time.time() if now is None else now) - t
    future, d = d < 0, abs(d)
    if d < 90:
        text = f"{d:.0f} s"
    elif d < 90 * 60:
        text = f"{d / 60:.0f} min"
    elif d < 36 * 3600:
        text = f"{d / 3600:.0f} h"
    else:
        text = f"{d / 86400:.0f} d"
    return f"in {text}" if future else f"{text} ago"


def _when(value: Any) -> str:
    t = _epoch(value)
    return "-" if t is None else datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def table(rows: Sequence[Sequence[str]], head: Sequence[str], out: TextIO) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    for line in (head, *rows):
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip(), file=out)


def _short(text: Any, n: int = 60) -> str:
    s = "" if text is None else str(text)
    return s if len(s) <= n else s[: n - 1] + "…"


# --- commands ------------------------------------------------------------------------------
def _list(args: argparse.Namespace, out: TextIO) -> int:
    if args.attention:
        data = _request(args.url, "GET", "/api/v1/sagas/attention", token=args.token)
        rows = data["sagas"]
    else:
        query = {k: v for k, v in (("status", ",".join(args.status or [])), ("origin", args.origin),
                                   ("q", args.search), ("partner_id", args.partner_id),
                                   ("limit", str(args.limit)), ("cursor", args.cursor)) if v}
        rows, cursor = [], args.cursor
        while True:
            if cursor:
                query["cursor"] = cursor
            data = _request(args.url, "GET", "/api/v1/sagas?" + urllib.parse.urlencode(query),
                            token=args.token)
            rows += data["sagas"]
            cursor = data.get("next_cursor")
            if not (args.all and cursor):
                break
        if not args.all and cursor:  # on stderr: stdout stays the table or the JSON
            print(f"(more: --cursor {cursor}, or --all)", file=sys.stderr)
    if args.json:
        json.dump(rows, out, indent=2)
        out.write("\n")
        return OK
    table([(r["saga_id"], r["status"], r.get("origin") or "-", r.get("partner_id") or "-",
            ago(r.get("updated_at")), _short(r.get("reason"))) for r in rows],
          ("SAGA ID", "STATUS", "ORIGIN", "PARTNER", "UPDATED", "REASON"), out)
    print(f"{len(rows)} saga(s)", file=out)
    return OK


def _show(args: argparse.Namespace, out: TextIO) -> int:
    saga_id = urllib.parse.quote(args.saga_id, safe="")
    state = _request(args.url, "GET", f"/api/v1/saga/status/{saga_id}", token=args.token)
    try:
        history = _request(args.url, "GET", f"/api/v1/sagas/{saga_id}/history",
                           token=args.token)["transitions"]
    except CliError:  # not snapshotted yet: the live state's own last transitions
        history = state.get("transitions") or []
    if args.json:
        json.dump({"state": state, "timeline": history}, out, indent=2)
        out.write("\n")
        return OK
    deadline = state.get("deadline")
    fields = [
        ("saga", state["saga_id"]), ("flow", state.get("flow", "partner-creation")),
        ("status", state["status"] + ("  (needs attention)" if state["status"] == "compensation_failed"
                                      else "")),
        ("origin", state.get("origin")), ("correlation id", state.get("correlation_id")),
        ("partner", state.get("partner_id") or "-"), ("captures", state.get("captures") or "-"),
        ("step", f"{state.get('step') or '-'} (attempt {state.get('attempt', 0)})"),
        ("deadline", "-" if not deadline else
         f"{deadline['step']} {deadline['phase']} {deadline['kind']} #{deadline['attempt']}, "
         f"due {ago(deadline['due_at'])} ({_when(deadline['due_at'])})"),
        ("reason", state.get("reason") or "-"),
        ("created", f"{_when(state.get('created_at'))} ({ago(state.get('created_at'))})"),
        ("updated", f"{_when(state.get('updated_at'))} ({ago(state.get('updated_at'))})"),
        ("source", state.get("source")),
    ]
    width = max(len(k) for k, _ in fields)
    for k, v in fields:
        print(f"{k.rjust(width)}  {v}", file=out)
    start = _epoch(history[0]["at"]) if history else None
    print("\ntimeline", file=out)
    table([(_when(t["at"]), f"+{(_epoch(t['at']) or 0) - (start or 0):.3f}s",
            f"{t.get('from_status') or '-'} -> {t['to_status']}", t["event_type"]) for t in history],
          ("AT", "SINCE START", "TRANSITION", "EVENT"), out)
    print("\ncommands (the last ones sent)", file=out)
    table([(c["command_id"], c["type"], str(c.get("destination")), str(c.get("attempt")))
           for c in state.get("commands") or []], ("COMMAND ID", "TYPE", "TO", "ATTEMPT"), out)
    return OK


def _history(args: argparse.Namespace, out: TextIO) -> int:
    saga_id = urllib.parse.quote(args.saga_id, safe="")
    rows = _request(args.url, "GET", f"/api/v1/sagas/{saga_id}/history", token=args.token)["transitions"]
    if args.json:
        json.dump(rows, out, indent=2)
        out.write("\n")
        return OK
    table([(_when(t["at"]), ago(t["at"]), f"{t.get('from_status') or '-'} -> {t['to_status']}",
            t["event_type"], t["event_id"]) for t in rows],
          ("AT", "WHEN", "TRANSITION", "EVENT", "EVENT ID"), out)
    return OK


def _operate(args: argparse.Namespace, out: TextIO) -> int:
    saga_id = urllib.parse.quote(args.saga_id, safe="")
    body = {"reason": args.reason} if getattr(args, "reason", None) else {}
    answer = _request(args.url, "POST", f"/api/v1/sagas/{saga_id}/{args.command}", body=body,
                      token=args.token)
    if args.json:
        json.dump(answer, out, indent=2)
        out.write("\n")
    else:
        print(f"{args.command} of saga {args.saga_id} accepted (status before: "
              f"{answer.get('status_before')}); the saga decides whether it applies: "
              f"sagas show {args.saga_id}", file=out)
    return OK


def _erase(args: argparse.Namespace, out: TextIO) -> int:
    """The right to erasure, for one saga or for every saga of a partner. Exit 0 when every
    saga accepted the request or holds no personal data any more, 1 when one refused."""
    if (args.saga_id is None) == (args.partner_id is None):
        raise CliError(USAGE, "erase takes a saga id or --partner-id, not both and not neither")
    if args.saga_id is not None:
        path = f"/api/v1/sagas/{urllib.parse.quote(args.saga_id, safe='')}/erase"
    else:
        path = f"/api/v1/partners/{urllib.parse.quote(args.partner_id, safe='')}/erase"
    answer = _request(args.url, "POST", path, token=args.token)
    sagas = answer.get("sagas") or [answer]
    if args.json:
        json.dump(answer, out, indent=2)
        out.write("\n")
    else:
        table([(s["saga_id"], s["outcome"], s.get("saga_status") or "-",
                s.get("error") or s.get("detail") or "") for s in sagas],
              ("SAGA", "ERASURE", "STATUS", "DETAIL"), out)
    return FAILED if any(s["outcome"] not in ("accepted", "already_erased") for s in sagas) else OK


def _definitions(args: argparse.Namespace, out: TextIO) -> int:
    rows = _request(args.url, "GET", "/api/v1/sagas/definitions", token=args.token)["definitions"]
    if args.json:
        json.dump(rows, out, indent=2)
        out.write("\n")
        return OK
    table([(d["flow"], str(d["version"]), "yes" if d["deployed"] else "NO", "yes" if d["newest"] else "",
            str(d["sagas_left"]), "yes" if d["removable"] else "") for d in rows],
          ("FLOW", "VERSION", "DEPLOYED", "NEWEST", "SAGAS LEFT", "REMOVABLE"), out)
    return OK


def _common(p: argparse.ArgumentParser, *, top: bool) -> None:
    """The options every command takes, before or after it. On the commands they default to
    SUPPRESS, so that one given before the command is not overwritten by the default after."""
    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    p.add_argument("--url", default=default(_default_url()),
                   help="a worker's web address (default $SAGA_URL, else http://127.0.0.1:$WEB_PORT)")
    p.add_argument("--token", default=default(_default_token()),
                   help="bearer token sent with every call (default $SAGA_TOKEN, else $OPERATOR_TOKEN)")
    p.add_argument("--json", action="store_true", default=default(False), help="print JSON instead of tables")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m orchestrator sagas", description=__doc__.split("\n\n")[0])
    _common(p, top=True)
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="sagas, newest first")
    _common(ls, top=False)
    ls.add_argument("--status", action="append", help="a status (repeat for several)")
    ls.add_argument("--origin", choices=("http", "partner_event"))
    ls.add_argument("--search", help="a saga id, partner id or correlation id")
    ls.add_argument("--partner-id")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--cursor")
    ls.add_argument("--all", action="store_true", help="every page")
    ls.add_argument("--attention", action="store_true", help="sagas a person should look at")
    for name, text in (("show", "a saga: state, deadline, commands, timeline"),
                       ("history", "a saga's transitions"), ("retry", "retry a failed compensation"),
                       ("cancel", "stop a live saga and undo what it did")):
        c = sub.add_parser(name, help=text)
        _common(c, top=False)
        c.add_argument("saga_id")
        if name == "cancel":
            c.add_argument("--reason")
    df = sub.add_parser("definitions", help="saga definition versions: deployed, newest, sagas left, "
                                            "removable")
    _common(df, top=False)
    er = sub.add_parser("erase", help="erase a partner's personal data from a finished saga, or from "
                                      "every saga of a partner (--partner-id)")
    _common(er, top=False)
    er.add_argument("saga_id", nargs="?")
    er.add_argument("--partner-id")
    return p


def sagas_argv(argv: Sequence[str]) -> list[str] | None:
    """The CLI's arguments when `python -m orchestrator ARGV` runs it: the word `sagas` first,
    or after options the CLI takes (`--url X --json sagas list`); None for anything else."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "sagas":
            return [*argv[:i], *argv[i + 1:]]
        if arg in ("--url", "--token"):
            i += 2
        elif arg == "--json" or arg.startswith(("--url=", "--token=")):
            i += 1
        else:
            return None
    return None


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "list" and not 1 <= args.limit <= 500:
        parser.error("--limit must be between 1 and 500")
    run = {"list": _list, "show": _show, "history": _history, "retry": _operate, "cancel": _operate,
           "erase": _erase, "definitions": _definitions}
    try:
        return run[args.command](args, out)
    except CliError as exc:
        print(f"sagas: {exc}", file=sys.stderr)
        return exc.code


def exit_main() -> NoReturn:
    raise SystemExit(main())
