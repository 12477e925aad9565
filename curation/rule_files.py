"""Rule files shared by check-attributes and check-images: TOML `[[rule]]` tables whose
defaults a user's file extends (new ids), overrides (keys of an existing id) or replaces
(`extend = false` at the top), and switches off (`enabled = false`)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from ..errors import IfaError


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
        if data.get("extend", True) is False:
            specs = {}
        for r in data["rule"]:
            base = specs.get(r["id"])
            same_kind = base is not None and ("kind" not in r or r["kind"] == base["kind"])
            specs[r["id"]] = {**(base if same_kind else {}), **r, "_source": str(user)}
    return [s for s in specs.values() if s.get("enabled", True) is not False]
