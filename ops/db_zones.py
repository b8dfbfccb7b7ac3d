"""The trust zones' database privileges: which PostgreSQL role may do what to which table.

Each trust zone of DESIGN.md ("Parties and what each may learn") connects with its own role, named
``DB_ROLE_PREFIX`` + zone (``underwriting_web`` ...), and ``manage.py db_roles`` makes the database match
this module: it creates the roles, revokes everything from PUBLIC and grants each role exactly what is
declared here, table by table and, where a zone may touch only part of a row, column by column. What is
not declared is revoked, so deleting a line here and re-running the command takes the privilege away.

The zones and the processes that connect as each:

``web``
    gunicorn: the insurer portal, REST API v1 and the bureau's Django admin; the operator's commands for
    insurers, users and manuals (``create_insurer``, ``create_api_key``, ``staff_totp_setup``,
    ``portal_totp_code``, ``load_manual``, ``approve_manual``) and webhook signing secrets
    (``reencrypt_webhook_secrets``). Submission checks identity and consent in
    the request (DESIGN step 2), so it reads the identity table's name column and records consent; it never
    reads a clinical record.
``domain``
    Celery workers on the ``domain`` queue (feature extraction and the grant that authorises a request's
    comparisons, batch runs, the audit chainer and anchor, misuse flags, the four-eyes explanation,
    quarantine re-processing, heartbeats) and the data domain's commands
    (``ingest_fhir``, ``precompute_features`` and the re-encryption after a rotation, ``explain_subject``,
    ``verify_audit_chain``, ``export_audit_anchor``). The only zone that reads raw records.
``scoring``
    Celery workers on the ``scoring`` and ``webhooks`` queues (encrypted scoring, tiering, finalisation,
    the sweeper, webhook deliveries) and beat, which only enqueues. Reads ciphertexts and
    public keys, never a record, identity, consent or the custodian's grants.
``custodian``
    The Celery worker on the ``custodian`` queue (``datadomain.custodian``) and ``create_keypair``,
    ``rotate_keypair``, ``retire_keys`` and ``rotate_kek`` on its host. It reads and spends comparison
    grants and keeps the key table; it cannot read records, identities, consent, requests, tiers, the
    scoring workers' tiering secrets or the audit log (it appends to it; the chainer links its rows
    later, see ``audit.services``).
``migrate`` (not a zone)
    The owner of every table: ``manage.py migrate`` runs as this role and it is the only one with DDL
    (CREATE on the schema; ALTER and DROP belong to the owner). Nothing runs as it in normal operation.

Privileges are written as in SQL: ``SELECT``, ``INSERT``, ``UPDATE``, ``DELETE``, each on the whole table
or on the columns in parentheses. ``INSERT SELECT(id)`` is the usual "append only": PostgreSQL's
``INSERT ... RETURNING id`` (every Django insert into a table with an automatic key) needs to read the
new row's id and nothing else. A filtered UPDATE or DELETE needs SELECT on the columns it filters on.
Tables are named by model label (the command takes ``_meta.db_table``); every installed model must appear
(``{}``: the owner alone), so a new table is a decision, never an accident (tests/security/test_db_roles.py).
"""

from __future__ import annotations

from typing import Final

WEB: Final = "web"
DOMAIN: Final = "domain"
SCORING: Final = "scoring"
CUSTODIAN: Final = "custodian"
ZONES: Final = (WEB, DOMAIN, SCORING, CUSTODIAN)
# The schema owner's role: runs migrations, owns every table, holds no grants of its own.
OWNER: Final = "migrate"

ALL = "SELECT INSERT UPDATE DELETE"
# Append only: insert and learn the new row's id (INSERT ... RETURNING id), read nothing else.
APPEND = "INSERT SELECT(id)"
# Recording that a worker answered a heartbeat (ops.services.heartbeat_record: update, else insert).
HEARTBEAT = "SELECT INSERT UPDATE"
# The public half of a custodian key, what encrypting and scoring need: never the sealed key's path.
PUBLIC_KEY = "SELECT(id, key_id, public_key_json, status, created_at)"
# Reading who a staff member is and what their role allows (``user.has_perm``), for the four-eyes commands
# each zone runs on its own host (explain_subject on the domain's, rotate_keypair on the custodian's).
STAFF_LOOKUP = "SELECT"

