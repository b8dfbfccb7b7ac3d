from __future__ import annotations

from audit.errors import AppError


class DomainError(AppError):
    """The error the data domain's services raise (:class:`audit.errors.AppError`).

    Messages never contain resident IDs, names or clinical values.
    """
