from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class WorkerHeartbeat(models.Model):
    """The last time a worker consuming ``queue`` answered a heartbeat task.

    Beat sends one heartbeat per queue every HEARTBEAT_SECONDS; the freshest row per queue tells an
    operator (and /readyz) whether anything is consuming that queue at all.
    """

    queue = models.CharField(_("queue"), max_length=64)
    hostname = models.CharField(_("worker"), max_length=255)
    seen_at = models.DateTimeField(_("last seen"))
    beats = models.PositiveBigIntegerField(_("heartbeats answered"), default=0)

    class Meta:
        verbose_name = _("worker heartbeat")
        verbose_name_plural = _("worker heartbeats")
        constraints = [models.UniqueConstraint(fields=["queue", "hostname"], name="ops_heartbeat_queue_host")]
        ordering = ["queue", "hostname"]

    def __str__(self) -> str:
        return f"{self.queue}@{self.hostname}"
