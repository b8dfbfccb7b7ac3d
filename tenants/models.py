"""The tenants: insurers, the people who sign in for them and their API keys.

A bottom layer for tables (DESIGN.md, STYLE.md "Layers hold for tables too"): ``underwriting`` and
``insurer_portal`` point their foreign keys down here, so no migration of this app depends on a higher app.
The tables keep the names they had when these models lived in ``insurer_portal`` (``Meta.db_table``), so
the move changed no table and no row.
"""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

slug_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9-]{1,62}$", _("Use 2-63 lower-case letters, digits and hyphens, starting with a letter or digit.")
)


class Insurer(models.Model):
    """An insurance company that may submit underwriting requests."""

    slug = models.SlugField(_("slug"), max_length=63, unique=True, validators=[slug_validator])
    name = models.CharField(_("name"), max_length=200)
    is_active = models.BooleanField(_("active"), default=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        db_table = "insurer_portal_insurer"
        verbose_name = _("insurer")
        verbose_name_plural = _("insurers")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ApiKey(models.Model):
    """An insurer's API key. Only a SHA-256 of the secret is stored; the key is shown once at creation.

    Keys look like ``uwk_<prefix>_<secret>``; the prefix finds the row, the hash proves the secret.
    """

    insurer = models.ForeignKey(Insurer, on_delete=models.CASCADE, related_name="api_keys", verbose_name=_("insurer"))
    name = models.CharField(_("name"), max_length=100, blank=True, default="")
    prefix = models.CharField(_("prefix"), max_length=16, unique=True)
    key_sha256 = models.CharField(_("key SHA-256"), max_length=64)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    revoked_at = models.DateTimeField(_("revoked"), null=True, blank=True)

    class Meta:
        db_table = "insurer_portal_apikey"
        verbose_name = _("API key")
        verbose_name_plural = _("API keys")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"uwk_{self.prefix}_…"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and self.insurer.is_active


class InsurerUser(models.Model):
    """A person who signs in to the insurer portal on behalf of one insurer."""

    class Role(models.TextChoices):
        UNDERWRITER = "underwriter", _("underwriter")
        ADMIN = "admin", _("insurer admin")

    user = models.OneToOneField(
        "auth.User", on_delete=models.CASCADE, related_name="insurer_membership", verbose_name=_("user")
    )
    insurer = models.ForeignKey(Insurer, on_delete=models.CASCADE, related_name="members", verbose_name=_("insurer"))
    role = models.CharField(_("role"), max_length=16, choices=Role.choices, default=Role.UNDERWRITER)

    class Meta:
        db_table = "insurer_portal_insureruser"
        verbose_name = _("insurer user")
        verbose_name_plural = _("insurer users")

    def __str__(self) -> str:
        return f"{self.user} @ {self.insurer}"
