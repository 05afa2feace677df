"""The words every part of tolken shares, each defined once.

- :data:`FlowId`: one of the three flows (``departments``, ``customers``,
  ``projects``), in dependency order in :data:`FLOW_IDS`.
- :data:`Side`: which system a record, value or write belongs to.
- :data:`Direction`: which way a write went (``to_pms``: PowerOffice → PMS).
  A mapped property's :data:`PropertyDirection` adds ``both``.
- :data:`LinkState`: whether a link is synchronised (``active``) or one of its
  records is gone (``source-deleted``: the PowerOffice record; ``pms-deleted``:
  the PMS record).
- :data:`ConflictPolicy`: who wins a field changed on both sides.

A leaf: it imports nothing of tolken, and everything may import it.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "FLOW_IDS",
    "SIDES",
    "ConflictPolicy",
    "Direction",
    "FlowId",
    "LinkState",
    "PropertyDirection",
    "Side",
]

FlowId = Literal["departments", "customers", "projects"]
FLOW_IDS: tuple[FlowId, ...] = ("departments", "customers", "projects")

Side = Literal["poweroffice", "pms"]
SIDES: tuple[Side, ...] = ("poweroffice", "pms")

Direction = Literal["to_pms", "to_poweroffice"]
PropertyDirection = Literal["both", "to_pms", "to_poweroffice"]

LinkState = Literal["active", "source-deleted", "pms-deleted"]

ConflictPolicy = Literal["newest-wins", "poweroffice-wins", "pms-wins", "manual"]
