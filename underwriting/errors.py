from __future__ import annotations


class UnderwritingError(Exception):
    """A request the underwriting services refuse; ``code`` is machine-readable and safe to show.

    ``fields`` maps input field paths to messages for 400 responses. Messages never contain a
    resident ID, name, diagnosis or score.
    """

    def __init__(self, code: str, message: str, *, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields or {}

    def __reduce__(self) -> tuple[object, ...]:
        # Picklable, so a failing task's error survives Celery's result handling intact.
        return (_rebuild, (type(self), self.code, self.message, self.fields))


def _rebuild(cls: type[UnderwritingError], code: str, message: str, fields: dict[str, list[str]]) -> UnderwritingError:
    return cls(code, message, fields=fields)
