"""`ifa curate check-attributes`: violations planted in the imported sample are hit,
exactly; clean images are not; apply, restore and rerun behave."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ifa.curation.attributes import check as attributes
from ifa.curation import restore
from ifa.curation.ledger import Change
from ifa.curation.ledger.review_queue import review_queue
from ifa.curation.attributes.rules import load_rules
from ifa.sample import split_file

# label ids in the iMaterialist map
T_SHIRTS, BLOUSES, DRESSES, SKIRTS, COLLARED, SHORT_SLEEVES, LONG_SLEEVED = 190, 18, 62, 170, 49, 164, 105
SNEAKERS, HEELS, V_NECKS, STRAPLESS, TURTLENECKS, TANK_TOPS = 174, 83, 214, 180, 205, 193
NEUTRAL, MALE = 113, 106
RARE = {SNEAKERS, HEELS, V_NECKS, STRAPLESS, TURTLENECKS, TANK_TOPS, NEUTRAL, MALE}  # < 10 train images once planted


def _annotations(split: str) -> dict[str, list[int]]:
    doc = json.loads(split_file(split).read_text())
    labels = {a["imageId"]: sorted(map(int, a["labelId"])) for a in doc.get("annotations", [])}
    return {im["imageId"]: labels.get(im["imageId"], []) for im in doc["images"]}


@pytest.fixture
def planted(sample_ws, write_json):
    """The sample with one planted image per violation; returns (workspace, names)."""
    train, val = _annotations("train"), _annotations("validation")
    unlabelled = sorted(i for i, labs in train.items() if not labs)  # 10 real photos (hats, shoes)
    tshirt = sorted(i for i, labs in train.items() if labs == [SHORT_SLEEVES, T_SHIRTS])
    val_tshirt = sorted(i for i, labs in val.items() if labs == [SHORT_SLEEVES, T_SHIRTS])
    val_skirt = sorted(i for i, labs in val.items() if labs == [SKIRTS])
    p = {
        "two_categories": tshirt[0],
        "shoe_sleeve": unlabelled[0], "shoe_neckline": unlabelled[1], "strapless": unlabelled[2],
        "tank_sleeves": unlabelled[3], "gender": unlabelled[4], "unknown_active": unlabelled[5],
        "unlabelled": unlabelled[6:], "val_emptied": val_skirt[0], "val_unseen": val_tshirt[0],
        "unknown_quarantined": "planted-unknown",
    }
    add = {
        p["two_categories"]: [BLOUSES],
        p["shoe_sleeve"]: [SNEAKERS, SHORT_SLEEVES],
        p["shoe_neckline"]: [HEELS, V_NECKS],
        p["strapless"]: [DRESSES, STRAPLESS, TURTLENECKS],
        p["tank_sleeves"]: [TANK_TOPS, LONG_SLEEVED],
        p["gender"]: [T_SHIRTS, NEUTRAL, MALE],
        p["unknown_active"]: [T_SHIRTS, 777],
        p["val_unseen"]: [COLLARED],  # T-Shirts never meet Collared in the sample's train split
    }
    ws = sample_ws
    ws.ledger.apply_changes([Change("add_label", i, lab, rule="test-plant", source="test")
                             for i, labs in add.items() for lab in labs])
    ws.ledger.apply_changes([Change("drop_label", p["val_emptied"], SKIRTS, rule="test-plant")])
    # An unknown id through a real import: it is kept, quarantined.
    doc = {"images": [{"imageId": "planted-unknown", "url": "https://example.invalid/x.jpg"}],
           "annotations": [{"imageId": "planted-unknown", "labelId": ["190", "999"]}]}
    from ifa.curation.ingest import importing
    r = importing.import_imat(ws, write_json("extra.json", doc), "validation")
    assert r.quarantined_labels == 1
    return ws, p


def _hit(result, rule: str) -> set[str]:
    return set(result.hits.loc[result.hits["rule"] == rule, "image_id"])


def _model_says(ws, said: dict[str, dict[int, float]]) -> attributes.Evidence:
    """Cross-fitted probabilities in the workspace (where flag-noise writes them) for the
    images of `said` (0.05 for their other labels): the evidence a drop-labels rule weighs."""
    from ifa.curation.noise.model.probs import cross_fitted, write_probs

    tax = ws.taxonomy
    ids = np.array(list(said))
    probs = np.full((len(ids), len(tax.label_ids)), 0.05, dtype=np.float32)
    for r, labels in enumerate(said.values()):
        for label, p in labels.items():
            probs[r, tax.column_of([label])[0]] = p
    return attributes.Evidence(write_probs(cross_fitted(ws.root), ids, tax.label_ids, probs))


def _shoes_evidence(ws, p) -> attributes.Evidence:
    """The model finds the planted shoes' sleeve and neckline less likely than the shoes."""
    return _model_says(ws, {p["shoe_sleeve"]: {SNEAKERS: 0.95, SHORT_SLEEVES: 0.04},
                            p["shoe_neckline"]: {HEELS: 0.9, V_NECKS: 0.05}})


