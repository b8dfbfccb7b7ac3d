from __future__ import annotations

import getpass
import json
import logging
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.services import audit_record, subject_ref
from datadomain import selectors as domain_selectors
from datadomain import services as domain
from underwriting import selectors
from underwriting.reference import evaluate
from underwriting.services.requests import request_date

logger = logging.getLogger(__name__)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return ""


class Command(BaseCommand):
    help = (
        "In-domain only: print the features that counted and the plaintext score of one subject under a "
        "manual, as JSON. Every use is logged with the subject's pseudonymous key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--resident-id", required=True)
        parser.add_argument("--manual", required=True, help="manual slug (newest approved version)")
        parser.add_argument("--insurer", default="builtin", help="insurer slug whose own manuals may be used")
        parser.add_argument("--operator", default=_os_user(), help="who asks (recorded in the audit log)")

    def handle(self, *args: Any, **options: Any) -> None:
        if not domain.resident_id_is_valid(options["resident_id"]):
            raise CommandError("Not a valid resident ID.")
        subject_key = domain.subject_key_for(domain.resident_id_normalise(options["resident_id"]))
        if not domain_selectors.subject_is_known(subject_key):
            raise CommandError("The subject is not known to the data domain.")
        manual = selectors.manual_for_use(slug=options["manual"], insurer_slug=options["insurer"])
        if manual is None:
            raise CommandError(f"No approved manual '{options['manual']}'.")
        document = selectors.manual_document(manual)
        as_of = request_date()
        features = domain_selectors.subject_features(
            subject_key=subject_key, feature_names=document.feature_names, as_of=as_of
        )
        result = evaluate(document, features)
        audit_record(
            action="subject.explain",
            actor=options["operator"],
            target_type="subject",
            target_id=subject_ref(subject_key),
            detail={"manual": manual.slug, "version": manual.version, "insurer": options["insurer"]},
        )
        logger.warning(
            "explain_subject: subject %s explained under %s v%s", subject_key[:12], manual.slug, manual.version
        )
        counted = {
            name: {"value": features[name], "points": points} for name, points in result.contributions.items() if points
        }
        self.stdout.write(
            json.dumps(
                {
                    "manual": {"slug": manual.slug, "version": manual.version},
                    "as_of": as_of.isoformat(),
                    "features": counted,
                    "score": result.score,
                    "tier": {"code": result.tier.code, "label": result.tier.label, "decision": result.tier.decision},
                },
                ensure_ascii=False,
                indent=2,
            )
        )
