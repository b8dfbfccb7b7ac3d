"""Webhook endpoints and deliveries in the admin: thin front ends over ``underwriting.services.webhooks``.

A URL is checked like one typed in the portal (public hosts only, or a receiver the bureau allows). A
signing secret is shown once, on the page that answers the save that created it or the rotation that
replaced it; that page is never cached, and the secret is stored only encrypted.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from audit.errors import validation_error
from underwriting.errors import UnderwritingError
from underwriting.models import WebhookDelivery, WebhookEndpoint
from underwriting.services.webhooks import (
    webhook_endpoint_create,
    webhook_endpoint_update,
    webhook_replay,
    webhook_secret_rotate,
    webhook_url_check,
)

# Carries a new secret from save_model to response_add within one request; never stored anywhere.
_HANDOVER = "_underwriting_webhook_handover"


class WebhookEndpointForm(forms.ModelForm[WebhookEndpoint]):
    url = forms.URLField(label=_("URL"), max_length=500, assume_scheme="https")

    class Meta:
        model = WebhookEndpoint
        fields = ["insurer", "url", "is_active"]

    def clean_url(self) -> str:
        url = str(self.cleaned_data["url"])
        if self.instance.pk is None or "url" in self.changed_data:  # pausing needs no look-up
            try:
                webhook_url_check(url=url)
            except UnderwritingError as exc:
                raise validation_error(exc) from None
        return url


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin[WebhookEndpoint]):
    form = WebhookEndpointForm
    list_display = ["url", "insurer", "is_active", "secret_rotated_at", "created_at"]
    list_filter = ["is_active", "insurer"]

    def get_fields(self, request: HttpRequest, obj: WebhookEndpoint | None = None) -> list[str]:  # type: ignore[override]
        if obj is None:
            return ["insurer", "url", "is_active"]
        return ["insurer", "url", "is_active", "signing_secret", "created_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: WebhookEndpoint | None = None) -> list[str]:
        # An endpoint never moves to another insurer: its secret and deliveries are that insurer's.
        return ["signing_secret", "created_at"] + (["insurer"] if obj is not None else [])

    @admin.display(description=_("signing secret"))
    def signing_secret(self, obj: WebhookEndpoint) -> SafeString:
        issued = obj.secret_rotated_at.isoformat(timespec="seconds") if obj.secret_rotated_at else "-"
        return format_html(
            '{} <a class="button" href="{}">{}</a>',
            _("Stored encrypted; shown only when issued (last issued %(at)s).") % {"at": issued},
            reverse("admin:underwriting_webhookendpoint_rotate", args=[obj.pk]),
            _("Issue a new secret"),
        )

    def get_urls(self) -> list[URLPattern]:
        rotate = path(
            "<int:endpoint_id>/rotate-secret/",
            self.admin_site.admin_view(self.rotate_secret_view),
            name="underwriting_webhookendpoint_rotate",
        )
        return [rotate, *super().get_urls()]

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool) -> None:
        actor = request.user.get_username()
        try:
            if change:
                url = obj.url if "url" in form.changed_data else None
                webhook_endpoint_update(endpoint_id=obj.pk, url=url, is_active=obj.is_active, actor=actor)
                return
            endpoint, secret = webhook_endpoint_create(
                insurer_id=obj.insurer_id, url=obj.url, is_active=obj.is_active, actor=actor
            )
        except UnderwritingError as exc:  # the name resolved elsewhere since the form was checked
            raise ValidationError(exc.message) from None
        obj.pk, obj.created_at, obj.secret_rotated_at = endpoint.pk, endpoint.created_at, endpoint.secret_rotated_at
        setattr(request, _HANDOVER, secret)

    def response_add(
        self, request: HttpRequest, obj: WebhookEndpoint, post_url_continue: str | None = None
    ) -> HttpResponse:
        secret = getattr(request, _HANDOVER, None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        return self._secret_page(request, obj, secret, created=True)

    def rotate_secret_view(self, request: HttpRequest, endpoint_id: int) -> HttpResponse:
        """GET asks for confirmation; POST issues the new secret and shows it, once."""
        endpoint = get_object_or_404(WebhookEndpoint, pk=endpoint_id)
        if not self.has_change_permission(request, endpoint):
            raise PermissionDenied
        if request.method == "POST":
            secret = webhook_secret_rotate(endpoint_id=endpoint.pk, actor=request.user.get_username())
            return self._secret_page(request, endpoint, secret, created=False)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "endpoint": endpoint,
            "title": _("Issue a new signing secret"),
        }
        return TemplateResponse(request, "admin/underwriting/webhookendpoint/rotate_secret.html", context)

    def _secret_page(
        self, request: HttpRequest, endpoint: WebhookEndpoint, secret: str, *, created: bool
    ) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "endpoint": endpoint,
            "secret": secret,
            "created": created,
            "title": _("Signing secret"),
        }
        response = TemplateResponse(request, "admin/underwriting/webhookendpoint/secret_once.html", context)
        add_never_cache_headers(response)
        return response


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin[WebhookDelivery]):
    list_display = [
        "event_type", "endpoint", "status", "attempts", "last_status_code", "last_error", "created_at",
        "delivered_at",
    ]  # fmt: skip
    list_filter = ["status", "event_type"]
    actions = ["replay_selected"]
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: WebhookDelivery | None = None) -> bool:
        return False  # a delivery changes only by being sent (again): no Save on a page of read-only fields

    def has_delete_permission(self, request: HttpRequest, obj: WebhookDelivery | None = None) -> bool:
        return False  # the record of what an insurer was sent

    @admin.action(description=_("Send selected deliveries again"))
    def replay_selected(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        for delivery in queryset:
            webhook_replay(delivery_id=delivery.pk)
        self.message_user(request, _("%(count)d deliveries queued again.") % {"count": queryset.count()})
