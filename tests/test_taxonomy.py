"""The label space: the shipped 228-label map, lookups, custom taxonomies, the LS config."""

from __future__ import annotations

from xml.etree import ElementTree as ET

import pytest

from ifa.errors import IfaError, UnknownLabel
from ifa.taxonomy import DISCARD_CHOICE, Taxonomy, labeling_config

PAPER_GROUPS = {  # Table 1: classes and cardinality
    "category": (105, "single"), "color": (21, "multiple"), "gender": (3, "multiple"), "material": (34, "multiple"),
    "neckline": (11, "single"), "pattern": (28, "multiple"), "sleeve": (5, "single"), "style": (21, "single"),
}


def test_default_matches_the_paper():
    tax = Taxonomy.default()
    assert len(tax) == 228
    assert list(tax.group_names) == list(PAPER_GROUPS)
    for g in tax.groups:
        assert (len(g.label_ids), g.cardinality) == PAPER_GROUPS[g.name]


def test_lookups_by_id_and_name():
    tax = Taxonomy.default()
    assert tax.by_id(83).name == "Heels"
    assert tax.by_id("83").group == "category"
    assert tax.by_name("  heels ").id == 83
    assert tax.by_name("HOSIERY,   stockings, tights").id == 89  # the one name with commas
    assert tax.lookup("17").name == "Black" and tax.lookup("black").id == 17


def test_unknown_names_suggest_the_nearest():
    tax = Taxonomy.default()
    with pytest.raises(UnknownLabel, match="Sneakers"):
        tax.by_name("Sneaker")
    with pytest.raises(UnknownLabel, match="Turtlenecks"):
        tax.by_name("turtle necks")
    with pytest.raises(UnknownLabel, match="ids run from 1 to 228"):
        tax.by_id(999)


def test_vector_helpers_agree_with_lookups():
    tax = Taxonomy.default()
    cols = tax.column_of([83, 999, 1])
    assert tax.label_ids[cols[0]] == 83 and cols[1] == -1 and cols[2] == 0
    assert tax.groups[tax.group_index[cols[0]]].name == "category"


def test_labeling_config_lists_every_label_once():
    tax = Taxonomy.default()
    root = ET.fromstring(labeling_config(tax))
    controls = {c.get("name"): c for c in root.iter("Choices")}
    assert list(controls) == [*PAPER_GROUPS, "discard"]
    values = [ch.get("value") for name, c in controls.items() if name != "discard" for ch in c.iter("Choice")]
    assert len(values) == 228 and len(set(values)) == 228
    assert set(values) == {lab.name for lab in tax.labels.values()}
    for name, (_, card) in PAPER_GROUPS.items():
        assert controls[name].get("choice") == card and controls[name].get("toName") == "image"
    assert [c.get("value") for c in controls["discard"].iter("Choice")] == [DISCARD_CHOICE]
    assert root.find("Image").get("value") == "$image"


def test_custom_taxonomy(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("labelId,taskId,labelName,taskName\n1,1,Cat,animal\n2,1,Dog,animal\n3,2,Indoor,place\n4,2,Outdoor,place\n")
    groups = tmp_path / "groups.csv"
    groups.write_text("group,cardinality\nanimal,multiple\nplace,single\n")
    tax = Taxonomy.load(labels, groups)
    assert len(tax) == 4 and tax.group("place").single and not tax.group("animal").single
    assert len(ET.fromstring(labeling_config(tax)).findall(".//Choice")) == 5  # 4 labels + discard


def test_custom_taxonomy_errors_name_the_problem(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("labelId,taskId,labelName,taskName\n1,1,Cat,animal\n")
    groups = tmp_path / "groups.csv"
    groups.write_text("group,cardinality\nanimal,several\n")
    with pytest.raises(IfaError, match="line 2: cardinality must be"):
        Taxonomy.load(labels, groups)
    groups.write_text("group,cardinality\nplace,single\n")
    with pytest.raises(IfaError, match="group 'animal' is not in"):
        Taxonomy.load(labels, groups)


def test_asked_config_reads_each_group_from_the_task():
    """A page asking only some groups: every group's choices and header come from the
    task, so a group not asked has none; the blind config is unchanged."""
    from ifa.taxonomy import asked_config, asked_fields

    tax = Taxonomy.default()
    root = ET.fromstring(asked_config(tax))
    controls = {c.get("name"): c for c in root.iter("Choices")}
    assert list(controls) == [*PAPER_GROUPS, "discard"] and not root.findall(".//Choice")
    assert {c.get("value") for c in controls.values()} == {f"$choices_{g}" for g in [*PAPER_GROUPS, "discard"]}
    fields = asked_fields(tax, ["color", "sleeve"])
    offered = {g: [o["value"] for o in fields[f"choices_{g}"]] for g in PAPER_GROUPS}
    assert {g for g, names in offered.items() if names} == {"color", "sleeve"}
    assert offered["color"] == [tax.labels[x].name for x in tax.group("color").label_ids]
    assert fields["header_color"] == "Color" and fields["header_category"].startswith("Category: not asked")
    assert fields["choices_discard"] == [{"value": DISCARD_CHOICE}]
    every = asked_fields(tax, None)  # a tie-break under --when any asks every group
    assert all(every[f"choices_{g}"] and every[f"header_{g}"] == g.capitalize() for g in PAPER_GROUPS)
