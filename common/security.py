"""Speaking to Kafka, Pulsar and PostgreSQL over TLS with credentials: the clients' own options,
built from plain values (no settings object), so that the worker, the snapshot tools and the
participant simulators build them the same way. No crypto here: `ssl` makes the contexts,
aiokafka, pulsar-client and libpq do the rest.

Secrets come inline or from a file (the Docker and Kubernetes secrets convention); a file is read
again each time a client asks (`pulsar_token_supplier`), so a rotated Pulsar token is used at the
next reconnect without a restart.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["kafka_client_options", "pulsar_client_options", "pulsar_options_from_env", "read_secret",
           "ssl_context"]


def read_secret(path: Path | str) -> str:
    """The secret a file holds (surrounding whitespace dropped); ValueError with one readable line
    when the file cannot be read or is empty."""
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not text:
        raise ValueError(f"{path} is empty")
    return text


def ssl_context(cafile: Path | str | None = None, certfile: Path | str | None = None,
                keyfile: Path | str | None = None) -> ssl.SSLContext:
    """A client context that verifies the server's certificate and host name: against `cafile`,
    or the system's trust store when None; with a client certificate when `certfile` is given."""
    ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    if certfile:
        ctx.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
    return ctx


def kafka_client_options(protocol: str, *, mechanism: str = "SCRAM-SHA-512",
                         username: str | None = None, password: str | None = None,
                         context: ssl.SSLContext | None = None) -> dict[str, Any]:
    """Keyword arguments for aiokafka's clients (producer, consumer, admin)."""
    opts: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        opts["ssl_context"] = context or ssl_context()
    if protocol.startswith("SASL_"):
        opts.update(sasl_mechanism=mechanism, sasl_plain_username=username, sasl_plain_password=password)
    return opts


def pulsar_token_supplier(token: str | None, token_file: Path | str | None) -> Callable[[], str] | str | None:
    """What `pulsar.AuthenticationToken` takes: the token, or a function reading the file."""
    if token_file:
        path = Path(token_file)
        return lambda: read_secret(path)
    return token or None


def pulsar_client_options(*, trust_certs_file: Path | str | None = None, hostname_verification: bool = True,
                          token: str | None = None, token_file: Path | str | None = None) -> dict[str, Any]:
    """Keyword arguments for `pulsar.Client` / `pulsar.asyncio.Client`. TLS itself is chosen by
    the service URL (`pulsar+ssl://`); these say whom to trust and who we are."""
    import pulsar

    opts: dict[str, Any] = {"tls_validate_hostname": hostname_verification,
                            "tls_allow_insecure_connection": False}
    if trust_certs_file:
        opts["tls_trust_certs_file_path"] = str(trust_certs_file)
    supplier = pulsar_token_supplier(token, token_file)
    if supplier is not None:
        opts["authentication"] = pulsar.AuthenticationToken(supplier)
    return opts


def pulsar_options_from_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`pulsar_client_options` from PULSAR_TLS_TRUST_CERTS_FILE, PULSAR_TLS_HOSTNAME_VERIFICATION,
    PULSAR_AUTH_TOKEN and PULSAR_AUTH_TOKEN_FILE: for the programs that speak to Pulsar without
    the worker's settings (the participant simulators, the monitor script)."""
    env = os.environ if environ is None else environ
    token_file = env.get("PULSAR_AUTH_TOKEN_FILE") or None
    if token_file:
        read_secret(token_file)  # fail now, in one line, rather than at the first connection
    return pulsar_client_options(
        trust_certs_file=env.get("PULSAR_TLS_TRUST_CERTS_FILE") or None,
        hostname_verification=env.get("PULSAR_TLS_HOSTNAME_VERIFICATION", "true").lower()
        not in ("0", "false", "no"),
        token=env.get("PULSAR_AUTH_TOKEN") or None,
        token_file=token_file,
    )
