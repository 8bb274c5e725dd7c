"""Which Pulsar send errors the bridge retries and which it dead-letters (bridges/pulsar_client)."""

from __future__ import annotations

import _pulsar
import pulsar
import pulsar.asyncio as apulsar
import pytest

from bridges.pulsar_client import is_permanent, result_name

R = _pulsar.Result


@pytest.mark.parametrize("exc", [
    pulsar.PulsarException(R.TopicTerminated),  # a send's callback result (PulsarLink.send_batch)
    apulsar.PulsarException(R.AuthorizationError),  # creating a producer with pulsar.asyncio
    pulsar.exceptions.TopicNotFound("gone"),  # the synchronous client's own classes
    TypeError("a property that is not a string"),  # the message cannot even be built
], ids=["terminated", "unauthorized", "not-found", "not-pulsar"])
def test_errors_no_retry_cures_are_permanent(exc: BaseException) -> None:
    assert is_permanent(exc)


@pytest.mark.parametrize("exc", [
    pulsar.PulsarException(R.Timeout), pulsar.PulsarException(R.ConnectError),
    apulsar.PulsarException(R.ServiceUnitNotReady), pulsar.PulsarException(R.ProducerQueueIsFull),
    pulsar.PulsarException(R.AlreadyClosed), ConnectionRefusedError(), TimeoutError(),
], ids=["timeout", "connect", "not-ready", "queue-full", "closed", "refused", "timeout-error"])
def test_passing_errors_are_retried(exc: BaseException) -> None:
    assert not is_permanent(exc)


def test_the_reason_names_the_result() -> None:
    assert result_name(pulsar.PulsarException(R.TopicTerminated)) == "TopicTerminated"
    assert result_name(apulsar.PulsarException(R.AuthorizationError)) == "AuthorizationError"
    assert result_name(TypeError()) == "TypeError"
