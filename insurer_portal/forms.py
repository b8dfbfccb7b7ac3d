"""Portal forms: they parse and check input; the services decide."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.validators import RegexValidator
from django.utils.translation import gettext_lazy as _

from insurer_portal.batches import MAX_UPLOAD_BYTES
from tenants.models import InsurerUser
from underwriting.models import RequestStatus

ID_PATTERN = r"^[0-9]{17}[0-9Xx]$"


class PortalForm(forms.Form):
    """Labels without a trailing colon: they sit above their fields. Required fields say so twice: a
    marked label (the ``required`` class, drawn as an asterisk by app.css) and ``aria-required``."""

    required_css_class = "required"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            # A group of checkboxes is required as a whole (its legend is marked), not box by box.
            if field.required and not isinstance(field.widget, forms.CheckboxSelectMultiple):
                field.widget.attrs.setdefault("aria-required", "true")


class LoginForm(PortalForm):
    username = forms.CharField(label=_("User name"), max_length=150)
    password = forms.CharField(label=_("Password"), strip=False, widget=forms.PasswordInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].widget.attrs.update({"autocomplete": "username", "autofocus": True})
        self.fields["password"].widget.attrs.update({"autocomplete": "current-password"})


class TokenForm(PortalForm):
    token = forms.CharField(
        label=_("6-digit code from your authenticator app"),
        min_length=6,
        max_length=6,
        validators=[RegexValidator(r"^[0-9]{6}$", _("Enter the 6 digits."))],
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["token"].widget.attrs.update(
            {"autocomplete": "one-time-code", "inputmode": "numeric", "pattern": "[0-9]{6}", "autofocus": True}
        )


class RequestSubmitForm(PortalForm):
    reference = forms.CharField(
        label=_("Your reference"), max_length=100, help_text=_("e.g. the policy application number")
    )
    resident_id = forms.CharField(
        label=_("Resident ID"),
        min_length=18,
        max_length=18,
        help_text=_("18 characters; the last may be X. Checked as you type."),
        validators=[RegexValidator(ID_PATTERN, _("18 characters: 17 digits and a digit or X."))],
    )
    name = forms.CharField(label=_("Applicant's name"), max_length=100)
    manual = forms.ChoiceField(label=_("Rating manual"))
    consent_reference = forms.CharField(label=_("Consent reference"), max_length=100)
    consent_signed_at = forms.DateTimeField(
        label=_("Consent signed at"), widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    consent_expires_at = forms.DateTimeField(
        label=_("Consent expires at"), required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    consent_scope = forms.MultipleChoiceField(
        label=_("Consent scope"),
        choices=[("underwriting", _("Underwriting")), ("claims", _("Claims"))],
        initial=["underwriting"],
        widget=forms.CheckboxSelectMultiple,
    )
    consent_file = forms.FileField(
        label=_("Signed consent form"), help_text=_("PDF or image, at most 5 MB. Kept only in the data domain.")
    )

    def __init__(self, *args: Any, manuals: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["manual"].choices = manuals  # type: ignore[attr-defined]
        id_attrs = {"autocomplete": "off", "spellcheck": "false", "data-resident-id": "", "maxlength": "18"}
        self.fields["resident_id"].widget.attrs.update(id_attrs)
        self.fields["name"].widget.attrs.update({"autocomplete": "off"})
        self.fields["consent_file"].widget.attrs.update({"accept": ".pdf,.png,.jpg,.jpeg"})

    def clean_resident_id(self) -> str:
        from datadomain.services import resident_id_is_valid, resident_id_normalise

        value: str = self.cleaned_data["resident_id"]
        if not resident_id_is_valid(value):
            raise forms.ValidationError(_("Not a valid resident ID (birth date or check character)."))
        return resident_id_normalise(value)

    def clean_consent_file(self) -> Any:
        upload = self.cleaned_data["consent_file"]
        if upload.size > 5 * 1024 * 1024:
            raise forms.ValidationError(_("The file is larger than 5 MB."))
        if upload.size == 0:
            raise forms.ValidationError(_("The file is empty."))
        return upload

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        signed, expires = data.get("consent_signed_at"), data.get("consent_expires_at")
        if signed and expires and expires <= signed:
            self.add_error("consent_expires_at", _("The consent must expire after it was signed."))
        return data


class RequestFilterForm(PortalForm):
    q = forms.CharField(label=_("Search reference"), required=False, max_length=100)
    status = forms.ChoiceField(label=_("Status"), required=False)
    tier = forms.ChoiceField(label=_("Tier"), required=False)
    manual = forms.ChoiceField(label=_("Manual"), required=False)
    created_from = forms.DateField(label=_("From"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    created_to = forms.DateField(label=_("To"), required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, tiers: list[str], manuals: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["status"].choices = [("", _("All")), *list(RequestStatus.choices)]  # type: ignore[attr-defined]
        self.fields["tier"].choices = [("", _("All"))] + [(tier, tier) for tier in tiers]  # type: ignore[attr-defined]
        self.fields["manual"].choices = [("", _("All"))] + [(slug, slug) for slug in manuals]  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("created_from"), data.get("created_to")
        if start and end and end < start:
            # An empty list would look like "no requests in that period"; say what is wrong instead.
            self.add_error("created_to", _("The end date is before the start date."))
        return data


class BatchUploadForm(PortalForm):
    file = forms.FileField(label=_("CSV or XLSX file"), help_text=_("At most 5 MB."))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["file"].widget.attrs.update({"accept": ".csv,.xlsx"})

    def clean_file(self) -> Any:
        """Size and kind before anything reads the content; the content itself is checked while it is read."""
        upload = self.cleaned_data["file"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(_("The file is larger than 5 MB."))
        if not str(upload.name).lower().endswith((".csv", ".xlsx")):
            raise forms.ValidationError(_("Upload a .csv or .xlsx file."))
        return upload


class MemberCreateForm(PortalForm):
    username = forms.CharField(label=_("User name"), max_length=150)
    email = forms.EmailField(label=_("E-mail"), help_text=_("The new user sets a password through a reset link."))
    role = forms.ChoiceField(label=_("Role"), choices=InsurerUser.Role.choices)


class ApiKeyCreateForm(PortalForm):
    name = forms.CharField(label=_("Key name"), max_length=100, help_text=_("e.g. the system that will use it"))


class WebhookCreateForm(PortalForm):
    url = forms.URLField(
        label=_("Endpoint URL"),
        max_length=500,
        assume_scheme="https",
        help_text=_(
            "Your receiver on the public internet. An on-premise receiver must first be allowed by the bureau."
        ),
    )
