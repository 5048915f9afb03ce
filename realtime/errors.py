"""Structured errors shared by acks and HTTP responses."""
from __future__ import annotations

from typing import Any


class AppError(Exception):
    """A refusal with a stable code, a human message and an HTTP status."""

    status = 400

    def __init__(self, code: str, message: str, status: int | None = None,
                 retry_after: float | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after
        if status is not None:
            self.status = status

    def to_dict(self) -> dict[str, Any]:
        """The `error` object of an ack or an HTTP body."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.retry_after is not None:
            error["retry_after"] = self.retry_after
        return error


class ValidationError(AppError):
    """A payload that does not match its schema."""


class AuthError(AppError):
    """A missing, invalid or expired credential; `reason` says exactly what was wrong."""

    status = 401

    def __init__(self, code: str, message: str, reason: str | None = None):
        super().__init__(code, message)
        self.reason = reason

    def to_dict(self) -> dict[str, Any]:
        """The error object, with the precise reason when there is one."""
        error = super().to_dict()
        if self.reason:
            error["reason"] = self.reason
        return error


class UnknownOutcome(AppError):
    """A write timed out after it may have reached the store: it may or may not have happened."""

    def to_dict(self) -> dict[str, Any]:
        """The error object, saying the outcome is unknown."""
        return {**super().to_dict(), "outcome": "unknown"}


def unavailable(retry_after: float = 1.0, outcome_unknown: bool = False) -> AppError:
    """The state store is down: retry later, nothing was changed (or, unknown outcome: maybe it was)."""
    if outcome_unknown:
        return UnknownOutcome("unavailable", "the message store did not answer in time; the change may "
                              "have been made: retry it unchanged (same client_id)", 503, retry_after)
    return AppError("unavailable", "the message store is unavailable, retry later", 503, retry_after)
