"""The Label Studio labeling config (XML), generated from the taxonomy.

Names are fixed so people can script against exports: one Choices control per group,
named after the group; each choice's value is the label name as the label map spells it;
a Choices control `discard` with the single choice `No clear fashion item` (the paper's
third annotator may discard such an image).

Layout (looked at in headless Chromium at 1440x900, benchmarks/labeling_page_screenshot.py):
the photo on the left and the controls on the right, side by side (a flex View); groups
with many labels (category 105, material 34, pattern 28) sit in a box of bounded height
under a Filter field (Label Studio 1.23's <Filter> narrows a Choices control as one
types), so the annotator types "dre" for Dresses instead of scrolling a wall of 105
checkboxes; small groups are shown inline in full. Filter tags produce no result, so
exports and `answers.parse_result` are unchanged.

A page that asks only some groups (a tie-break under `--when uncertain`, a short check of
flagged labels) uses `asked_config`: the same layout, but each group's choices come from
the task's data (Label Studio's dynamic choices, `<Choices value="$choices_color">`) and
its header too, so a group not asked gets no options and a header saying it is kept
(`asked_fields`). Open-source Label Studio cannot hide a control per task otherwise.
"""

from __future__ import annotations

from typing import Iterable
from xml.etree import ElementTree as ET

from .labels import Taxonomy

IMAGE_NAME = "image"
IMAGE_VALUE = "$image"
DISCARD_CONTROL = "discard"
DISCARD_CHOICE = "No clear fashion item"
# A group with more labels than this gets a Filter field and a scroll box: 21 (color,
# style) still fit in four inline rows at 1440 px; 28 (pattern) no longer do.
FILTER_ABOVE = 24
BOX_PX = {"category": 230}  # the 105 categories: ~9 inline rows visible, the filter does the rest
BOX_DEFAULT_PX = 110
CHOICES_FIELD = "choices_"  # task data of `asked_config`: choices_<group>, header_<group>
HEADER_FIELD = "header_"
NOT_ASKED = ": not asked, kept as it is"

# A grid, not a flex row: Label Studio's Image measures its parent, so as a flex item it
# shrank to nothing (seen in the screenshot); a grid column gives it its width.
_ROW = "display:grid;grid-template-columns:minmax(300px,44%) minmax(0,1fr);gap:16px;align-items:start"
PHOTO_MAX = "100%"
# The controls scroll inside their column, so the photo stays in view while the annotator
# works down the groups (230 px: Label Studio's header, tabs and Submit bar at 1440x900).
_CONTROLS = "max-height:calc(100vh - 230px);overflow-y:auto;padding-right:8px"


def labeling_config(taxonomy: Taxonomy, asked: bool = False) -> str:
    """XML for a Label Studio project: the image beside one Choices per group in the
    taxonomy's group order (choice="single" or "multiple" by cardinality), and the
    discard control. Large groups get a Filter (name `<group>_filter`) and a bounded box.
    asked: the groups' choices and headers come from each task's data (`asked_config`)."""
    # The root View is the row, so the Image stays its first child (scripts look for it there).
    view = ET.Element("View", style=_ROW)
    ET.SubElement(view, "Image", name=IMAGE_NAME, value=IMAGE_VALUE, zoom="true", maxWidth=PHOTO_MAX)
    controls = ET.SubElement(view, "View", style=_CONTROLS)
    for group in taxonomy.groups:
        header = f"${HEADER_FIELD}{group.name}" if asked else group.name.capitalize()
        ET.SubElement(controls, "Header", value=header, size="5")
        parent = controls
        if len(group.label_ids) > FILTER_ABOVE:
            ET.SubElement(controls, "Filter", name=f"{group.name}_filter", toName=group.name, minlength="0",
                          placeholder=f"Type to filter {len(group.label_ids)} {group.name} labels")
            px = BOX_PX.get(group.name, BOX_DEFAULT_PX)
            parent = ET.SubElement(controls, "View", style=f"max-height:{px}px;overflow-y:auto;"
                                                           "border:1px solid #e5e5e5;padding:2px 4px")
        choices = ET.SubElement(
            parent,
            "Choices",
            name=group.name,
            toName=IMAGE_NAME,
            choice=group.cardinality,
            showInline="true",
        )
        if asked:
            choices.set("value", f"${CHOICES_FIELD}{group.name}")
        else:
            for lid in group.label_ids:
                ET.SubElement(choices, "Choice", value=taxonomy.labels[lid].name)
    ET.SubElement(controls, "Header", value="Discard", size="5")
    discard = ET.SubElement(controls, "Choices", name=DISCARD_CONTROL, toName=IMAGE_NAME, choice="single")
    if asked:
        # Label Studio 1.23 rejects a config holding dynamic Choices beside a static Choices
        # with a single Choice ("... is not of type 'array'"), so discard is dynamic too.
        discard.set("value", f"${CHOICES_FIELD}{DISCARD_CONTROL}")
    else:
        ET.SubElement(discard, "Choice", value=DISCARD_CHOICE)
    ET.indent(view)
    return ET.tostring(view, encoding="unicode")


def asked_config(taxonomy: Taxonomy) -> str:
    """The labeling config of a page that asks only some groups: `labeling_config` with
    every group's choices and header read from the task (`asked_fields`)."""
    return labeling_config(taxonomy, asked=True)


def asked_fields(taxonomy: Taxonomy, groups: Iterable[str] | None) -> dict[str, object]:
    """The task data `asked_config` reads: per group, its choices when it is asked (every
    group when `groups` is None) and none otherwise, and its header; the discard choice."""
    wanted = set(taxonomy.group_names if groups is None else groups)
    out: dict[str, object] = {}
    for group in taxonomy.groups:
        on = group.name in wanted
        out[f"{HEADER_FIELD}{group.name}"] = group.name.capitalize() + ("" if on else NOT_ASKED)
        options = [{"value": taxonomy.labels[x].name} for x in group.label_ids]
        out[f"{CHOICES_FIELD}{group.name}"] = options if on else []
    out[f"{CHOICES_FIELD}{DISCARD_CONTROL}"] = [{"value": DISCARD_CHOICE}]
    return out
