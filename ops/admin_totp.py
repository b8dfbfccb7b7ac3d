"""Staff authenticators (django-otp's TOTP devices) in the bureau's admin, labelled in the admin's languages.

django-otp's own admin names its columns, fields and sections in English only. This subclass keeps its
behaviour (and its configuration and QR code pages) and takes every label from the message catalogue.
Importing django-otp's admin registers it; this module then registers the subclass in its place.
"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.contrib import admin
from django.db.models import Field
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_totp.admin import TOTPDeviceAdmin
from django_otp.plugins.otp_totp.models import TOTPDevice

FIELD_LABELS = {
    "user": _("staff member"),
    "name": _("name"),
    "confirmed": _("confirmed"),
    "key": _("secret key (hex)"),
    "step": _("time step (seconds)"),
    "t0": _("start of counting (Unix time)"),
    "digits": _("digits"),
    "tolerance": _("tolerance (time steps)"),
    "drift": _("clock drift (time steps)"),
    "throttling_failure_timestamp": _("last failed code"),
    "throttling_failure_count": _("failed codes in a row"),
}
SECTIONS = {
    "Identity": _("Authenticator"),
    "Timestamps": _("Use"),
    "Configuration": _("Configuration"),
    "State": _("State"),
    "Throttling": _("Throttling"),
}


class BureauTOTPDeviceAdmin(TOTPDeviceAdmin):  # type: ignore[misc]  # django-otp ships no types
    list_display = ["device_user", "device_name", "created", "last_used", "is_confirmed"]
    list_filter = [("confirmed", admin.BooleanFieldListFilter)]
    readonly_fields = ["created", "last_used", "qrcode_link"]

    @admin.display(description=_("staff member"), ordering="user__username")
    def device_user(self, device: TOTPDevice) -> str:
        return str(device.user)

    @admin.display(description=_("name"), ordering="name")
    def device_name(self, device: TOTPDevice) -> str:
        return str(device.name)

    @admin.display(description=_("created"), ordering="created_at")
    def created(self, device: TOTPDevice) -> Any:
        return device.created_at

    @admin.display(description=_("last used"), ordering="last_used_at")
    def last_used(self, device: TOTPDevice) -> Any:
        return device.last_used_at

    @admin.display(description=_("confirmed"), boolean=True, ordering="confirmed")
    def is_confirmed(self, device: TOTPDevice) -> bool:
        return bool(device.confirmed)

    @admin.display(description=_("QR code"))
    def qrcode_link(self, device: TOTPDevice) -> Any:
        return super().qrcode_link(device)

    def get_fieldsets(self, request: HttpRequest, obj: TOTPDevice | None = None) -> Any:
        renamed = {"created_at": "created", "last_used_at": "last_used"}
        return [
            (
                SECTIONS.get(title, title) if title else None,
                {**options, "fields": [renamed.get(name, name) for name in options["fields"]]},
            )
            for title, options in super().get_fieldsets(request, obj)
        ]

    def formfield_for_dbfield(self, db_field: Field[Any, Any], request: HttpRequest, **kwargs: Any) -> Any:
        formfield = super().formfield_for_dbfield(db_field, request, **kwargs)
        if formfield is not None and db_field.name in FIELD_LABELS:
            formfield.label = FIELD_LABELS[db_field.name]
            formfield.help_text = ""  # django-otp's help texts are English only; the labels say enough
        return formfield


# django-otp names its app and model in English only ("Otp_Totp", "TOTP device"): the admin's index, titles
# and breadcrumbs read these names. Only names: the model's migration state keeps its declared options.
apps.get_app_config("otp_totp").verbose_name = _("Two-factor authentication")
TOTPDevice._meta.verbose_name = _("staff authenticator")
TOTPDevice._meta.verbose_name_plural = _("staff authenticators")

if admin.site.is_registered(TOTPDevice):
    admin.site.unregister(TOTPDevice)
admin.site.register(TOTPDevice, BureauTOTPDeviceAdmin)
