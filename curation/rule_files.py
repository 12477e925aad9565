"""Rule files shared by check-attributes and check-images: TOML `[[rule]]` tables whose
defaults a user's file extends (new ids), overrides (keys of an existing id) or replaces
(`extend = false` at the top), and switches off (`enabled = false`)."""

from __future__ import annotations

import tomllib
from pathlib import Path

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


def read_rule_file(path: Path) -> dict:
    """The parsed TOML file with its `rule` list checked. Raises IfaError naming the file."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IfaError(f"Rules file not found: {path}.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise IfaError(f"Cannot read the rules file {path}: {exc}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise IfaError(f"{path} is not valid TOML: {exc}.") from None
    rules = data.get("rule", [])
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise IfaError(f"{path}: rules are [[rule]] tables.")
    for k, r in enumerate(rules, 1):
        if not isinstance(r.get("id"), str) or not r["id"]:
            raise IfaError(f"{path}: rule {k} has no id.")
    data["rule"] = rules
    return data


def merged_specs(defaults: Path, user: Path | None) -> list[dict]:
    """The enabled rule specs of `defaults` as extended by `user`; each carries `_source`,
    the file that last set it."""
    specs = {r["id"]: {**r, "_source": str(defaults)} for r in read_rule_file(defaults)["rule"]}
    if user is not None:
        data = read_rule_file(user)
        from .attributes.rules import DEFAULT_RULES as ATTRIBUTE_RULES  # the other rules command's ids
        attribute_ids = rule_ids(ATTRIBUTE_RULES)
        for n, r in enumerate(data["rule"], 1):
            refuse_reserved(user, n, r["id"], attribute_ids, "`ifa curate check-attributes`")
        if data.get("extend", True) is False:
            specs = {}
        for r in data["rule"]:
            base = specs.get(r["id"])
            same_kind = base is not None and ("kind" not in r or r["kind"] == base["kind"])
            specs[r["id"]] = {**(base if same_kind else {}), **r, "_source": str(user)}
    return [s for s in specs.values() if s.get("enabled", True) is not False]
