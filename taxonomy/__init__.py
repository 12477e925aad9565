"""The label space: groups, cardinality, name/id maps and the Label Studio config."""

from .labels import Group, Label, Taxonomy
from .labelstudio_config import DISCARD_CHOICE, DISCARD_CONTROL, asked_config, asked_fields, labeling_config

__all__ = ["DISCARD_CHOICE", "DISCARD_CONTROL", "Group", "Label", "Taxonomy", "asked_config", "asked_fields",
           "labeling_config"]
