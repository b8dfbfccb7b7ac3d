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
    """The custodian's permission to answer exactly one tagged comparison query for one request.

    The data domain issues it when it extracts the request's features (``datadomain.services``); it pins
    the request, the key, the number of comparisons (the manual's thresholds), the slot width, the MAC key
    the query must carry (securecompute.binding) and an expiry. The custodian spends it in a committed
    transaction before it decrypts anything; the same query presented again gets the same answer, any
    other query gets random signs. Only the domain (insert) and the custodian (read, update) reach this
    table. The subject is pinned through the MAC alone (the tag material comes from that subject's own
    vector): the row names no subject in any form, so the custodian cannot link two requests for one person.
    """

    class Status(models.TextChoices):
        ISSUED = "issued", _("issued")
        SPENT = "spent", _("spent")
        ANSWERED = "answered", _("answered")

    request_ref = models.CharField(_("request reference"), max_length=64, unique=True)
    key_id = models.CharField(_("key id"), max_length=64)
    comparisons = models.PositiveSmallIntegerField(_("comparisons"))
    slot_bits = models.PositiveSmallIntegerField(_("slot bits"))
    mac_key = models.TextField(_("MAC key (hex)"), editable=False)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.ISSUED)
    expires_at = models.DateTimeField(_("expires"))
    # The query the grant was spent on and its answer (signs only): a redelivered custodian task gets the
    # same answer back; a different query gets random signs and a misuse flag.
    query_sha256 = models.CharField(_("query SHA-256"), max_length=64, blank=True, default="")
    answer = models.JSONField(_("answer"), null=True, blank=True)
    outcome = models.CharField(_("outcome"), max_length=32, blank=True, default="")
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    spent_at = models.DateTimeField(_("spent"), null=True, blank=True)

    class Meta:
        verbose_name = _("comparison grant")
        verbose_name_plural = _("comparison grants")

    def __str__(self) -> str:
        return self.request_ref
