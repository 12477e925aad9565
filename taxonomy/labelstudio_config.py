"""The Label Studio labeling config (XML), generated from the taxonomy.

Names are fixed so people can script against exports: one Choices control per group,
named after the group; each choice's value is the label name as the label map spells it;
a Choices control `discard` with the single choice `No clear fashion item` (the paper's
third annotator may discard such an image).
"""

from __future__ import annotations

from xml.etree import ElementTree as ET

from .labels import Taxonomy

IMAGE_NAME = "image"
IMAGE_VALUE = "$image"
DISCARD_CONTROL = "discard"
DISCARD_CHOICE = "No clear fashion item"


def labeling_config(taxonomy: Taxonomy) -> str:
    """XML for a Label Studio project: the image, one Choices per group in the taxonomy's
    group order (choice="single" or "multiple" by cardinality), and the discard control."""
    view = ET.Element("View")
    ET.SubElement(view, "Image", name=IMAGE_NAME, value=IMAGE_VALUE, zoom="true")
    for group in taxonomy.groups:
        ET.SubElement(view, "Header", value=group.name.capitalize())
        choices = ET.SubElement(
            view,
            "Choices",
            name=group.name,
            toName=IMAGE_NAME,
            choice=group.cardinality,
            showInline="true",
        )
        for lid in group.label_ids:
            ET.SubElement(choices, "Choice", value=taxonomy.labels[lid].name)
    ET.SubElement(view, "Header", value="Discard")
    discard = ET.SubElement(view, "Choices", name=DISCARD_CONTROL, toName=IMAGE_NAME, choice="single")
    ET.SubElement(discard, "Choice", value=DISCARD_CHOICE)
    ET.indent(view)
    return ET.tostring(view, encoding="unicode")