def _expected(p) -> dict[str, set[str]]:
    return {
        "single-group-conflict": {p["two_categories"]},
        "unknown-label": {p["unknown_active"], p["unknown_quarantined"]},
        "no-labels": {*p["unlabelled"], p["val_emptied"]},
        "garment-part-on-non-garment": {p["shoe_sleeve"], p["shoe_neckline"]},
        "garment-part-on-lower-body-garment": set(),  # the sample's real labels break it nowhere
        "strapless-contradiction": {p["strapless"]},
        "sleeveless-top-conflict": {p["tank_sleeves"]},
        "gender-contradiction": {p["gender"]},
        "unseen-pair": set(),  # T-Shirts x Collared: 28 x 28 / 220 = 3.6 expected, under the default 5
        "rare-label": {p["shoe_sleeve"], p["shoe_neckline"], p["strapless"], p["tank_sleeves"], p["gender"]},
    }


def test_each_planted_violation_hits_exactly_its_images(planted):
    ws, p = planted
    result = attributes.check(ws.ledger, ws.taxonomy)
    expected = _expected(p)
    assert {rule: _hit(result, rule) for rule in expected} == expected
    assert set(result.rules) == set(expected)
    # clean images: everything else in the sample, including the 45 unlabelled test images
    flagged = {f["image_id"] for f in result.flagged()}
    assert flagged == set().union(*expected.values())
    assert result.images_checked == 311 and not result.applied
    by_id = result.hits.set_index(["rule", "image_id"])
    assert by_id.loc[("single-group-conflict", p["two_categories"]), "label_ids"] == f"{BLOUSES} {T_SHIRTS}"
    assert by_id.loc[("garment-part-on-non-garment", p["shoe_sleeve"]), "labels"] == "Short Sleeves; Sneakers"
    assert by_id.loc[("unknown-label", p["unknown_quarantined"]), "label_ids"] == "999"
    assert by_id.loc[("no-labels", p["val_emptied"]), "split"] == "validation"
    # a dry run changes nothing
    assert ws.ledger.image(p["two_categories"])["status"] == "active"
    # without cross-fitted probabilities a shoe with one sleeve label is a tie: it goes to review
    assert result.changes == {"set_aside": 10, "drop_label": 0, "review": 3}


def test_split_option_limits_the_images_hit(planted):
    ws, p = planted
    result = attributes.check(ws.ledger, ws.taxonomy, splits=["validation"])
    assert set(result.hits["split"]) == {"validation"}
    assert _hit(result, "unknown-label") == {p["unknown_quarantined"]}
    assert _hit(result, "no-labels") == {p["val_emptied"]}
    assert result.images_checked == 46


