"""Insurer admin pages: users, API keys, webhook endpoints and their delivery log, usage."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.forms import PasswordResetForm
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from audit.errors import add_to_form
from insurer_portal import selectors, services
from insurer_portal.forms import ApiKeyCreateForm, MemberCreateForm, WebhookCreateForm
from insurer_portal.services import InsurerError
from tenants.models import InsurerUser
from underwriting.errors import UnderwritingError
from underwriting.models import webhook_outcome_for_insurer
from underwriting.services.webhooks import webhook_endpoint_create, webhook_replay, webhook_secret_rotate
from underwriting.webhook_secrets import SecretUnreadableError, seal, unseal

from .access import portal_view


@portal_view(admin=True)
def members(request: HttpRequest, membership: InsurerUser) -> HttpResponse:
    form = MemberCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            created = services.portal_user_create(
                insurer=membership.insurer, username=data["username"], email=data["email"], role=data["role"],
                password=secrets.token_urlsafe(32),  # never shown: the user chooses one through the reset link
            )  # fmt: skip
        except InsurerError as exc:
            add_to_form(form, exc)
        else:
            _send_password_link(request, created.user.email)
            messages.success(request, _("User %(name)s was created and sent a link to set a password.") % {
                "name": created.user.username})  # fmt: skip
            return redirect("portal:members")
    people = selectors.members_for_insurer(insurer_id=membership.insurer_id)
    context = {"membership": membership, "form": form, "people": people, "roles": InsurerUser.Role.choices}
    return render(request, "portal/admin/members.html", context)


def _send_password_link(request: HttpRequest, email: str) -> None:
    reset = PasswordResetForm({"email": email})
    if reset.is_valid():
        reset.save(
            request=request,
            use_https=request.is_secure(),
            email_template_name="portal/auth/password_reset_email.txt",
            subject_template_name="portal/auth/password_reset_subject.txt",
        )


@require_POST
@portal_view(admin=True)
def member_toggle(request: HttpRequest, membership: InsurerUser, member_id: int) -> HttpResponse:
    member = selectors.member_for_insurer(insurer_id=membership.insurer_id, member_id=member_id)
    if member is None:
        raise Http404
    if member.pk == membership.pk:
        messages.error(request, _("You cannot deactivate yourself."))
    else:
        services.portal_user_set_active(membership=member, active=not member.user.is_active)
        messages.success(request, _("User %(name)s was updated.") % {"name": member.user.username})
    return redirect("portal:members")


NEW_KEY_SESSION = "portal-new-api-key"


@require_POST
@portal_view(admin=True)
def member_role(request: HttpRequest, membership: InsurerUser, member_id: int) -> HttpResponse:
    member = selectors.member_for_insurer(insurer_id=membership.insurer_id, member_id=member_id)
    if member is None:
        raise Http404
    role = request.POST.get("role", "")
    if member.pk == membership.pk:
        messages.error(request, _("You cannot change your own role."))
    elif role in InsurerUser.Role.values:
        services.portal_user_set_role(membership=member, role=role)
        messages.success(request, _("User %(name)s was updated.") % {"name": member.user.username})
    return redirect("portal:members")


@never_cache
@portal_view(admin=True)
def api_keys(request: HttpRequest, membership: InsurerUser) -> HttpResponse:
    """Create shows the key once: it crosses the redirect in the session and is removed when displayed."""
    form = ApiKeyCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            _key, plaintext = services.api_key_create(insurer=membership.insurer, name=form.cleaned_data["name"])
        except InsurerError:
            form.add_error(
                None,
                _(
                    "Your company already has %(count)s active keys, the most allowed. "
                    "Revoke a key you no longer use, then create the new one."
                )
                % {"count": settings.API_MAX_ACTIVE_KEYS},
            )
        else:
            request.session[NEW_KEY_SESSION] = plaintext
            return redirect("portal:api-keys")
    keys = selectors.api_keys_for_insurer(insurer_id=membership.insurer_id)
    context = {
        "membership": membership,
        "form": form,
        "keys": keys,
        "plaintext": request.session.pop(NEW_KEY_SESSION, None),
    }
    return render(request, "portal/admin/api_keys.html", context)


@require_POST
@portal_view(admin=True)
def api_key_revoke(request: HttpRequest, membership: InsurerUser, key_id: int) -> HttpResponse:
    key = selectors.api_key_for_insurer(insurer_id=membership.insurer_id, key_id=key_id)
    if key is None:
        raise Http404
    services.api_key_revoke(key=key)
    messages.success(request, _("Key %(key)s was revoked; it no longer works.") % {"key": str(key)})
    return redirect("portal:api-keys")


# A new signing secret crosses the redirect to the endpoint's page in the session, encrypted like the stored
# one, and is removed when shown: it is displayed once and never rests in clear.
WEBHOOK_HANDOVER_SESSION = "portal-webhook-handover"


def _hand_over_secret(request: HttpRequest, endpoint_id: int, secret: str) -> None:
    request.session[WEBHOOK_HANDOVER_SESSION] = {"endpoint": endpoint_id, "sealed": seal(secret)}


def _take_secret(request: HttpRequest, endpoint_id: int) -> str | None:
    handed = request.session.get(WEBHOOK_HANDOVER_SESSION)
    if not isinstance(handed, dict) or handed.get("endpoint") != endpoint_id:
        return None
    del request.session[WEBHOOK_HANDOVER_SESSION]
    try:
        return unseal(str(handed.get("sealed", "")))
    except SecretUnreadableError:
        return None


@portal_view(admin=True)
def webhooks(request: HttpRequest, membership: InsurerUser) -> HttpResponse:
    form = WebhookCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            endpoint, secret = webhook_endpoint_create(
                insurer_id=membership.insurer_id, url=form.cleaned_data["url"], actor=request.user.get_username()
            )
        except UnderwritingError as exc:
            add_to_form(form, exc)
        else:
            _hand_over_secret(request, endpoint.pk, secret)
            messages.success(request, _("Endpoint added. Copy its signing secret to your receiver now."))
            return redirect("portal:webhook-detail", endpoint_id=endpoint.pk)
    endpoints = selectors.endpoints_for_insurer(insurer_id=membership.insurer_id)
    return render(
        request, "portal/admin/webhooks.html", {"membership": membership, "form": form, "endpoints": endpoints}
    )


def _endpoint(membership: InsurerUser, endpoint_id: int):  # type: ignore[no-untyped-def]
    endpoint = selectors.endpoint_for_insurer(insurer_id=membership.insurer_id, endpoint_id=endpoint_id)
    if endpoint is None:
        raise Http404
    return endpoint


@never_cache
@portal_view(admin=True)
def webhook_detail(request: HttpRequest, membership: InsurerUser, endpoint_id: int) -> HttpResponse:
    endpoint = _endpoint(membership, endpoint_id)
    deliveries = selectors.deliveries_for_insurer(insurer_id=membership.insurer_id, endpoint_id=endpoint.pk)
    page = Paginator(deliveries, 25).get_page(request.GET.get("page"))
    context = {
        "membership": membership,
        "endpoint": endpoint,
        "page": page,
        "new_secret": _take_secret(request, endpoint.pk),
    }
    return render(request, "portal/admin/webhook_detail.html", context)


@require_POST
@portal_view(admin=True)
def webhook_rotate(request: HttpRequest, membership: InsurerUser, endpoint_id: int) -> HttpResponse:
    endpoint = _endpoint(membership, endpoint_id)
    secret = webhook_secret_rotate(endpoint_id=endpoint.pk, actor=request.user.get_username())
    _hand_over_secret(request, endpoint.pk, secret)
    messages.success(request, _("A new signing secret was issued; the previous one no longer signs events."))
    return redirect("portal:webhook-detail", endpoint_id=endpoint.pk)


@require_POST
@portal_view(admin=True)
def webhook_test(request: HttpRequest, membership: InsurerUser, endpoint_id: int) -> HttpResponse:
    endpoint = _endpoint(membership, endpoint_id)
    result = services.webhook_test_send(endpoint=endpoint)
    if result.ok:
        messages.success(request, _("Test event delivered (HTTP %(code)s).") % {"code": result.status_code})
    else:
        # The receiver's status, or one neutral outcome: never why no answer came (that maps ports).
        outcome = webhook_outcome_for_insurer(result.status_code)
        messages.error(request, _("Test event not delivered: %(outcome)s.") % {"outcome": outcome})
    return redirect("portal:webhook-detail", endpoint_id=endpoint.pk)


@require_POST
@portal_view(admin=True)
def webhook_toggle(request: HttpRequest, membership: InsurerUser, endpoint_id: int) -> HttpResponse:
    endpoint = _endpoint(membership, endpoint_id)
    services.webhook_endpoint_set_active(endpoint=endpoint, active=not endpoint.is_active)
    return redirect("portal:webhook-detail", endpoint_id=endpoint.pk)


@require_POST
@portal_view(admin=True)
def delivery_retry(request: HttpRequest, membership: InsurerUser, delivery_id: int) -> HttpResponse:
    delivery = selectors.delivery_for_insurer(insurer_id=membership.insurer_id, delivery_id=delivery_id)
    if delivery is None:
        raise Http404
    webhook_replay(delivery_id=delivery.pk)
    messages.success(request, _("The delivery was queued again."))
    return redirect(reverse("portal:webhook-detail", kwargs={"endpoint_id": delivery.endpoint_id}))


@portal_view(admin=True)
def usage(request: HttpRequest, membership: InsurerUser) -> HttpResponse:
    months = selectors.usage_per_month(insurer_id=membership.insurer_id)
    keys = selectors.api_keys_for_insurer(insurer_id=membership.insurer_id)
    return render(request, "portal/admin/usage.html", {"membership": membership, "months": months, "keys": keys})
