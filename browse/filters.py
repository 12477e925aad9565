"""The slice a request asks for: query parameters -> `BrowseFilter`, checked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..curation.ledger import check_splits
from ..curation.ledger.browse import BrowseFilter
from ..errors import IfaError
from ..taxonomy import Taxonomy

IMAGE_STATUSES = ("active", "set_aside")
DECISIONS = ("agreed", "tiebreak", "discarded")
PARAMS = ("split", "status", "rule", "label", "group", "source", "flagged", "cluster", "problem", "round", "decision",
          "limit", "after", "token")
MAX_LIMIT = 500


def parse_filter(query: Mapping[str, Sequence[str]], taxonomy: Taxonomy) -> BrowseFilter:
    """The slice named by a parsed query string (name -> values, as urllib's parse_qs
    gives). `label` may repeat (all of them) and takes names or ids; `group` is a
    taxonomy group (any of its labels); flagged, cluster and problem take 1.
    Raises IfaError for an unknown parameter, split, status, label, group or decision."""
    unknown = sorted(set(query) - set(PARAMS))
    if unknown:
        raise IfaError(f"Unknown filter {', '.join(unknown)}; use {', '.join(PARAMS[:-3])}.")

    def one(name: str) -> str | None:
        values = [v for v in query.get(name, []) if v != ""]
        return values[-1] if values else None

    split, status, decision = one("split"), one("status"), one("decision")
    check_splits(split)
    _check(status, IMAGE_STATUSES, "status")
    _check(decision, DECISIONS, "decision")
    labels = tuple(dict.fromkeys(taxonomy.lookup(v).id for v in query.get("label", []) if v != ""))
    group = one("group")
    if group is not None and group not in taxonomy.group_names:
        raise IfaError(f"Unknown group {group!r}; use one of {', '.join(taxonomy.group_names)}.")
    return BrowseFilter(split=split, status=status, rule=one("rule"), labels=labels,
                        any_labels=taxonomy.group(group).label_ids if group else (), source=one("source"),
                        flagged=_flag(one("flagged")), cluster=_flag(one("cluster")), problem=_flag(one("problem")),
                        round=one("round"), decision=decision)


def parse_page(query: Mapping[str, Sequence[str]], default_limit: int = 60) -> tuple[int, int]:
    """(after, limit) from the query; after is the cursor a previous page returned.
    Raises IfaError for a cursor or limit that is not a whole number, or a limit out of 1..500."""
    after, limit = (query.get(k, [""])[-1] for k in ("after", "limit"))
    try:
        after_pk = int(after) if after else 0
        size = int(limit) if limit else default_limit
    except ValueError:
        raise IfaError("after and limit must be whole numbers (after: the `next` a previous page returned).") from None
    if not 1 <= size <= MAX_LIMIT:
        raise IfaError(f"limit must be from 1 to {MAX_LIMIT}.")
    return after_pk, size


def _check(value: str | None, allowed: tuple[str, ...], name: str) -> None:
    if value is not None and value not in allowed:
        raise IfaError(f"Unknown {name} {value!r}; use one of {', '.join(allowed)}.")


def _flag(value: str | None) -> bool:
    if value in (None, "0", "false"):
        return False
    if value in ("1", "true"):
        return True
    raise IfaError(f"flagged, cluster and problem take 1 (or 0), not {value!r}.")
