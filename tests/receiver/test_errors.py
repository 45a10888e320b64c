"""The one error-to-HTTP table, looked up by class hierarchy, most specific class first."""

from __future__ import annotations

import pytest
from starlette.exceptions import HTTPException

from afterimage import errors
from receiver.errors import ApiError, code_of, status_of


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (errors.NotJsonError("p", "(body)", "x"), 400),
        (errors.AdapterError("p", "id", "x"), 422),
        (errors.CallbackAuthError("x"), 401),
        (errors.UnknownProviderError("x"), 404),
        (errors.LedgerUnavailableError("x"), 503),
        (errors.ProviderRefusedInputError("p", "bad field", status=422), 422),
        (errors.PermanentProviderError("p", "bad key", status=401), 502),
        (errors.PermanentProviderError("p", "no credits", status=402), 502),
        (errors.TransientProviderError("p", "slow down", status=429), 502),
        (errors.TransientProviderError("p", "down", status=503), 502),
        (errors.TaskGoneError("p", "gone", status=404), 502),
        (errors.ConfigError("x"), 500),
        (errors.StorageError("x"), 503),
        (ApiError(409, "not_replayable", "x"), 409),
        (HTTPException(405), 405),
        (RuntimeError("x"), 500),
    ],
)
def test_each_error_has_its_status(exc: Exception, status: int) -> None:
    assert status_of(exc) == status


def test_an_unlisted_subclass_answers_as_its_nearest_listed_ancestor() -> None:
    class OddPayload(errors.NotJsonError):
        code = "odd"

    class OddProvider(errors.TransientProviderError):
        pass

    assert status_of(OddPayload("p", "(body)", "x")) == 400  # NotJsonError, not AdapterError
    assert status_of(OddProvider("p", "x")) == 502
    assert code_of(OddPayload("p", "(body)", "x")) == "odd"


def test_codes_come_from_the_exception() -> None:
    assert code_of(errors.NotJsonError("p", "(body)", "x")) == "not_json"
    assert code_of(HTTPException(404)) == "not_found"
    assert code_of(KeyError("x")) == "internal_error"
