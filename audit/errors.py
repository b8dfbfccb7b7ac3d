"""The application's one error hierarchy: what a service raises when it refuses an action.

Every app's error type derives from :class:`AppError` (``DomainError``, ``UnderwritingError``,
``InsurerError``, ``ApprovalError``, ``EnrolmentError``), which lives here, in the bottom app every other
one already depends on. An error carries a machine-readable ``code``, a ``message`` and, for input that
was refused, ``fields``: the input field paths (``consent.reference``) with their messages. Messages
never contain a resident ID, name, diagnosis or score.

They reach people in exactly two places: the REST API's exception handler maps them to HTTP
(``insurer_portal.api_errors``), and :func:`add_to_form` puts them on the form of a portal or admin page.
Messages are English in the API; a message marked with ``gettext_noop`` where it is raised is translated
when it is shown on a form.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.utils.translation import gettext


class ErrorJSON(TypedDict):
    code: str
    message: str
    fields: dict[str, list[str]]


class AppError(Exception):
    """An action a service refuses; ``code`` is machine-readable, ``message`` safe to show."""

    def __init__(self, code: str, message: str, *, fields: Mapping[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields: dict[str, list[str]] = {name: list(messages) for name, messages in (fields or {}).items()}

    def as_dict(self) -> ErrorJSON:
        """The API's shape of an error (``{"error": ...}`` around it for a whole response)."""
        return {"code": self.code, "message": self.message, "fields": self.fields}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"

    def __reduce__(self) -> tuple[object, ...]:
        # Picklable with its fields, so a failing task's error survives Celery's result handling intact.
        return (_rebuild, (type(self), self.code, self.message, self.fields))


def _rebuild(cls: type[AppError], code: str, message: str, fields: dict[str, list[str]]) -> AppError:
    return cls(code, message, fields=fields)


def validation_error(
    error: AppError, *, fields: Mapping[str, str] | None = None, known: Mapping[str, object] | None = None
) -> ValidationError:
    """``error`` as a form's ValidationError: each of its fields on the form field that ``fields`` names for
    it (the same name when not renamed), provided ``known`` (the form's fields) has it; everything else,
    and an error without fields, on the form as a whole. Without ``known`` (in a field's own ``clean_*``
    method), all its messages as that field's error."""
    if known is None:
        messages = [message for field_messages in error.fields.values() for message in field_messages]
        return ValidationError([gettext(message) for message in messages or [error.message]], code=error.code)
    renamed = fields or {}
    by_field: dict[str, list[str]] = {}
    for path, messages in error.fields.items():
        name = renamed.get(path, path)
        target = name if name in known else NON_FIELD_ERRORS
        by_field.setdefault(target, []).extend(gettext(message) for message in messages)
    if not by_field:
        return ValidationError(gettext(error.message), code=error.code)
    return ValidationError(
        {
            name: [ValidationError(message, code=error.code) for message in messages]
            for name, messages in by_field.items()
        }
    )


def add_to_form(form: forms.BaseForm, error: AppError, *, fields: Mapping[str, str] | None = None) -> None:
    """Show a service's refusal on the form whose input it refused (see :func:`validation_error`)."""
    form.add_error(None, validation_error(error, fields=fields, known=form.fields))
