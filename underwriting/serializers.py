"""The one public shape of a request, used by the REST API and by webhook payloads alike.

It carries the tier, its label and decision, never a score, feature, diagnosis, name or full ID.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from underwriting.models import RejectReason, RequestStatus, UnderwritingRequest


class ApplicantOutputSerializer(serializers.Serializer[Any]):
    resident_id_masked = serializers.CharField(help_text="e.g. 370214********123X")


class ManualRefSerializer(serializers.Serializer[Any]):
    slug = serializers.CharField()
    version = serializers.IntegerField(allow_null=True)


class ResultSerializer(serializers.Serializer[Any]):
    tier = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # a field named like Field.label
    decision = serializers.ChoiceField(choices=["accept", "rate", "postpone", "refer", "decline"])
    table_rating = serializers.CharField(allow_null=True)


class RequestOutputSerializer(serializers.Serializer[UnderwritingRequest]):
    id = serializers.UUIDField()
    reference = serializers.CharField()
    status = serializers.ChoiceField(choices=RequestStatus.choices)
    reason = serializers.ChoiceField(choices=RejectReason.choices, allow_null=True)
    applicant = serializers.SerializerMethodField()
    manual = serializers.SerializerMethodField()
    result = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    completed_at = serializers.DateTimeField(allow_null=True)

    def to_representation(self, instance: UnderwritingRequest) -> dict[str, Any]:
        data = super().to_representation(instance)
        data["reason"] = instance.reason or None
        return data

    @extend_schema_field(ApplicantOutputSerializer)
    def get_applicant(self, request: UnderwritingRequest) -> dict[str, str]:
        return {"resident_id_masked": request.resident_id_masked}

    @extend_schema_field(ManualRefSerializer)
    def get_manual(self, request: UnderwritingRequest) -> dict[str, Any]:
        if "manual_version" in vars(request):  # read by underwriting.selectors.request_for_api
            return {"slug": request.manual_slug, "version": vars(request)["manual_version"]}
        return {"slug": request.manual_slug, "version": request.manual.version if request.manual else None}

    @extend_schema_field(ResultSerializer(allow_null=True))
    def get_result(self, request: UnderwritingRequest) -> dict[str, Any] | None:
        if request.status != RequestStatus.COMPLETED:
            return None
        return {
            "tier": request.tier_code,
            "label": request.tier_label,
            "decision": request.decision,
            "table_rating": request.table_rating or None,
        }


def request_public_view(request: UnderwritingRequest) -> dict[str, Any]:
    return dict(RequestOutputSerializer(request).data)
