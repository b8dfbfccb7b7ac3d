"""An admin whose rows staff may read but never add, change or delete: records kept for accounting
(deliveries, confirmations, identities), changed only by the services that own them."""

from __future__ import annotations

from django.http import HttpRequest


class ViewOnlyAdminMixin:
    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
