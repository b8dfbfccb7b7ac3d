from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class CustodianKey(models.Model):
    """A Paillier key pair of the custodian: the public half here, the private half sealed on disk."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("active")
        RETIRING = "retiring", _("retiring")
        RETIRED = "retired", _("retired")

    key_id = models.CharField(_("key id"), max_length=64, unique=True)
    public_key_json = models.TextField(_("public key (JSON)"))
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    sealed_path = models.CharField(_("sealed private key path"), max_length=500, blank=True)

    class Meta:
        verbose_name = _("custodian key")
        verbose_name_plural = _("custodian keys")

    def __str__(self) -> str:
        return self.key_id


class ComparisonGrant(models.Model):
    """How many blinded comparisons the custodian may answer for one underwriting request."""

    request_ref = models.CharField(_("request reference"), max_length=64, unique=True)
    key_id = models.CharField(_("key id"), max_length=64)
    budget = models.IntegerField(_("budget"))
    used = models.IntegerField(_("used"), default=0)
    # The last query answered and its answer (signs only): a redelivered custodian task gets the same
    # answer back instead of spending budget again; a different query still counts against the budget.
    query_sha256 = models.CharField(_("last query SHA-256"), max_length=64, blank=True, default="")
    answer = models.JSONField(_("last answer"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("comparison grant")
        verbose_name_plural = _("comparison grants")

    def __str__(self) -> str:
        return self.request_ref
