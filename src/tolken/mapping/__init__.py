"""The declarative mapping between PowerOffice Go and the PMS: models, transforms, apply, docs.

Pure data and functions: nothing here does I/O except reading the mapping file.
"""

from tolken.mapping.apply import (
    POProjector,
    belongs,
    canonical,
    merge_key_flat,
    merge_keys,
    pms_changes,
    pms_fields,
    po_projector,
    poweroffice_changes,
    project,
    to_pms,
    to_pms_flat,
    to_poweroffice,
)
from tolken.mapping.load import default_mapping, load_mapping
from tolken.mapping.models import FLOW_IDS, Flow, FlowId, Mapping, MergeRule, Property
from tolken.mapping.normalisers import register_normaliser
from tolken.mapping.paths import flatten, get_path, unflatten
from tolken.mapping.transforms import (
    ApplyContext,
    MappingValueError,
    ReferenceResolver,
    Transform,
    UnresolvedReference,
    register_transform,
)

__all__ = [
    "FLOW_IDS",
    "ApplyContext",
    "Flow",
    "FlowId",
    "Mapping",
    "MappingValueError",
    "MergeRule",
    "POProjector",
    "Property",
    "ReferenceResolver",
    "Transform",
    "UnresolvedReference",
    "belongs",
    "canonical",
    "default_mapping",
    "flatten",
    "get_path",
    "load_mapping",
    "merge_key_flat",
    "merge_keys",
    "pms_changes",
    "pms_fields",
    "po_projector",
    "poweroffice_changes",
    "project",
    "register_normaliser",
    "register_transform",
    "to_pms",
    "to_pms_flat",
    "to_poweroffice",
    "unflatten",
]
