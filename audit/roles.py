"""Bureau staff roles as Django groups, each with the least privilege its work needs.

Permissions are named by "app_label.codename" strings, so this module imports no other app of the
project. Some permissions are not model defaults and are created here: approving a rating manual,
rotating and retiring the custodian's keys, explaining a decision and serving subject rights (access
report, consent withdrawal, erasure). Superusers hold every permission and need no group.
"""

from __future__ import annotations

from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType

AUDITOR = "auditor"
PRIVACY_OFFICER = "privacy officer"
MODEL_REVIEWER = "model reviewer"
KEY_OFFICER = "key officer"

CUSTOM_PERMISSIONS = {
    "underwriting.approve_ratingmanual": ("underwriting", "ratingmanual", "Can approve rating manual"),
    "datadomain.rotate_custodiankey": ("datadomain", "custodiankey", "Can rotate custodian key"),
    "datadomain.explain_patient": ("datadomain", "patient", "Can ask for or approve the explanation of a decision"),
    "datadomain.serve_subject_rights": ("datadomain", "patient", "Can serve subject rights requests"),
}

ROLES: dict[str, list[str]] = {
    # Reads what the bureau must be able to account for; changes nothing.
    AUDITOR: [
        "audit.view_auditentry",
        "underwriting.view_underwritingrequest",
        "underwriting.view_requestevent",
        "underwriting.view_ratingmanual",
        "datadomain.view_consent",
        "audit.view_approval",
        "underwriting.view_misuseflag",
        "underwriting.view_ratelimitoverride",
    ],
    # Consent evidence and withdrawal, subject rights (access report, erasure) and four-eyes explanations;
    # subjects by pseudonymous key and masked ID only.
    PRIVACY_OFFICER: [
        "datadomain.view_consent",
        "datadomain.change_consent",
        "datadomain.view_patient",
        "datadomain.explain_patient",
        "datadomain.serve_subject_rights",
        "audit.view_approval",
        # Misuse flags (review) and rate-limit overrides (grant): both audited.
        "underwriting.view_misuseflag",
        "underwriting.change_misuseflag",
        "underwriting.view_ratelimitoverride",
        "underwriting.add_ratelimitoverride",
    ],
    MODEL_REVIEWER: ["underwriting.view_ratingmanual", "underwriting.approve_ratingmanual"],
    # Keys, four-eyes rotation and retirement of unused keys; never a private key.
    KEY_OFFICER: ["datadomain.view_custodiankey", "datadomain.rotate_custodiankey", "audit.view_approval"],
}


def _permission(name: str) -> Permission:
    app_label, codename = name.split(".", 1)
    if name in CUSTOM_PERMISSIONS:
        _, model_name, label = CUSTOM_PERMISSIONS[name]
        content_type = ContentType.objects.get_for_model(apps.get_model(app_label, model_name))
        permission, _ = Permission.objects.get_or_create(
            content_type=content_type, codename=codename, defaults={"name": label}
        )
        return permission
    model_name = codename.split("_", 1)[1]
    content_type = ContentType.objects.get_for_model(apps.get_model(app_label, model_name))
    permission, _ = Permission.objects.get_or_create(
        content_type=content_type, codename=codename, defaults={"name": f"Can {codename.replace('_', ' ')}"}
    )
    return permission


def staff_roles_ensure() -> list[str]:
    """Create or reset the role groups to exactly their permissions; returns the group names."""
    for role, names in ROLES.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set([_permission(name) for name in names])
    return list(ROLES)
