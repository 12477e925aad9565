"""Rule files shared by check-attributes and check-images: TOML `[[rule]]` tables whose
defaults a user's file extends (new ids), overrides (keys of an existing id) or replaces
(`extend = false` at the top), and switches off (`enabled = false`)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Callable

from ..errors import IfaError


# The rules ifa's own commands write (import, fetch, dedup, flag-noise, browse, review rounds,
# restore): a user rule under one of these ids would mix its changes with theirs, and that
# command would then undo them (dedup --apply restores every readable "unreadable-file" image).
RESERVED_IDS = frozenset({"import", "fetch", "duplicate", "unreadable-file", "flag-noise", "browse"})
RESERVED_PREFIXES = ("import:", "review:", "undo:")


def refuse_reserved(path: Path, n: int, rule_id, others: frozenset = frozenset(), owner: str = "") -> None:
    """IfaError, one line naming the rule, when rule `n` of the user's rules file `path`
    takes an id that ifa's own commands write (`RESERVED_IDS`, `RESERVED_PREFIXES`) or one of
    `others`, the default rule ids of another command (`owner`)."""
    if not isinstance(rule_id, str):
        return
    if rule_id in RESERVED_IDS or rule_id.startswith(RESERVED_PREFIXES):
        raise IfaError(f"{path}, rule {n}: id {rule_id!r} is reserved for ifa's own commands (reserved: "
                       f"{', '.join(sorted(RESERVED_IDS))} and ids beginning {', '.join(RESERVED_PREFIXES)}); pick another.")
    if rule_id in others:
        raise IfaError(f"{path}, rule {n}: id {rule_id!r} is a rule of {owner}; pick another, so that "
                       f"`ifa curate restore --rule {rule_id}` undoes only one command's changes.")


def rule_ids(path: Path) -> frozenset:
    """The ids of the rules in a defaults file (another command's, for `refuse_reserved`)."""
    return frozenset(r["id"] for r in read_rule_file(path)["rule"])


_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def read_rule_file(path: Path, reserved: Callable[[int, object], None] | None = None) -> dict:
    """The parsed TOML file with its `extend` flag and `rule` list checked (ids well formed
    and distinct; `reserved(n, id)` may refuse an id). Raises IfaError naming the file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IfaError(f"Rules file {path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise IfaError(f"Cannot read the rules file {path}: {exc}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise IfaError(f"Rules file {path} is not valid TOML: {exc}.") from None
    unknown = set(data) - {"extend", "rule"}
    if unknown:
        raise IfaError(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))}; "
                       "a rules file holds `extend = true|false` and [[rule]] tables.")
    if "extend" in data and not isinstance(data["extend"], bool):
        raise IfaError(f"{path}: extend must be true or false.")
    rules = data.get("rule", [])
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise IfaError(f"{path}: write each rule as a [[rule]] table.")
    seen: set[str] = set()
    for n, r in enumerate(rules, start=1):
        rid = r.get("id")
        if reserved is not None:
            reserved(n, rid)
        if not isinstance(rid, str) or not _ID.match(rid):
            raise IfaError(f"{path}, rule {n}: id must be letters, digits, '-', '_' or '.', e.g. id = \"my-rule\".")
        if rid in seen:
            raise IfaError(f"{path}: rule id {rid!r} appears twice.")
        seen.add(rid)
    data["rule"] = rules
    return data


def merged_specs(defaults: Path, user: Path | None, others: frozenset = frozenset(),
                 owner: str = "") -> tuple[list[dict], list[str]]:
    """The rule specs of `defaults` as extended by the user's file (a rule with a new id is
    added, one with a default's id overrides the keys it sets, `extend = false` keeps only
    the user's), without those switched off (`enabled = false`); each spec carries
    `_source`, the file that last set it. A user rule may not take a reserved id nor one of
    `others` (another command's default ids, `owner`). Returns (specs, files read)."""
    specs = {r["id"]: {**r, "_source": str(defaults)} for r in read_rule_file(defaults)["rule"]}
    sources = [str(defaults)]
    if user is not None:
        data = read_rule_file(user, lambda n, rid: refuse_reserved(user, n, rid, others, owner))
        if data.get("extend", True) is False:
            specs, sources = {}, []
        sources.append(str(user))
        for r in data["rule"]:
            base = specs.get(r["id"])
            same_kind = base is not None and ("kind" not in r or r["kind"] == base["kind"])
            specs[r["id"]] = {**(base if same_kind else {}), **r, "_source": str(user)}
    return [s for s in specs.values() if s.get("enabled", True) is not False], sources
