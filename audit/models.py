"""The append-only audit log.

Writers only INSERT (one row, in their own transaction, no hash): the hot path never waits for a chain
head. The chainer (``audit.services.audit_chain_pending``) later sets ``chain_seq``, ``prev_hash`` and
``hash`` once, from NULL. Nothing else may change or delete a row: the ORM refuses here, and on
PostgreSQL the database refuses too, whoever connects:

* ``DELETE`` and ``TRUNCATE``: the pgtrigger triggers below (TRUNCATE fires no row trigger, so it has a
  statement-level one of its own). No zone's role holds either privilege (ops/db_zones.py); the triggers
  stop the tables' owner too, who would have to drop or disable them first, on purpose.
* ``INSERT`` and ``UPDATE``: ``audit_entry_append_only()`` (migrations 0002 and 0004). A new row comes
  unchained and the database stamps its time; an update may only set the three chain fields, once. This
  guard is a plain function, not a pgtrigger trigger: every pgtrigger function first asks whether the
  session lists it in the ``pgtrigger.ignore`` setting, which any role may ``SET``, and every zone may
  insert (the domain also sets chain fields), so that door must stay shut to them.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pgtrigger
from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class AppendOnlyError(Exception):
    """An attempt to change or delete an audit entry."""


CHAIN_FIELDS = frozenset({"chain_seq", "prev_hash", "hash"})


class AuditEntryQuerySet(models.QuerySet["AuditEntry"]):
    def update(self, **kwargs: Any) -> int:
        raise AppendOnlyError("Audit entries are append-only: they cannot be updated.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("Audit entries are append-only: they cannot be deleted.")

    def chain_set(self, **kwargs: Any) -> int:
        """The chainer's one write: chain fields, only on rows whose chain fields are still NULL."""
        if set(kwargs) - CHAIN_FIELDS:
            raise AppendOnlyError("Only the chain fields of an unchained entry may be set.")
        return models.QuerySet.update(self.filter(chain_seq__isnull=True, hash__isnull=True), **kwargs)


class AuditEntry(models.Model):
    at = models.DateTimeField(_("at"), default=timezone.now, db_index=True)
    action = models.CharField(_("action"), max_length=64, db_index=True)
    actor = models.CharField(_("actor"), max_length=200, blank=True, db_index=True)
    target_type = models.CharField(_("target type"), max_length=64, blank=True)
    target_id = models.CharField(_("target id"), max_length=200, blank=True, db_index=True)
    # Never a resident ID, name, diagnosis or score: subject keys truncated to 12 hex digits, ids.
    detail = models.JSONField(_("detail"), default=dict, blank=True)
    chain_seq = models.BigIntegerField(_("chain position"), null=True, blank=True, unique=True)
    prev_hash = models.CharField(_("previous hash"), max_length=64, null=True, blank=True)
    hash = models.CharField(_("hash"), max_length=64, null=True, blank=True)

    objects: ClassVar[AuditEntryQuerySet] = AuditEntryQuerySet.as_manager()  # type: ignore[assignment]

    class Meta:
        ordering = ["-id"]
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit entries")
        indexes = [models.Index(fields=["id"], condition=Q(chain_seq__isnull=True), name="audit_entry_pending")]
        triggers = [
            pgtrigger.Protect(name="audit_entry_no_delete", operation=pgtrigger.Delete),
            # pgtrigger.Protect raises from a statement-level trigger only when a transition table holds
            # rows, and TRUNCATE has none: a plain trigger refuses every TRUNCATE, empty table or not.
            pgtrigger.Trigger(
                name="audit_entry_no_truncate",
                level=pgtrigger.Statement,
                when=pgtrigger.Before,
                operation=pgtrigger.Truncate,
                func="RAISE EXCEPTION 'audit_auditentry is append-only: TRUNCATE refused';",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.action}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError("Audit entries are append-only: they cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("Audit entries are append-only: they cannot be deleted.")


class Approval(models.Model):
    """A four-eyes request: one staff member asks for a governed action, another approves it, and the
    approval is then carried out once. ``target`` names what the action applies to (an underwriting
    request id, never a resident ID or name); the services in ``audit.approvals`` keep the rules."""

    class Kind(models.TextChoices):
        KEY_ROTATION = "key_rotation", _("custodian key rotation")
        SUBJECT_EXPLANATION = "subject_explanation", _("explanation of a decision")

    class Status(models.TextChoices):
        PENDING = "pending", _("awaiting approval")
        APPROVED = "approved", _("approved")
        REFUSED = "refused", _("refused")
        EXECUTED = "executed", _("carried out")

    kind = models.CharField(_("kind"), max_length=32, choices=Kind.choices)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.PENDING)
    target = models.CharField(_("target"), max_length=64, blank=True)
    reason = models.CharField(
        _("reason"), max_length=300, blank=True, help_text=_("Why it is needed. Never a resident ID or a name.")
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name=_("requested by")
    )
    requested_at = models.DateTimeField(_("requested"), default=timezone.now)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        null=True,
        blank=True,
        verbose_name=_("approved or refused by"),
    )
    decided_at = models.DateTimeField(_("decided"), null=True, blank=True)
    executed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        null=True,
        blank=True,
        verbose_name=_("carried out by"),
    )
    executed_at = models.DateTimeField(_("carried out"), null=True, blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]
        verbose_name = _("four-eyes request")
        verbose_name_plural = _("four-eyes requests")
        constraints = [
            models.CheckConstraint(
                condition=Q(decided_by__isnull=True) | ~Q(decided_by=models.F("requested_by")),
                name="audit_approval_four_eyes",
            ),
            models.CheckConstraint(
                condition=~Q(status__in=["approved", "executed"]) | Q(decided_by__isnull=False),
                name="audit_approval_approved_has_approver",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.get_kind_display()}"
