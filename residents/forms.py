from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from datadomain import services as domain


class _ResidentForm(forms.Form):
    """Errors are tied to their field: after validation a field in error is described by its help text
    and its error message (ids ``<id>_helptext`` and ``<id>_error`` in residents/_form.html)."""

    def full_clean(self) -> None:
        super().full_clean()
        for name in self.errors:
            if name not in self.fields:
                continue
            bound = self[name]
            described = [f"{bound.auto_id}_error"]
            if self.fields[name].help_text:
                described.insert(0, f"{bound.auto_id}_helptext")
            self.fields[name].widget.attrs["aria-describedby"] = " ".join(described)


class ResidentIdForm(_ResidentForm):
    resident_id = forms.CharField(
        label=_("Resident ID number"),
        max_length=18,
        min_length=18,
        widget=forms.TextInput(
            attrs={"autocomplete": "off", "inputmode": "text", "autocapitalize": "characters", "spellcheck": "false"}
        ),
        help_text=_("The 18-character number on your resident identity card."),
    )

    def clean_resident_id(self) -> str:
        value = domain.resident_id_normalise(self.cleaned_data["resident_id"])
        if not domain.resident_id_is_valid(value):
            raise forms.ValidationError(_("This is not a valid resident ID number."), code="invalid")
        return value


class CodeForm(_ResidentForm):
    code = forms.RegexField(
        label=_("One-time code"),
        regex=r"^\s*\d{6}\s*$",
        max_length=12,
        error_messages={"invalid": _("Enter the 6 digits from the text message.")},
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "pattern": "[0-9]*", "size": 8}
        ),
    )
