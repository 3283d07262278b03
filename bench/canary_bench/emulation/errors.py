"""
Errors as the API server answers them: every failure is a ``v1 Status``.

Clients (Kopf, kubectl, the operator) tell failures apart by code and reason, and a 422 Invalid
by its ``details.causes``. Any layer of the emulator raises :class:`ApiError` where the failure
arises; the HTTP layer only renders it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any

from canary_bench.emulation import bodies


class ApiError(Exception):
    """A failed API call, rendered as a ``v1 Status`` with the same code and reason as the real API."""

    def __init__(self, code: int, reason: str, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = dict(details or {})

    def as_status(self) -> bodies.Body:
        status: bodies.Body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            status["details"] = self.details
        return status


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


@dataclasses.dataclass(frozen=True)
class Cause:
    """One field error of a 422 Invalid answer, as in ``details.causes`` of the real API."""

    reason: str  # FieldValueRequired, FieldValueInvalid, ...
    field: str
    message: str

    @classmethod
    def required(cls, field: str, detail: str = "") -> Cause:
        return cls("FieldValueRequired", field, "Required value" + (f": {detail}" if detail else ""))

    @classmethod
    def invalid(cls, field: str, value: Any, detail: str) -> Cause:
        return cls("FieldValueInvalid", field, f"Invalid value: {json.dumps(value)}: {detail}")

    @classmethod
    def forbidden(cls, field: str, detail: str) -> Cause:
        return cls("FieldValueForbidden", field, f"Forbidden: {detail}")

    @classmethod
    def unsupported(cls, field: str, value: Any, allowed: Iterable[Any]) -> Cause:
        supported = ", ".join(json.dumps(v) for v in allowed)
        return cls(
            "FieldValueNotSupported", field, f"Unsupported value: {json.dumps(value)}: supported values: {supported}"
        )