def test_apply_restore_and_rerun(planted):
    ws, p = planted
    led = ws.ledger
    result = attributes.check(led, ws.taxonomy, apply=True, probs=_shoes_evidence(ws, p))
    assert result.applied and result.changes == {"set_aside": 10, "drop_label": 2, "review": 1}
    assert led.image(p["two_categories"])["status"] == "set_aside"
    assert led.image(p["two_categories"])["status_rule"] == "single-group-conflict"
    assert led.image(p["unknown_quarantined"])["status_rule"] == "unknown-label"
    # drop-labels took only the garment part, not the shoe
    shoe = led.image_labels(p["shoe_sleeve"]).set_index("label_id")["status"]
    assert shoe[SHORT_SLEEVES] == "dropped" and shoe[SNEAKERS] == "active"
    assert led.image(p["shoe_sleeve"])["status"] == "active"
    queued = review_queue(led)
    assert list(queued["image_id"]) == [p["gender"]] and list(queued["rule"]) == ["gender-contradiction"]
    # one event per change, each naming its rule
    events = led.events_frame()
    mine = events[events["command"] == "test"]
    assert (mine[mine["kind"] == "set_aside"]["rule"].value_counts().to_dict()
            == {"no-labels": 5, "unknown-label": 2, "single-group-conflict": 1, "strapless-contradiction": 1,
                "sleeveless-top-conflict": 1})
    assert set(mine[mine["kind"] == "label_dropped"]["rule"]) == {"garment-part-on-non-garment", "test-plant"}
    assert mine[mine["kind"] == "review_pending"]["rule"].tolist() == ["gender-contradiction"]

    # rerun: nothing new to do; only the report-only rule still lists its (still active) images
    again = attributes.check(led, ws.taxonomy, apply=True)
    assert again.changes == {"set_aside": 0, "drop_label": 0, "review": 0}
    assert {r: v.images for r, v in again.rules.items() if v.images} == {"rare-label": 3}
    assert _hit(again, "rare-label") == {p["shoe_sleeve"], p["shoe_neckline"], p["gender"]}
    assert len(led.events_frame()) == len(events)

    # restore undoes each action, and the next check finds the same problems again
    r = restore.restore(led, rule="garment-part-on-non-garment")
    assert sorted(r.labels) == sorted([(p["shoe_sleeve"], SHORT_SLEEVES), (p["shoe_neckline"], V_NECKS)])
    r = restore.restore(led, rule="gender-contradiction")
    assert r.reviews == [(p["gender"], "gender-contradiction")] and review_queue(led).empty
    r = restore.restore(led, rule="single-group-conflict")
    assert r.images == [p["two_categories"]]
    after = attributes.check(led, ws.taxonomy)
    assert _hit(after, "garment-part-on-non-garment") == {p["shoe_sleeve"], p["shoe_neckline"]}
    assert _hit(after, "gender-contradiction") == {p["gender"]}
    assert _hit(after, "single-group-conflict") == {p["two_categories"]}
    assert _hit(after, "no-labels") == set()  # still set aside: only its own rule's restore brings them back


def test_reports_and_review_file(planted):
    ws, p = planted
    _shoes_evidence(ws, p)
    result = attributes.run(ws, apply=True)
    csv = Path(result.report_csv)
    assert csv.name.startswith("check-attributes-") and csv.parent == ws.reports_dir
    import pandas as pd
    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    assert list(table.columns) == ["image_id", "split", "rule", "label_ids", "labels", "action", "decision"]
    assert len(table) == sum(len(v) for v in _expected(p).values())
    row = table[(table["rule"] == "strapless-contradiction")].iloc[0]
    assert (row["image_id"], row["label_ids"], row["action"]) == (p["strapless"], f"{STRAPLESS} {TURTLENECKS}", "set-aside")
    html = Path(result.report_html).read_text()
    assert "strapless-contradiction: 1 images" in html
    assert html.count("data:image/jpeg;base64,") >= 10  # the sample's photos are local: thumbnails
    assert "no local image" in html  # planted-unknown has only a URL
    assert "Strapless with Turtlenecks: A turtleneck is a high collar" in html
    assert "with any sleeve label or any neckline label" in html  # each pair's why is in the report
    assert "drops Short Sleeves: the model finds it less likely (p 0.04) than Sneakers (p 0.95)" in html  # which side, why
    review = Path(result.review_files["train"])
    assert review.read_text().split() == [p["gender"]]


def test_lower_body_garments_have_no_sleeve_or_neckline(sample_ws):
    """A neckline on a skirt and a sleeve on shorts are dropped; the garment and its other
    labels stay, and a skirt without them is not hit."""
    ws = sample_ws
    train = _annotations("train")
    skirts = sorted(i for i, labs in train.items() if SKIRTS in labs)
    shorts = sorted(i for i, labs in train.items() if 165 in labs)  # 165: Shorts
    assert len(skirts) >= 2 and shorts
    ws.ledger.apply_changes([Change("add_label", skirts[0], V_NECKS, rule="test-plant"),
                             Change("add_label", shorts[0], SHORT_SLEEVES, rule="test-plant")])
    evidence = _model_says(ws, {skirts[0]: {SKIRTS: 0.9, V_NECKS: 0.1}, shorts[0]: {165: 0.9, SHORT_SLEEVES: 0.2}})
    result = attributes.check(ws.ledger, ws.taxonomy, apply=True, probs=evidence)
    assert _hit(result, "garment-part-on-lower-body-garment") == {skirts[0], shorts[0]}
    assert ws.ledger.image_labels(skirts[0]).set_index("label_id").loc[[V_NECKS, SKIRTS], "status"].tolist() == ["dropped", "active"]
    assert ws.ledger.image_labels(shorts[0]).set_index("label_id").loc[SHORT_SLEEVES, "status"] == "dropped"
    assert ws.ledger.image(skirts[0])["status"] == "active"


def test_unseen_pair_with_a_lower_expectation(planted, tmp_path):
    ws, p = planted
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nid = "unseen-pair"\nmin_expected = 0.5\n')
    result = attributes.check(ws.ledger, ws.taxonomy, load_rules(rules, ws.taxonomy))
    assert _hit(result, "unseen-pair") == {p["val_unseen"]}
    row = result.hits[result.hits["rule"] == "unseen-pair"].iloc[0]
    assert row["label_ids"] == f"{COLLARED} {T_SHIRTS}" and row["action"] == "report"


def test_rules_file_extends_overrides_and_replaces(planted, tmp_path):
    ws, p = planted
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nid = "gender-contradiction"\naction = "set-aside"\n\n'
        '[[rule]]\nid = "rare-label"\nenabled = false\n\n'
        '[[rule]]\nid = "skirt-with-sleeves"\nkind = "contradiction"\ndescription = "Skirts have no sleeves"\n'
        'severity = "error"\naction = "drop-labels"\n'
        '  [[rule.pair]]\n  a = ["skirts"]\n  b_groups = ["sleeve"]\n  why = "A skirt covers the legs only."\n'
    )
    skirt = sorted(i for i, labs in _annotations("train").items() if labs == [SKIRTS])[0]
    ws.ledger.apply_changes([Change("add_label", skirt, LONG_SLEEVED, rule="test-plant")])
    ruleset = load_rules(rules, ws.taxonomy)
    assert "rare-label" not in [r.id for r in ruleset] and ruleset.get("gender-contradiction").action == "set-aside"
    result = attributes.check(ws.ledger, ws.taxonomy, ruleset, apply=True,
                              probs=_model_says(ws, {skirt: {SKIRTS: 0.9, LONG_SLEEVED: 0.1}}))
    assert _hit(result, "skirt-with-sleeves") == {skirt}
    assert ws.ledger.image_labels(skirt).set_index("label_id").loc[LONG_SLEEVED, "status"] == "dropped"
    assert ws.ledger.image(p["gender"])["status_rule"] == "gender-contradiction"

    only = tmp_path / "only.toml"
    only.write_text('extend = false\n[[rule]]\nid = "empty"\nkind = "no-labels"\ndescription = "x"\naction = "report"\n')
    assert [r.id for r in load_rules(only, ws.taxonomy)] == ["empty"]


@pytest.mark.parametrize("text, message", [
    ('[[rule]]\nid = "x"\nkind = "nope"\ndescription = "d"\naction = "report"\n', "kind must be one of"),
    ('[[rule]]\nid = "x"\nkind = "contradiction"\ndescription = "d"\naction = "review"\n'
     '[[rule.pair]]\na = ["Strapples"]\nb = ["Collared"]\nwhy = "w"\n', "Did you mean 'Strapless'"),
    ('[[rule]]\nid = "x"\nkind = "contradiction"\ndescription = "d"\naction = "review"\n'
     '[[rule.pair]]\na = ["Strapless"]\nb = ["Collared"]\n', "say why"),
    ('[[rule]]\nid = "x"\nkind = "rare-label"\ndescription = "d"\naction = "set-aside"\n', "action must be one of report"),
    ('[[rule]]\nid = "x"\nkind = "no-labels"\ndescription = "d"\naction = "report"\nsplits = ["dev"]\n', "splits must be"),
    ('[[rule]]\nid = "x"\nkind = "no-labels"\ndescription = "d"\naction = "report"\nmin_images = 3\n', "unknown key(s) min_images"),
    ('[[rule]]\nid = "x"\nkind = "no-labels"\ndescription = "d"\naction = "report"\n[[rule]]\nid = "x"\n', "appears twice"),
    ('[[rule]]\nid = "import"\n', "reserved"),
    ('[[rule]]\nid = "duplicate"\nkind = "no-labels"\ndescription = "d"\naction = "set-aside"\n', "rule 1: id 'duplicate' is reserved"),
    ('[[rule]]\nid = "flag-noise"\n', "id 'flag-noise' is reserved"),
    ('[[rule]]\nid = "fetch"\n', "id 'fetch' is reserved"),
    ('[[rule]]\nid = "review:r1"\n', "id 'review:r1' is reserved"),
    ('[[rule]]\nid = "blurry"\n', "id 'blurry' is a rule of `ifa curate check-images`"),
    ('[[rule]]\nid = "unseen-pair"\nmin_expected = nan\n', "min_expected must be a finite number >= 0, not nan"),
    ('[[rule]]\nid = "unseen-pair"\nmin_expected = inf\n', "min_expected must be a finite number >= 0, not inf"),
    ('[[rule]\nid = "x"\n', "not valid TOML"),
    ('rules = 3\n', "unknown top-level key"),
    ('[[rule]]\nid = "single-group-conflict"\ngroups = ["colour"]\n', "unknown group 'colour'"),
])
def test_bad_rules_files_say_what_is_wrong(tmp_path, text, message):
    from ifa.errors import IfaError
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(IfaError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_rules(path)


def test_default_rules_name_real_labels():
    """Every shipped rule compiles against the official map (a renamed label would fail
    here), and the shoe list is the lead's 19 footwear and shoe-accessory categories."""
    rules = load_rules()
    shoes = rules.get("garment-part-on-non-garment").finder.pairs[0][0]
    from ifa.taxonomy import Taxonomy
    tax = Taxonomy.default()
    assert len(shoes) == 19 and {tax.labels[int(i)].group for i in tax.label_ids[shoes]} == {"category"}
    for rule in rules:
        assert rule.description and rule.action in ("set-aside", "drop-labels", "review", "report")
        for a, b, why in getattr(rule.finder, "pairs", []):
            assert len(why) > 20


def test_cli_check_attributes_json_apply_and_restore(tmp_path, cli):
    from ifa.sample import IMAGES_DIR

    def run(*args):
        return cli.ok(*args, "--workspace", str(tmp_path / "ws"))

    run("init")
    for split in ("train", "validation", "test"):
        run("import", "imat", str(split_file(split)), "--split", split, "--images", str(IMAGES_DIR))
    data = json.loads(run("curate", "check-attributes", "--json").stdout)
    assert set(data) == {"rules", "flagged", "applied"} and data["applied"] is False
    assert data["rules"]["no-labels"] == {"images": 10, "action": "set-aside"}
    assert all(set(v) == {"images", "action"} for v in data["rules"].values())
    assert len(data["flagged"]) == 10
    assert all(set(f) == {"image_id", "split", "rules"} and f["rules"] == ["no-labels"] and f["split"] == "train"
               for f in data["flagged"])
    applied = json.loads(run("curate", "check-attributes", "--apply", "--json").stdout)
    assert applied["applied"] is True and len(applied["flagged"]) == 10
    text = run("curate", "check-attributes", "--split", "train", "--apply")
    assert "0 images set aside" in text.output and "check-attributes-" in text.output
    restored = json.loads(run("curate", "restore", "--rule", "no-labels", "--json").stdout)
    assert len(restored["images"]) == 10 and restored["reviews"] == []
    bad = cli("curate", "check-attributes", "--split", "dev", "--workspace", str(tmp_path / "ws"))
    assert bad.exit_code != 0


def test_vectorised_rules_agree_with_a_per_image_loop(tmp_path):
    """The benchmark's peer, a plain loop over images, is an independent statement of each
    rule; on synthetic data with every kind of problem planted, the hits must be equal."""
    from ifa.benchmarks.check_scale import build, loop_check, vector_hits
    from ifa.curation.ledger import Ledger
    from ifa.curation.ledger.arrays import label_arrays
    from ifa.taxonomy import Taxonomy

    root = build(tmp_path / "synthetic", 6000, seed=3)
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text('[[rule]]\nid = "unseen-pair"\nmin_expected = 1.0\n\n[[rule]]\nid = "rare-label"\nmin_images = 40\n')
    tax = Taxonomy.default()
    rules = load_rules(rules_file, tax)
    with Ledger(root / "ifa.db") as led:
        arrays = label_arrays(led)
    loop, vec = loop_check(arrays, tax, rules), vector_hits(arrays, tax, rules)
    assert all(loop.values()), {k: len(v) for k, v in loop.items()}  # every rule has hits to compare
    assert vec == loop
    only_val = ["validation"]
    assert vector_hits(arrays, tax, rules, only_val) == loop_check(arrays, tax, rules, only_val)


def test_default_rules_on_another_taxonomy_skip_what_it_lacks(tmp_path):
    from ifa.taxonomy import Taxonomy

    (tmp_path / "labels.csv").write_text("labelId,taskId,labelName,taskName\n1,1,Shirt,category\n2,1,Shoe,category\n"
                                         "3,2,Long Sleeved,sleeve\n")
    (tmp_path / "groups.csv").write_text("group,cardinality\ncategory,single\nsleeve,single\n")
    tax = Taxonomy.load(tmp_path / "labels.csv", tmp_path / "groups.csv")
    rules = load_rules(None, tax)
    assert [r.id for r in rules] == ["single-group-conflict", "unknown-label", "no-labels", "unseen-pair", "rare-label"]
    skipped = " ".join(rules.notes)
    for rule_id in ("garment-part-on-non-garment", "strapless-contradiction", "sleeveless-top-conflict", "gender-contradiction"):
        assert rule_id in skipped


def test_streamed_json_is_the_json_of_to_dict(planted, write_json):
    """`--json` is streamed from arrays; its text must be exactly json.dumps of to_dict(),
    also for images hit by several rules and ids that JSON has to escape."""
    ws, p = planted
    odd = ['quote"d', "back\\slash", "tab\there", "naïve-ü"]
    from ifa.curation.ingest import importing
    importing.import_imat(ws, write_json("odd.json", {"images": [{"imageId": i} for i in odd]}), "train")
    result = attributes.check(ws.ledger, ws.taxonomy)
    assert {f["image_id"] for f in result.flagged()} >= set(odd)
    assert any(len(f["rules"]) > 1 for f in result.flagged())
    text = "".join(result.json_chunks(chunk=3))
    assert text == json.dumps(result.to_dict(), indent=2, ensure_ascii=False)
    clean = attributes.check(ws.ledger, ws.taxonomy, splits=["test"])
    assert "".join(clean.json_chunks()) == json.dumps(clean.to_dict(), indent=2, ensure_ascii=False)


SLIPPERS, FEMALE = 172, 66


def _shirt_labelled_slippers(ws):
    """A real T-shirt photo of the sample labelled as Myntra's image 10804 was: Slippers +
    Collared + its own Short Sleeves (the category is the wrong side); and a real shoe photo
    labelled Sneakers + Short Sleeves (the sleeve is). Returns (shirt id, shoe id)."""
    train = _annotations("train")
    shirt = sorted(i for i, labs in train.items() if labs == [SHORT_SLEEVES, T_SHIRTS])[0]
    shoe = sorted(i for i, labs in train.items() if not labs)[0]
    ws.ledger.apply_changes([Change("drop_label", shirt, T_SHIRTS, rule="test-plant")]
                            + [Change("add_label", shirt, l, rule="test-plant", source="test") for l in (SLIPPERS, COLLARED)]
                            + [Change("add_label", shoe, l, rule="test-plant", source="test") for l in (SNEAKERS, SHORT_SLEEVES)])
    return shirt, shoe


def _status(ws, image_id: str) -> dict[int, str]:
    return ws.ledger.image_labels(image_id).set_index("label_id")["status"].to_dict()


def test_drop_labels_without_probabilities_sends_the_outnumbered_side_to_review(sample_ws):
    """Without cross-fitted probabilities, a drop-labels rule removes only fewer labels than it
    keeps: the shirt labelled Slippers keeps Collared and Short Sleeves and goes to review, and
    so does the shoe with one sleeve label (a tie). The report says which side and why."""
    ws = sample_ws
    shirt, shoe = _shirt_labelled_slippers(ws)
    result = attributes.run(ws, apply=True)
    assert _status(ws, shirt) == {SLIPPERS: "active", COLLARED: "active", SHORT_SLEEVES: "active", T_SHIRTS: "dropped"}
    assert _status(ws, shoe)[SHORT_SLEEVES] == "active" and _status(ws, shoe)[SNEAKERS] == "active"
    queued = review_queue(ws.ledger, rules=["garment-part-on-non-garment"], statuses=("pending",))
    assert set(queued["image_id"]) == {shirt, shoe}
    rows = result.hits[result.hits["rule"] == "garment-part-on-non-garment"].set_index("image_id")
    assert rows.loc[shirt, "decision"].startswith("to review: dropping Collared, Short Sleeves would remove as many")
    assert rows.loc[shoe, "decision"].startswith("to review: dropping Short Sleeves would remove as many labels as it keeps (Sneakers)")
    assert set(Path(result.review_files["train"]).read_text().split()) == {shirt, shoe}
    again = attributes.check(ws.ledger, ws.taxonomy, apply=True)  # queued, so not hit again
    assert again.changes == {"set_aside": 0, "drop_label": 0, "review": 0}


def test_drop_labels_drops_the_side_the_model_finds_less_likely(sample_ws):
    """With flag-noise's cross-fitted probabilities in the workspace, the side the model finds
    less likely goes: Slippers on the shirt, Short Sleeves on the shoe."""
    from ifa.curation.noise.model.probs import cross_fitted, write_probs

    ws = sample_ws
    shirt, shoe = _shirt_labelled_slippers(ws)
    tax = ws.taxonomy
    ids = ws.ledger.images_frame(["train"])["image_id"].to_numpy()
    probs = np.full((len(ids), len(tax.label_ids)), 0.05, dtype=np.float32)
    col = lambda l: tax.column_of([l])[0]  # noqa: E731
    row = {i: r for r, i in enumerate(ids)}
    probs[row[shirt], [col(SLIPPERS), col(COLLARED), col(SHORT_SLEEVES)]] = [0.02, 0.81, 0.9]
    probs[row[shoe], [col(SNEAKERS), col(SHORT_SLEEVES)]] = [0.95, 0.04]
    write_probs(cross_fitted(ws.root), ids, tax.label_ids, probs)
    result = attributes.run(ws, apply=True)
    assert _status(ws, shirt) == {SLIPPERS: "dropped", COLLARED: "active", SHORT_SLEEVES: "active", T_SHIRTS: "dropped"}
    assert _status(ws, shoe)[SHORT_SLEEVES] == "dropped" and _status(ws, shoe)[SNEAKERS] == "active"
    rows = result.hits[result.hits["rule"] == "garment-part-on-non-garment"].set_index("image_id")
    assert rows.loc[shirt, "decision"] == "drops Slippers: the model finds it less likely (p 0.02) than Collared, Short Sleeves (p 0.90)"
    assert rows.loc[shoe, "decision"] == "drops Short Sleeves: the model finds it less likely (p 0.04) than Sneakers (p 0.95)"
    assert "drops Slippers: the model finds it less likely" in Path(result.report_html).read_text()
    assert review_queue(ws.ledger, rules=["garment-part-on-non-garment"], statuses=None).empty


def test_male_with_female_is_a_contradiction(sample_ws):
    ws = sample_ws
    shirt = sorted(i for i, labs in _annotations("train").items() if labs == [SHORT_SLEEVES, T_SHIRTS])[0]
    ws.ledger.apply_changes([Change("add_label", shirt, l, rule="test-plant", source="test") for l in (MALE, FEMALE)])
    result = attributes.check(ws.ledger, ws.taxonomy)
    row = result.hits[result.hits["rule"] == "gender-contradiction"]
    assert row["image_id"].tolist() == [shirt] and row["label_ids"].tolist() == [f"{FEMALE} {MALE}"]
    assert "Male with Female: An item is made for men or for women" in " ".join(result.rules["gender-contradiction"].details)


def test_drop_labels_weighs_only_evidence_the_model_believes(sample_ws):
    """Probabilities under one half on both sides (a model that believes neither) are no
    evidence: the shoe with one sleeve label goes to review, as without probabilities."""
    ws = sample_ws
    shirt, shoe = _shirt_labelled_slippers(ws)
    evidence = _model_says(ws, {shoe: {SNEAKERS: 0.09, SHORT_SLEEVES: 0.02}})
    result = attributes.check(ws.ledger, ws.taxonomy, apply=True, probs=evidence)
    assert _status(ws, shoe)[SHORT_SLEEVES] == "active"
    rows = result.hits[result.hits["rule"] == "garment-part-on-non-garment"].set_index("image_id")
    assert rows.loc[shoe, "decision"].startswith("to review")


def test_a_user_rule_cannot_take_a_built_in_id(sample_ws, tmp_path):
    """A rule named `unreadable-file` once set 18 images aside that `curate dedup --apply`
    then silently restored: such a rules file is refused in one line naming the rule."""
    import os
    import subprocess
    import sys

    from ifa.curation.workspace import Workspace

    before = sample_ws.ledger.query("SELECT status, count(*) FROM images GROUP BY status")
    sample_ws.close()
    rules = tmp_path / "r.toml"
    rules.write_text('[[rule]]\nid = "unreadable-file"\nkind = "no-labels"\ndescription = "d"\naction = "set-aside"\n')
    proc = subprocess.run([sys.executable, "-m", "ifa.cli.app", "curate", "check-attributes", "--rules", str(rules),
                           "--apply", "--workspace", str(sample_ws.root)], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "400"})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "'unreadable-file' is reserved" in lines[0], proc.stderr
    with Workspace.open(sample_ws.root) as ws:
        assert ws.ledger.query("SELECT status, count(*) FROM images GROUP BY status") == before
