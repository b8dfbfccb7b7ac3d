from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _

from datadomain.models.identity import Patient


class EncryptedFeatureVector(models.Model):
    """Paillier ciphertexts of one subject's features under one public key, as of one date.

    ``features[i]`` has exponent ``exponents[i]`` and its ciphertext is the i-th fixed-width big-endian
    slice of ``ciphertexts`` (see ``datadomain.encryption.pack``).
    The row is fresh only while ``records_stamp`` equals the subject's current records stamp (see
    ``IngestBatch``) and ``catalog_version`` is the current catalog's.
    """

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, verbose_name=_("patient"))
    catalog_version = models.CharField(_("catalog version"), max_length=40)
    key_id = models.CharField(_("key id"), max_length=64)
    as_of = models.DateField(_("as of"))
    records_stamp = models.BigIntegerField(_("records stamp"))
    features = models.JSONField(_("features"), default=list)
    exponents = models.JSONField(_("exponents"), default=list)
    ciphertexts = models.BinaryField(_("ciphertexts"), default=b"")
    computed_at = models.DateTimeField(_("computed"), auto_now=True)

    class Meta:
        verbose_name = _("encrypted feature vector")
        verbose_name_plural = _("encrypted feature vectors")
        constraints = [
            models.UniqueConstraint(fields=["patient", "catalog_version", "key_id", "as_of"], name="dd_encfeat_unique"),
        ]
        # Vectors per key (re-encryption progress, "may this key retire?") without reading the whole store.
        indexes = [models.Index(fields=["key_id"], name="dd_encfeat_key")]

    def __str__(self) -> str:
        return f"{self.patient_id}/{self.catalog_version}/{self.key_id}/{self.as_of}"


class FeatureValues(models.Model):
    """The plaintext feature values that one subject's encrypted vectors were made from, as of one date.

    Written in the same transaction and from the same list as the ciphertexts (``vector_save``, the bulk
    precompute), and used only while ``records_stamp`` still matches: with them the data domain's
    authorisation of a request encrypts the MAC tag of a score it knows with the fixed-base encryptor
    instead of raising the encrypted score to a 794-bit power (``securecompute.binding``). The values
    are derived from raw records, so only the domain's database role reads them (ops/db_zones.py); they
    do not depend on the custodian's key and survive a rotation.
    """

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, verbose_name=_("patient"))
    catalog_version = models.CharField(_("catalog version"), max_length=40)
    as_of = models.DateField(_("as of"))
    records_stamp = models.BigIntegerField(_("records stamp"))
    values = models.JSONField(_("values"), default=dict)  # feature name -> integer value
    computed_at = models.DateTimeField(_("computed"), auto_now=True)

    class Meta:
        verbose_name = _("feature values")
        verbose_name_plural = _("feature values")
        constraints = [
            models.UniqueConstraint(fields=["patient", "catalog_version", "as_of"], name="dd_featvalues_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.patient_id}/{self.catalog_version}/{self.as_of}"
