"""The dataflow document (``tolken docs``): an RST QA checklist generated from the mapping.

The same mapping tables drive the sync, so the document cannot drift from
what tolken actually does.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

from tolken.mapping.load import load_mapping, mapping_path_from_config, pms_contract_applies
from tolken.mapping.models import Flow, FlowId, Mapping, MergeRule, Property
from tolken.mapping.normalisers import DESCRIPTIONS
from tolken.mapping.transforms import ConstantTransform

__all__ = ["TITLE", "dataflow_document", "render_dataflow"]

TITLE = "PowerOffice Go to Custom PMS Dataflow"

_FLOW_NOUNS: dict[FlowId, tuple[str, str]] = {
    "departments": ("department", "customer"),
    "customers": ("customer", "customer"),
    "projects": ("project", "project"),
}

_DIRECTION = {
    "both": "both ways",
    "to_pms": "PowerOffice Go → PMS only",
    "to_poweroffice": "PMS → PowerOffice Go only",
}


def _esc(text: str) -> str:
    """Plain text safe inside RST (no accidental markup)."""
    return re.sub(r"([\\`*_|\[\]<>])", r"\\\1", text)


def _lit(text: str) -> str:
    return f"``{text}``" if "`" not in text else _esc(text)


def _heading(text: str, char: str, *, over: bool = False) -> list[str]:
    line = char * len(text)
    return [line, text, line, ""] if over else [text, line, ""]


def _table(title: str, header: list[str], rows: list[list[str]], widths: list[int]) -> list[str]:
    out = [
        f".. list-table:: {title}",
        "   :header-rows: 1",
        f"   :widths: {' '.join(str(w) for w in widths)}",
        "",
    ]
    for row in [header, *rows]:
        first, *rest = row
        out.append(f"   * - {first}")
        out.extend(f"     - {cell}" for cell in rest)
    out.append("")
    return out


def _property_row(prop: Property) -> list[str]:
    po = _lit(prop.poweroffice) if prop.poweroffice else "(constant)"
    pms = _lit(prop.pms)
    if isinstance(prop.transform, ConstantTransform):
        pms = f"{_lit(prop.pms)} = ``{prop.transform.describe().removeprefix('always ')}``"
    notes = [n for n in (prop.converter.describe(), _DIRECTION[prop.direction]) if n]
    if isinstance(prop.transform, ConstantTransform):
        notes = ["set on every PMS record of this flow"]
    if prop.note:
        notes.append(prop.note)
    return [po, pms, prop.type, _esc("; ".join(notes))]


def _rule_row(number: int, rule: MergeRule) -> list[str]:
    if isinstance(rule.normalise, str):
        how = DESCRIPTIONS.get(rule.normalise, rule.normalise)
    else:
        how = getattr(rule.normalise, "__name__", "custom")
    applies = ", ".join(f"{k} = {v}" for k, v in rule.when.items()) or "all records"
    return [str(number), _lit(rule.poweroffice), _lit(rule.pms), _esc(how), _esc(applies)]


def _flow_section(flow_id: FlowId, flow: Flow) -> list[str]:
    po_noun, pms_noun = _FLOW_NOUNS[flow_id]
    title = flow.display_title()
    out = _heading(_esc(title), "=")
    scope = ""
    if flow.pms_filter:
        parts = [
            f"{k} is {' or '.join(str(v) for v in vals)}" for k, vals in flow.pms_filter.items()
        ]
        scope = f" (PMS records where {', '.join(parts)})"
    out += [
        f"Every PowerOffice Go {po_noun} (``{flow.poweroffice}``) is synchronised to a "
        f"Custom PMS {pms_noun} (``{flow.pms}``){_esc(scope)}. Once the two records are "
        "linked they are kept in sync whichever side is edited: an edit in PowerOffice Go "
        "reaches the PMS and an edit in the PMS reaches PowerOffice Go.",
        "",
    ]
    out += _heading(_esc(f"{title}: merge rules"), "-")
    if flow.merge_rules:
        out += [
            "Before creating a PMS record, tolken looks for an existing one. The rules are "
            "tried in order; the first rule that finds exactly one candidate links it. "
            "Ambiguous candidates are reported and never linked automatically "
            "(``tolken link`` links by hand).",
            "",
        ]
        rows = [_rule_row(i, r) for i, r in enumerate(flow.merge_rules, 1)]
        header = ["Order", "PowerOffice property", "PMS property", "Compared", "Applies to"]
        out += _table(f"{_esc(title)}: merge rules", header, rows, [5, 25, 25, 25, 20])
    else:
        out += ["No merge rules: every PowerOffice record gets a new PMS record.", ""]
    out += _heading(_esc(f"{title}: properties"), "-")
    rows = [_property_row(p) for p in flow.properties]
    header = ["PowerOffice property", "PMS property", "PMS data type", "Notes"]
    out += _table(f"{_esc(title)}: synchronised properties", header, rows, [30, 30, 15, 25])
    out += _heading(_esc(f"{title}: QA checklist"), "-")
    out += [
        f"- [ ] A new PowerOffice Go {po_noun} appears in the PMS with every property above.",
        f"- [ ] An existing PMS {pms_noun} matching a merge rule is linked, not duplicated.",
        "- [ ] An edit in the PMS reaches PowerOffice Go; an edit in PowerOffice Go "
        "reaches the PMS.",
        "",
    ]
    return out


def render_dataflow(mapping: Mapping, *, generated: date, source: str = "built-in") -> str:
    """The dataflow document in reStructuredText for ``mapping``."""
    out = _heading(TITLE, "#", over=True)
    out += [
        f":Generated: {generated.isoformat()}",
        f":Mapping: {'built-in default' if source == 'built-in' else _lit(source)}",
        "",
        "tolken keeps PowerOffice Go and the Custom PMS in two-way sync. The flows run "
        f"in this order so references resolve: {', '.join(mapping.order())}.",
        "",
        "A field changed on one side only reaches the other side; a field changed on both "
        "sides is a conflict, settled by the flow's conflict policy with the losing value "
        "recorded. Nothing is hard-deleted: a record deleted in PowerOffice Go makes its PMS "
        "record inactive, and a PMS delete is reported without touching accounting data. "
        "PMS-only records are created in PowerOffice Go only where ``create_in_poweroffice`` "
        "is switched on for the flow.",
        "",
    ]
    for flow_id in mapping.order():
        out += _flow_section(flow_id, mapping.flows[flow_id])
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


def dataflow_document(config: Path | None, *, generated: date, cwd: Path | None = None) -> str:
    """The document for ``tolken docs``: the mapping named by ``config``, else the built-in.

    Without ``config``, ``./tolken.yaml`` is used when it exists (as every other
    command does); only its ``mapping:`` key is read, so secrets need not be set.
    """
    if config is None:
        candidate = (cwd or Path.cwd()) / "tolken.yaml"
        config = candidate if candidate.is_file() else None
    mapping_path = mapping_path_from_config(config) if config is not None else None
    source = str(mapping_path) if mapping_path is not None else "built-in"
    contract = config is None or pms_contract_applies(config)
    mapping = load_mapping(mapping_path, pms_contract=contract)
    return render_dataflow(mapping, generated=generated, source=source)
