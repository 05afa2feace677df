"""``tolken check-pms``: the PMS REST contract (DESIGN §2) run as a conformance suite.

A PMS vendor points it at their API; each rule is a small function that
exercises one clause of the contract with its own test records and returns
pass or fail with a one-line reason. The rules, in the order they run:

``auth``
    401 without the API key and with a wrong one; 200 with it.
``create-and-read``
    POST answers 201 with the record (string ``id``, integer ``version``,
    ISO ``created_at``/``updated_at``); GET returns the same; unknown id 404.
``paging``
    ``limit`` respected, items in ``(updated_at, id)`` order, every record
    exactly once, ``next_cursor`` null on the last page.
``cursor-stability``
    An update and an insert between two pages make the traversal skip and
    repeat nothing (an offset-based cursor fails here).
``updated-after-exclusive``
    ``updated_after=T`` returns exactly the records with ``updated_at > T``.
``idempotent-post``
    The same ``Idempotency-Key`` returns the same record; one record exists.
``if-match``
    PATCH with the current ``If-Match`` succeeds and bumps ``version`` by
    one; a stale one is 412 and changes nothing.
``merge-patch``
    PATCH is JSON Merge Patch (RFC 7396): nested objects merge, ``null``
    clears, unnamed fields stay.
``validation-422``
    A bad body is 422 with ``{"errors": [{"field", "message"}]}`` naming the
    field, malformed JSON 400 (or 422) with the same shape, nothing stored.
``delete``
    DELETE is 204, then GET is 404.
``projects``
    A project with every field (references to a customer and a department,
    dates, status, billable, progress) reads back as written, takes a merge
    patch, and progress 150 with an unknown ``customer_id`` is a 422 naming both.
``changes-feed``
    Create, update and delete appear in ``/changes`` as ``upsert``,
    ``upsert``, ``delete`` with strictly increasing ``seq`` (absent: 404).
``feed-has-more``
    Optional: ``has_more`` true on a page cut at ``limit``, false at the end.
``feed-records``
    Optional: ``include=record`` puts the record, as GET returns it, in
    each upsert item.
``webhook-signature``
    A webhook registered at a receiver the check starts itself (on
    ``--webhook-host``, or reachable at ``--webhook-public-url`` for a remote
    PMS) gets a delivery for a new record whose ``X-PMS-Signature`` verifies,
    whose timestamp is fresh, and whose body is a feed item.

A rule passes, fails, finds an optional capability ``absent`` (not a
failure), or is ``skipped``. A PMS that cannot be reached at all raises
:class:`tolken.errors.Unreachable` before any rule runs. Nothing is left
behind (``_cleanup``): a delete probe before any rule creates records (rules
that create are skipped when it fails), every record deleted and confirmed
gone, a sweep of both listings for the run's name tag, the webhook removed
(``DELETE /webhooks/{id}``); whatever remains is listed by id. Use
:func:`run_conformance` from Python; rules live in the :data:`RULES`
registry. :func:`run_configured_check` checks a PMS through the connector
``tolken.yaml`` configures (``rest``, or a Python one) with the
:data:`CONNECTOR_RULES`.
"""

from tolken.conformance._configured import run_configured_check
from tolken.conformance._registry import RULES, Rule, RuleResult
from tolken.conformance._rules_connector import CONNECTOR_RULES
from tolken.conformance._runner import (
    ConformanceReport,
    api_base,
    format_report,
    run_conformance,
)

__all__ = [
    "CONNECTOR_RULES",
    "RULES",
    "ConformanceReport",
    "Rule",
    "RuleResult",
    "api_base",
    "format_report",
    "run_configured_check",
    "run_conformance",
]
