from __future__ import annotations

from django.urls import path

from insurer_portal import apis

urlpatterns = [
    path("consent-artifacts", apis.ConsentArtifactApi.as_view(), name="api-consent-artifacts"),
    path("underwriting-requests", apis.UnderwritingRequestListApi.as_view(), name="api-requests"),
    # Before the detail path, which would take "batch" for a request id.
    path("underwriting-requests/batch", apis.UnderwritingRequestBatchApi.as_view(), name="api-requests-batch"),
    path(
        "underwriting-requests/<str:request_id>", apis.UnderwritingRequestDetailApi.as_view(), name="api-request-detail"
    ),
]
