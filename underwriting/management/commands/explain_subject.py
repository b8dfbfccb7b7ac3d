from __future__ import annotations

import json
import logging
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.approvals import ApprovalError
from underwriting.errors import UnderwritingError
from underwriting.services.explain import explanation_execute

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "In-domain only: carry out an approved four-eyes explanation (asked for and approved by two privacy "
        "officers in the admin) and print, as JSON, the features that counted for that decision, the score "
        "and the tier. Each approval can be carried out once; every use is audited with the subject's "
        "pseudonymous key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--approval", type=int, required=True, help="id of the approved explanation request")
        parser.add_argument("--by", required=True, help="username of the privacy officer carrying it out")

    def handle(self, *args: Any, **options: Any) -> None:
        officer = get_user_model().objects.filter(username=options["by"]).first()
        if officer is None:
            raise CommandError(f"No user '{options['by']}'.")
        try:
            explanation = explanation_execute(approval_id=options["approval"], executed_by=officer)
        except (ApprovalError, UnderwritingError) as exc:
            raise CommandError(exc.message) from exc
        logger.warning("explain_subject: approval %s carried out by %s", options["approval"], officer.get_username())
        self.stdout.write(json.dumps(explanation.as_dict(), ensure_ascii=False, indent=2))
