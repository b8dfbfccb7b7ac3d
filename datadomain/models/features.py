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
