from __future__ import annotations

from django.urls import path

from insurer_portal import apis

urlpatterns = [
    path("underwriting-requests", apis.UnderwritingRequestListApi.as_view(), name="api-requests"),
    path(
        "underwriting-requests/<str:request_id>", apis.UnderwritingRequestDetailApi.as_view(), name="api-request-detail"
    ),
]
