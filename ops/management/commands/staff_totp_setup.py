from __future__ import annotations

from io import StringIO
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ops import services


class Command(BaseCommand):
    help = (
        "Enrol an authenticator (TOTP) for a bureau staff member, who needs one to sign in to the admin. "
        "Prints the key, the otpauth:// provisioning URI and a QR code to scan with any authenticator app."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--replace", action="store_true", help="replace the authenticator the user has")
        parser.add_argument("--operator", default="", help="who runs this command (for the audit log)")
        parser.add_argument("--no-qr", action="store_true", help="print the key and URI only")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        try:
            enrolment = services.staff_totp_enrol(
                username=username, replace=options["replace"], operator=options["operator"]
            )
        except services.EnrolmentError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Authenticator enrolled for '{username}'. Add it to an authenticator app:")
        self.stdout.write(f"  key: {enrolment.secret}")
        self.stdout.write(f"  URI: {enrolment.uri}")
        if not options["no_qr"]:
            drawing = StringIO()
            enrolment.qr.terminal(out=drawing, compact=True)
            self.stdout.write(drawing.getvalue())
        self.stdout.write("The admin sign-in asks for the six-digit code the app shows.")
