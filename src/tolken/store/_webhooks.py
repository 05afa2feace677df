"""The PMS webhook receiver's replay cache: deliveries taken in, per tenant, for five minutes."""

from __future__ import annotations

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError

from tolken.store._base import TenantBound
from tolken.store._models import WebhookDeliveryRow

__all__ = ["WebhookRepository"]


class WebhookRepository(TenantBound):
    """The tenant's verified webhook deliveries, so a replay is refused, also after a restart."""

    def remember_delivery(self, signature: str, sent_at: int, horizon: int) -> bool:
        """Record a delivery; False when it was already taken in (a replay).

        ``sent_at`` is the delivery's timestamp (unix seconds); the tenant's
        deliveries sent before ``horizon`` can no longer verify and are pruned.
        """
        row = {"tenant": self.tenant, "signature": signature, "sent_at": sent_at}
        try:
            with self._write() as conn:
                conn.execute(
                    delete(WebhookDeliveryRow).where(
                        WebhookDeliveryRow.tenant == self.tenant,
                        WebhookDeliveryRow.sent_at < horizon,
                    )
                )
                # The primary key decides, so two processes given the same delivery
                # at once accept it exactly once.
                conn.execute(insert(WebhookDeliveryRow).values(**row, received_at=self.now()))
        except IntegrityError:
            return False
        return True

    def forget_delivery(self, signature: str) -> None:
        """Drop a delivery that was not taken in after all, so the PMS may send it again."""
        with self._write() as conn:
            conn.execute(
                delete(WebhookDeliveryRow).where(
                    WebhookDeliveryRow.tenant == self.tenant,
                    WebhookDeliveryRow.signature == signature,
                )
            )
