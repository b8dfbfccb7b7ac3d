"""Explaining one decision to its subject (PIPL Art. 24), behind a four-eyes approval.

A privacy officer asks to explain one completed request; another approves (``audit.approvals``); the
approved request is then carried out once, in the domain: the subject's features as of the request
date are recomputed in plaintext and evaluated under the exact manual version the request used
(``underwriting.reference``). Nothing is stored; the audit log records who asked, who approved, who
saw it and which request, naming the subject by the first digits of its pseudonymous key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, TypedDict

from django.db import transaction
from django.utils.translation import gettext as _

from audit.approvals import Staff, approval_claim, approval_request
from audit.models import Approval
from audit.services import audit_record, subject_ref
from datadomain import selectors as domain_selectors
from datadomain.errors import DomainError
from underwriting import selectors
from underwriting.errors import UnderwritingError
from underwriting.models import RequestStatus, UnderwritingRequest
from underwriting.reference import evaluate


class CountedFeature(TypedDict):
    value: int
    points: int


@dataclass(frozen=True)
class Explanation:
    request_id: str
    manual_slug: str
    manual_version: int
    as_of: date
    features: dict[str, CountedFeature]  # only the features that counted (non-zero points)
    score: int
    tier_code: str
    tier_label: str
    decision: str
    recorded_tier: str  # what the request delivered; differs if the records were corrected since

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Explanation:
        """Inverse of :meth:`as_dict` (the explanation comes back from the data domain's queue)."""
        return cls(
            request_id=data["request"], manual_slug=data["manual"]["slug"], manual_version=data["manual"]["version"],
            as_of=date.fromisoformat(data["as_of"]), features=data["features"], score=data["score"],
            tier_code=data["tier"]["code"], tier_label=data["tier"]["label"], decision=data["tier"]["decision"],
            recorded_tier=data["recorded_tier"],
        )  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        return {
            "request": self.request_id,
            "manual": {"slug": self.manual_slug, "version": self.manual_version},
            "as_of": self.as_of.isoformat(),
            "features": self.features,
            "score": self.score,
            "tier": {"code": self.tier_code, "label": self.tier_label, "decision": self.decision},
            "recorded_tier": self.recorded_tier,
        }


def _explainable(request_id: str) -> UnderwritingRequest:
    request = UnderwritingRequest.objects.select_related("manual").filter(pk=request_id).first()
    if request is None or request.status != RequestStatus.COMPLETED or request.manual is None:
        raise UnderwritingError("not_explainable", _("Only a completed request has a decision to explain."))
    return request


def decision_explain(*, request: UnderwritingRequest) -> Explanation:
    """The features that counted for one decision; no audit (callers are audited, see below)."""
    assert request.manual is not None  # _explainable checked it
    document = selectors.manual_document(request.manual)
    try:
        features = domain_selectors.subject_features(
            subject_key=request.subject_key, feature_names=document.feature_names, as_of=request.as_of
        )
    except DomainError as exc:  # e.g. the subject was erased meanwhile
        raise UnderwritingError(exc.code, _("The data domain no longer holds this subject's records.")) from exc
    result = evaluate(document, features)
    counted: dict[str, CountedFeature] = {
        name: {"value": features[name], "points": points} for name, points in result.contributions.items() if points
    }
    return Explanation(
        request_id=str(request.pk),
        manual_slug=request.manual.slug,
        manual_version=request.manual.version,
        as_of=request.as_of,
        features=counted,
        score=result.score,
        tier_code=result.tier.code,
        tier_label=result.tier.label,
        decision=result.tier.decision,
        recorded_tier=request.tier_code,
    )


def explanation_request(*, request_id: str, requested_by: Staff, reason: str = "") -> Approval:
    """Ask to explain one completed request; another privacy officer must approve."""
    request = _explainable(request_id)
    return approval_request(
        kind=Approval.Kind.SUBJECT_EXPLANATION, requested_by=requested_by, target=str(request.pk), reason=reason
    )


def explanation_execute(*, approval_id: int, executed_by: Staff) -> Explanation:
    """Carry out an approved explanation once (``ApprovalError`` otherwise) and return it for display."""
    with transaction.atomic():
        approval = approval_claim(
            approval_id=approval_id, kind=Approval.Kind.SUBJECT_EXPLANATION, executed_by=executed_by
        )
        request = _explainable(approval.target)
        explanation = decision_explain(request=request)
        assert approval.decided_by is not None
        audit_record(
            action="subject.explain",
            actor=executed_by.get_username(),
            target_type="subject",
            target_id=subject_ref(request.subject_key),
            detail={
                "request": str(request.pk),
                "manual": explanation.manual_slug,
                "version": explanation.manual_version,
                "approval": approval.pk,
                "requested_by": approval.requested_by.get_username(),
                "approved_by": approval.decided_by.get_username(),
            },
        )
    return explanation
