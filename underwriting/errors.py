from __future__ import annotations

from audit.errors import AppError


class UnderwritingError(AppError):
    """A request the underwriting services refuse (:class:`audit.errors.AppError`); ``fields`` maps input
    field paths to messages for 400 responses and forms. Messages never contain a resident ID, name,
    diagnosis or score.
    """