MATRIX: Final[dict[str, dict[str, str]]] = {
    # --- Django: accounts and permissions, sessions, the admin's log, authenticators ---------------------
    "auth.User": {WEB: ALL, DOMAIN: STAFF_LOOKUP, CUSTODIAN: STAFF_LOOKUP},
    "auth.Group": {WEB: ALL, DOMAIN: STAFF_LOOKUP, CUSTODIAN: STAFF_LOOKUP},
    "auth.Group_permissions": {WEB: ALL, DOMAIN: STAFF_LOOKUP, CUSTODIAN: STAFF_LOOKUP},
    "auth.User_groups": {WEB: ALL, DOMAIN: STAFF_LOOKUP, CUSTODIAN: STAFF_LOOKUP},
    "auth.User_user_permissions": {WEB: ALL, DOMAIN: STAFF_LOOKUP, CUSTODIAN: STAFF_LOOKUP},
    # Permissions and content types are written by migrate (post_migrate); the others only read them.
    "auth.Permission": {WEB: "SELECT", DOMAIN: STAFF_LOOKUP, CUSTODIAN: STAFF_LOOKUP},
    "contenttypes.ContentType": {WEB: "SELECT", DOMAIN: STAFF_LOOKUP, CUSTODIAN: STAFF_LOOKUP},
    "sessions.Session": {WEB: ALL},
    "admin.LogEntry": {WEB: "SELECT INSERT DELETE"},
    "otp_totp.TOTPDevice": {WEB: ALL},
    # django-axes' tables stay empty: sign-in failures are counted in the cache (insurer_portal.lockout).
    "axes.AccessAttempt": {},
    "axes.AccessAttemptExpiration": {},
    "axes.AccessFailureLog": {},
    "axes.AccessLog": {},
    # --- ops: which worker consumed each queue's heartbeat (readiness, dashboard) -------------------------
    "ops.WorkerHeartbeat": {WEB: "SELECT DELETE", DOMAIN: HEARTBEAT, SCORING: HEARTBEAT, CUSTODIAN: HEARTBEAT},
    # --- audit ---------------------------------------------------------------------------------------------
    # Everyone appends; the admin reads it (and verifies it: "Verify the chain" only reads); the chainer
    # (beat's audit.tasks.chain_pending, domain queue) reads it and sets the chain fields once; the anchor
    # export and beat's verification (domain queue) only read it. No zone may DELETE or TRUNCATE, and the
    # database guard (audit.models) refuses forged chain fields and stamps the time of every INSERT, whoever
    # connects. The custodian and scoring workers cannot read
    # it at all: entries link request ids to subjects, and a worker reading whether the custodian recorded
    # its query as a misuse would learn whether the query passed. Misuse flags count them on the domain queue.
    "audit.AuditEntry": {
        WEB: "SELECT INSERT",
        DOMAIN: "SELECT INSERT UPDATE(chain_seq, prev_hash, hash)",
        SCORING: APPEND,
        CUSTODIAN: APPEND,
    },
    # Four-eyes requests: asked and decided in the admin, carried out there or by the owning zone's command.
    "audit.Approval": {WEB: "SELECT INSERT UPDATE", DOMAIN: "SELECT UPDATE", CUSTODIAN: "SELECT UPDATE"},
    # --- data domain: identities, raw records, consent, encrypted features --------------------------------
    # The identity table (resident IDs, names): submission's identity check and the admin read it; erasure
    # deletes from it.
    "datadomain.Patient": {WEB: "SELECT DELETE", DOMAIN: ALL},
    # Record linkage (datadomain.linkage): staff confirm a link with differing demographics in the admin.
    "datadomain.PatientSource": {DOMAIN: ALL, WEB: "SELECT DELETE UPDATE(confirmed, confirmed_by, confirmed_at)"},
    # Mapping tables per source (datadomain.mapping): coders propose and approve in the admin; the domain
    # reads them to extract features and keeps the queue snapshot the admin lists.
    "datadomain.CodeMapping": {WEB: "SELECT INSERT UPDATE", DOMAIN: "SELECT"},
    "datadomain.UnmappedCode": {DOMAIN: ALL, WEB: "SELECT"},
    # The phone number held for a person: read by the domain alone, which sends residents their codes and
    # notices (datadomain.residents). The web may delete it with the person (erasure), never read it.
    "datadomain.PatientContact": {DOMAIN: ALL, WEB: "DELETE SELECT(patient_id)"},
    # Resident sign-in attempts: the web creates them and checks typed codes against the keyed hash, the
    # domain writes the hash when it sends a code; the web's erasure of a subject deletes them.
    "datadomain.ResidentCode": {
        WEB: "SELECT INSERT DELETE UPDATE(used_at, failures)",
        DOMAIN: "SELECT UPDATE(code_hash)",
    },
    # Messages to residents (no number, no text): written by the domain, read by staff in the admin,
    # deleted with the subject (erasure, web).
    "datadomain.MessageDelivery": {DOMAIN: "SELECT INSERT UPDATE", WEB: "SELECT DELETE"},
    # Raw records: the domain alone reads them. The web's erasure of a subject (PIPL Art. 47, admin) deletes
    # a patient's rows, which needs the patient column to filter on and nothing else.
    "datadomain.Condition": {DOMAIN: ALL, WEB: "DELETE SELECT(patient_id)"},
    "datadomain.Encounter": {DOMAIN: ALL, WEB: "DELETE SELECT(patient_id)"},
    "datadomain.Observation": {DOMAIN: ALL, WEB: "DELETE SELECT(patient_id)"},
    "datadomain.IngestBatch": {DOMAIN: ALL, WEB: "SELECT"},
    "datadomain.IngestCheckpoint": {DOMAIN: ALL, WEB: "SELECT"},
    # Input lines ingest could not read: corrected in the admin, deleted with an erased subject.
    "datadomain.QuarantinedLine": {DOMAIN: ALL, WEB: "SELECT UPDATE DELETE"},
    "datadomain.Consent": {WEB: "SELECT INSERT UPDATE", DOMAIN: "SELECT INSERT UPDATE"},
    # Withdrawals for a subject and insurer: recorded in the admin (web), checked at every submission (web,
    # and batches on the domain queue). Never changed or deleted: they stop consent presented later too.
    "datadomain.ConsentWithdrawal": {WEB: "SELECT INSERT", DOMAIN: "SELECT INSERT"},
    # Ciphertexts under the custodian's key: the custodian may count a key's vectors (retirement), never
    # read one (it could decrypt it).
    "datadomain.EncryptedFeatureVector": {DOMAIN: ALL, WEB: "SELECT DELETE", CUSTODIAN: "SELECT(key_id)"},
    # The plaintexts those vectors were made from (derived from raw records): the domain alone reads them;
    # the web deletes an erased subject's rows (by patient) and reads nothing else.
    "datadomain.FeatureValues": {DOMAIN: ALL, WEB: "DELETE SELECT(patient_id)"},
    # The custodian writes its keys; everyone else reads public halves (the admin also the status page).
    "datadomain.CustodianKey": {
        CUSTODIAN: "SELECT INSERT UPDATE",
        WEB: "SELECT",
        DOMAIN: PUBLIC_KEY,
        SCORING: PUBLIC_KEY,
    },
    # One grant per request: issued by the domain at extraction, read and spent by the custodian; it holds
    # the request's MAC key, so nobody else reaches it.
    "datadomain.ComparisonGrant": {DOMAIN: APPEND, CUSTODIAN: "SELECT UPDATE"},
    # --- underwriting ---------------------------------------------------------------------------------------
    "underwriting.RatingManual": {WEB: ALL, DOMAIN: "SELECT", SCORING: "SELECT"},
    # Requests: created at submission (web, or a batch on the domain queue), moved on by the stages. The
    # custodian never reads them (they carry subject keys and tiers).
    "underwriting.UnderwritingRequest": {
        # The resident page (web) moves a request out of awaiting_consent (approve, decline).
        WEB: "SELECT INSERT UPDATE(resident_id_masked, status, reason, consent_id, updated_at, completed_at)",
        DOMAIN: "SELECT INSERT UPDATE(status, reason, updated_at, completed_at)",
        SCORING: (
            "SELECT UPDATE(status, reason, tier_code, tier_label, decision, table_rating, attempts, updated_at,"
            " completed_at)"
        ),
    },
    # The domain's hand-over to scoring (encrypted features, MAC tag material), deleted once used.
    "underwriting.ScoringInput": {DOMAIN: "INSERT", SCORING: "SELECT DELETE"},
    # The scoring worker's query and un-blinding state while the custodian answers: scoring alone.
    "underwriting.TieringSecret": {SCORING: ALL},
    "underwriting.RequestEvent": {WEB: "SELECT INSERT", DOMAIN: APPEND, SCORING: APPEND},
    # Submission (web, and batches on the domain queue) locks each subject's row while it counts requests
    # against the rate limits (an upsert: INSERT ... ON CONFLICT DO UPDATE) and records which check refused a
    # request (read by the admin and by misuse flags on the domain queue). Scoring and the custodian never
    # see either.
    "underwriting.AdmissionLock": {WEB: "SELECT INSERT UPDATE(locked_at)", DOMAIN: "SELECT INSERT UPDATE(locked_at)"},
    "underwriting.VerificationFailure": {WEB: "SELECT INSERT", DOMAIN: "SELECT INSERT"},
    # The bureau's consent mode per insurer: set in the admin, read at submission (web, batches on domain).
    "underwriting.ConsentPolicy": {WEB: ALL, DOMAIN: "SELECT"},
    # Requests waiting for the resident: created at submission, decided on the resident page (web), expired
    # by the sweeper (scoring zone, which reads nothing here but subject keys it already sees on requests).
    "underwriting.ConsentConfirmation": {
        WEB: "SELECT INSERT UPDATE(status, decided_at)",
        DOMAIN: "SELECT INSERT",
        SCORING: "SELECT(request_id, status, expires_at) UPDATE(status, decided_at)",
    },
    # Endpoints: the domain only enqueues deliveries for a terminal request (which endpoints, whose); the
    # scoring zone's webhook workers read the URL and the encrypted signing secret to sign and send.
    "underwriting.WebhookEndpoint": {WEB: ALL, DOMAIN: "SELECT(id, insurer_id, is_active)", SCORING: "SELECT"},
    "underwriting.WebhookDelivery": {WEB: ALL, DOMAIN: "SELECT INSERT", SCORING: "SELECT INSERT UPDATE"},
    # Raised by flags_evaluate on the domain queue: the flags watch the scoring workers (custodian misuse),
    # so the scoring zone neither reads the custodian's audit entries nor writes flags.
    "underwriting.MisuseFlag": {WEB: "SELECT UPDATE", DOMAIN: "SELECT INSERT UPDATE"},
    "underwriting.RateLimitOverride": {WEB: "SELECT INSERT UPDATE", DOMAIN: "SELECT UPDATE"},
    # --- tenants (insurers, their users and API keys; tables still named insurer_portal_*) -------------------
    "tenants.Insurer": {WEB: ALL, DOMAIN: "SELECT", SCORING: "SELECT"},
    "tenants.ApiKey": {WEB: ALL},
    "tenants.InsurerUser": {WEB: ALL},
    # --- insurer portal ---------------------------------------------------------------------------------------
    # Batches are previewed in the portal and run on the domain queue (identity checks need the domain).
    "insurer_portal.Batch": {WEB: ALL, DOMAIN: "SELECT UPDATE"},
    "insurer_portal.BatchRow": {WEB: ALL, DOMAIN: "SELECT UPDATE"},
}

# Database-wide privileges beyond CONNECT: ingest stages its COPY in temporary tables.
TEMPORARY_TABLES: Final = frozenset({DOMAIN})
