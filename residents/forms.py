from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from datadomain import services as domain


class ResidentIdForm(forms.Form):
    resident_id = forms.CharField(
        label=_("Resident ID number"),
        max_length=18,
        min_length=18,
        widget=forms.TextInput(attrs={"autocomplete": "off", "inputmode": "text", "autocapitalize": "characters"}),
        help_text=_("The 18-character number on your resident identity card."),
    )

    def clean_resident_id(self) -> str:
        value = domain.resident_id_normalise(self.cleaned_data["resident_id"])
        if not domain.resident_id_is_valid(value):
            raise forms.ValidationError(_("This is not a valid resident ID number."), code="invalid")
        return value


class CodeForm(forms.Form):
    code = forms.RegexField(
        label=_("One-time code"),
        regex=r"^\s*\d{6}\s*$",
        max_length=12,
        error_messages={"invalid": _("Enter the 6 digits from the text message.")},
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )
