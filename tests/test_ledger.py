"""The SQLite ledger: WAL, schema version, append-only events, changes and restore."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from ifa.curation import restore
from ifa.curation.ledger import MIGRATIONS, Change, Ledger
from ifa.errors import IfaError, WorkspaceBusy


def test_new_ledger_is_wal_versioned_with_foreign_keys(ws):
    conn = ws.ledger.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO labels(image_pk, label_id, source) VALUES (999, 1, 'x')")


def test_newer_schema_is_refused(ws):
    ws.ledger.conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    ws.close()
    with pytest.raises(IfaError, match="newer ifa"):
        Ledger(ws.db_path)


def test_event_log_is_append_only(sample_ws):
    conn = sample_ws.ledger.conn
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] >= 3
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE events SET reason = 'x'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM events")


def _first_label(ws, split="train"):
    row = ws.ledger.labels_frame([split]).iloc[0]
    return row.image_id, int(row.label_id)


def test_changes_are_idempotent_and_logged(sample_ws):
    led = sample_ws.ledger
    image, label = _first_label(sample_ws)
    changes = [Change("set_aside", image, reason="too blurry", rule="manual"),
               Change("drop_label", image, label, reason="wrong", rule="manual"),
               Change("add_label", image, 17, reason="is black", rule="manual", source="manual")]
    first = led.apply_changes(changes)
    assert first == {"set_aside": 1, "restore_image": 0, "drop_label": 1, "add_label": 1, "restore_label": 0}
    n_events = len(led.events_frame())
    assert led.apply_changes(changes) == {k: 0 for k in first}
    assert len(led.events_frame()) == n_events  # a no-op writes nothing
    assert led.image(image)["status"] == "set_aside"
    labs = led.image_labels(image).set_index("label_id")
    assert labs.loc[label, "status"] == "dropped" and labs.loc[17, "status"] == "active"
    kinds = led.events_frame(image)["kind"].tolist()
    assert kinds == ["set_aside", "label_dropped", "label_added"]


def test_unknown_image_changes_nothing(sample_ws):
    image, _ = _first_label(sample_ws)
    with pytest.raises(IfaError, match="no image 'nope'"):
        sample_ws.ledger.apply_changes([Change("set_aside", image, rule="r"), Change("set_aside", "nope", rule="r")])
    assert sample_ws.ledger.image(image)["status"] == "active"


def test_restore_by_rule_and_by_image(sample_ws):
    led = sample_ws.ledger
    train = led.labels_frame(["train"]).drop_duplicates("image_id").head(3)
    a, b, c = train["image_id"].tolist()
    la = int(train["label_id"].iloc[0])
    led.apply_changes([Change("set_aside", a, rule="r1"), Change("drop_label", a, la, rule="r1"),
                       Change("set_aside", b, rule="r1"), Change("set_aside", c, rule="r2")])
    dry = restore.restore(led, rule="r1", apply=False)
    assert sorted(dry.images) == sorted([a, b]) and dry.labels == [(a, la)] and not dry.applied
    assert led.image(a)["status"] == "set_aside"
    done = restore.restore(led, rule="r1")
    assert done.applied and led.image(a)["status"] == "active" and led.image(b)["status"] == "active"
    assert led.image(c)["status"] == "set_aside"
    assert led.image_labels(a).set_index("label_id").loc[la, "status"] == "active"
    restore.restore(led, image_id=c)
    assert led.image(c)["status"] == "active"
    last = led.events_frame(c).iloc[-1]
    assert last["kind"] == "restored" and last["rule"] == "r2"
    with pytest.raises(IfaError, match="--rule"):
        restore.restore(led)


def test_second_writer_gets_workspace_busy(sample_ws, tmp_path):
    """Another process holds the write lock: a short-timeout writer says 'busy', a patient
    one waits and succeeds, and the ledger stays intact."""
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from ifa.curation.ledger import Ledger
        led = Ledger({str(sample_ws.db_path)!r})
        with led.transaction():
            print("locked", flush=True)
            time.sleep(3)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        impatient = Ledger(sample_ws.db_path, busy_timeout=0.2)
        image, _ = _first_label(sample_ws)
        with pytest.raises(WorkspaceBusy, match="busy"):
            impatient.apply_changes([Change("set_aside", image, rule="r")])
        patient = Ledger(sample_ws.db_path, busy_timeout=10)
        assert patient.apply_changes([Change("set_aside", image, rule="r")])["set_aside"] == 1
    finally:
        holder.wait(10)
    assert sample_ws.ledger.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_full_disk_says_so_and_leaves_the_ledger_unchanged(sample_ws):
    """SQLite ends the transaction itself on SQLITE_FULL; the ROLLBACK after it used to
    replace "database or disk is full" by "cannot rollback - no transaction is active"."""
    from ifa.curation.ledger import Change
    from ifa.errors import IfaError

    ledger = sample_ws.ledger
    ids = [r[0] for r in ledger.query("SELECT image_id FROM images")]
    state = ledger.query("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM labels)")
    (pages,) = ledger.query("PRAGMA page_count")[0]
    ledger.conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own SQLITE_FULL, as on a full disk
    many = [Change("add_label", i, lab, reason="r" * 200, rule="fill") for i in ids for lab in range(100, 180)]
    with pytest.raises(IfaError) as err:
        ledger.apply_changes(many)
    message = str(err.value)
    assert "database or disk is full" in message and str(sample_ws.root) in message
    assert "the ledger is unchanged" in message and "rollback" not in message and "\n" not in message
    assert not ledger.conn.in_transaction
    assert ledger.query("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM labels)") == state
    ledger.conn.execute("PRAGMA max_page_count = 1073741823")
    assert ledger.apply_changes(many[:1])["add_label"] == 1  # the connection is usable again
