from __future__ import annotations


class DomainError(Exception):
    """The one exception type the data domain's services raise; ``code`` is machine-readable.

    Messages never contain resident IDs, names or clinical values.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"DomainError(code={self.code!r}, message={self.message!r})"

    def __reduce__(self) -> tuple[type[DomainError], tuple[str, str]]:
        # Picklable, so a failing task's error survives Celery's result handling intact.
        return (type(self), (self.code, self.message))
