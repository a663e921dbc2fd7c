"""Business rules and explanations over HTTP: external ids and category names ↔ the library's
internal `divrec.data.constraints.Constraints` and `explain=True` explanations.

One JSON form for ``POST /rerank`` (per request), ``POST /recommend`` (the body's
``constraints``) and, flattened into query parameters, ``GET /recommend/{user}``; the keys
and their meaning are those of an experiment file's ``constraints`` table:

    {"exclude": ["item ids"], "allow_categories": ["names"], "deny_categories": ["names"],
     "min_count": {"Comedy": 2}, "max_count": {"Horror": 3},
     "pins": {"item id": 0}, "boosts": {"item id": 0.1},
     "group": "category" | "category=<name>" | "popularity" | "<item table column>",
     "protected": "<group name>", "min_share": 0.3, "best_effort": false}

Query parameters (GET): ``exclude=a,b``, ``allow_categories=x,y``, ``deny_categories=x``,
``min_count=Comedy:2,Drama:1``, ``max_count=Horror:3``, ``pins=item:0,item2:3``,
``boosts=item:0.1``, ``group=``, ``protected=``, ``min_share=``, ``best_effort=true``.

Categories are primary categories (an item's first category, the re-rankers' category):
a name is mapped to its code in the served re-rankers' category space
(`RerankCatalogue.category_code`). Every problem is a `RerankError` (HTTP 422) whose one
line names the field: an unknown category, item or group, a count that is not a
non-negative integer, min > max, a pin outside the list (``pins.<id>`` ≥ the list length)
or one position twice, a NaN or infinite boost, a group column the data does not have.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from divrec.serve.rerank import RerankCatalogue

__all__ = [
    "CONSTRAINT_KEYS",
    "RerankError",
    "constraints_from_json",
    "constraints_from_query",
    "explanations",
]


class RerankError(ValueError):
    """A bad request body (`/rerank`, rules of `/recommend`): `status` (422 or 413) and a
    one-line message naming the field."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


CONSTRAINT_KEYS = (
    "exclude",
    "allow_categories",
    "deny_categories",
    "min_count",
    "max_count",
    "pins",
    "boosts",
    "group",
    "protected",
    "min_share",
    "best_effort",
)


def constraints_from_json(raw: Any, where: str, cat: RerankCatalogue, k: int):
    """The `Constraints` of a JSON object (external ids and names), or None for null.

    Args:
        raw: the ``constraints`` value of a request.
        where: the field prefix for messages (``requests.3.constraints``).
        cat: the catalogue (ids, category codes, groups).
        k: the list length (pins must be below it).

    Raises:
        RerankError: one line naming ``<where>.<key>``.
    """
    from divrec.data.constraints import Constraints

    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise RerankError(f"field '{where}': must be an object")
    for key in raw:
        if key not in CONSTRAINT_KEYS:
            raise RerankError(
                f"field '{where}.{key}': unknown constraint (known: {', '.join(CONSTRAINT_KEYS)})"
            )

    def fail(key: str, msg: str):
        raise RerankError(f"field '{where}.{key}': {msg}")

    def names(key: str) -> list[str]:
        vals = raw[key]
        if not isinstance(vals, list) or not all(type(v) is str for v in vals):
            fail(key, "must be a list of category names")
        for v in vals:
            if v not in cat.category_code and v not in cat.category_names:
                fail(key, f"unknown category {v!r}" + _known(cat))
        return vals

    def item(value: Any, key: str) -> int:
        if type(value) not in (str, int):
            fail(key, "item ids must be strings or integers")
        i = cat.item_index.get(str(value))
        if i is None:
            fail(key, f"unknown item id {str(value)[:60]!r}")
        return i

    kw: dict[str, Any] = {}
    for key in ("allow_categories", "deny_categories"):
        if key in raw:
            # a known name that is no item's primary category matches no candidate
            kw[key] = [cat.category_code[c] for c in names(key) if c in cat.category_code]
    counts: dict[str, dict[str, int]] = {}
    for key in ("min_count", "max_count"):
        if key not in raw:
            continue
        table = raw[key]
        if not isinstance(table, dict):
            fail(key, "must be an object {category: count}")
        counts[key] = {}
        for c, v in table.items():
            if c not in cat.category_code and c not in cat.category_names:
                fail(f"{key}.{c}", f"unknown category {c!r}" + _known(cat))
            if type(v) is not int or v < 0:
                fail(f"{key}.{c}", f"must be an integer count >= 0, got {v!r}")
            counts[key][c] = v
    for c, lo in counts.get("min_count", {}).items():
        hi = counts.get("max_count", {}).get(c)
        if hi is not None and lo > hi:
            fail(f"min_count.{c}", f"{lo} exceeds max_count.{c} = {hi}")
        if lo > 0 and c not in cat.category_code:
            fail(f"min_count.{c}", f"no item has {c!r} as its (first) category")
    for key, table in counts.items():
        kw[key] = {cat.category_code[c]: v for c, v in table.items() if c in cat.category_code}
    if "exclude" in raw:
        if not isinstance(raw["exclude"], list):
            fail("exclude", "must be a list of item ids")
        kw["exclude"] = [item(x, "exclude") for x in raw["exclude"]]
    if "pins" in raw:
        table = raw["pins"]
        if not isinstance(table, dict):
            fail("pins", "must be an object {item id: position}")
        pins: dict[int, int] = {}
        seen: dict[int, str] = {}
        for x, pos in table.items():
            i = item(x, f"pins.{x}")
            if type(pos) is not int or not 0 <= pos < k:
                fail(f"pins.{x}", f"position must be an integer in [0, {k - 1}] (the list)")
            if pos in seen:
                fail(f"pins.{x}", f"position {pos} is pinned twice ({seen[pos]!r} and {x!r})")
            seen[pos] = str(x)
            pins[i] = pos
        kw["pins"] = pins
    if "boosts" in raw:
        table = raw["boosts"]
        if not isinstance(table, dict):
            fail("boosts", "must be an object {item id: boost}")
        boosts = {}
        for x, b in table.items():
            i = item(x, f"boosts.{x}")
            if type(b) not in (int, float) or not math.isfinite(b):
                fail(f"boosts.{x}", f"must be a finite number, got {b!r}")
            boosts[i] = float(b)
        kw["boosts"] = boosts
    if any(key in raw for key in ("group", "protected", "min_share")):
        for key in ("group", "protected", "min_share"):
            if key not in raw:
                fail(key, "required (group, protected and min_share go together)")
        group, protected, share = raw["group"], raw["protected"], raw["min_share"]
        if type(group) is not str:
            fail("group", "must be a column name")
        codes, groups = cat.groups(group, lambda msg: fail("group", msg))
        if type(protected) is not str or protected not in groups:
            fail("protected", f"unknown group {protected!r} (groups: {', '.join(groups)})")
        if type(share) not in (int, float) or not 0.0 < share <= 1.0:
            fail("min_share", f"must be a number in (0, 1], got {share!r}")
        kw.update(group_of=codes, protected=groups.index(protected), min_share=float(share))
    if "best_effort" in raw:
        if type(raw["best_effort"]) is not bool:
            fail("best_effort", "must be true or false")
        kw["best_effort"] = raw["best_effort"]
    try:
        return Constraints(**kw)
    except ValueError as err:  # the library's own checks (internal indices): named fields
        raise RerankError(f"field '{where}': {str(err).splitlines()[0]}") from None


def _known(cat: RerankCatalogue) -> str:
    names = cat.category_names
    if not names:
        return " (the catalogue has no categories)"
    return f" (known: {', '.join(names[:12])}{', …' if len(names) > 12 else ''})"


def constraints_from_query(params, cat: RerankCatalogue, k: int):
    """The constraints of ``GET /recommend`` query parameters (see the module docstring),
    or None when none is given; fields are named ``constraints.<key>``."""
    raw: dict[str, Any] = {}
    for key in ("exclude", "allow_categories", "deny_categories"):
        if key in params:
            raw[key] = [x for x in params[key].split(",") if x]
    for key in ("min_count", "max_count", "pins", "boosts"):
        if key not in params:
            continue
        table: dict[str, Any] = {}
        for part in params[key].split(","):
            name, sep, value = part.rpartition(":")
            if not sep or not name:
                raise RerankError(
                    f"field 'constraints.{key}': expected name:value pairs separated by commas"
                )
            try:
                table[name] = float(value) if key == "boosts" else int(value)
            except ValueError:
                what = "a number" if key == "boosts" else "an integer"
                raise RerankError(
                    f"field 'constraints.{key}.{name}': must be {what}, got {value[:20]!r}"
                ) from None
        raw[key] = table
    for key in ("group", "protected"):
        if key in params:
            raw[key] = params[key]
    if "min_share" in params:
        try:
            raw["min_share"] = float(params["min_share"])
        except ValueError:
            raise RerankError("field 'constraints.min_share': must be a number") from None
    if "best_effort" in params:
        value = params["best_effort"].lower()
        if value not in ("true", "false", "1", "0"):
            raise RerankError("field 'constraints.best_effort': must be true or false")
        raw["best_effort"] = value in ("true", "1")
    if not raw:
        return None
    return constraints_from_json(raw, "constraints", cat, k)


def explanations(rows, name) -> list[dict[str, Any]]:
    """One request's explanations (`divrec.rerank._explain`) with external item ids: per
    returned item its relevance and rank before re-ranking, its gain when picked (relevance
    and diversity parts), the picked item that penalized it most and the rule that placed
    it (pin, minimum, boost, fairness), if any.

    Args:
        rows: the explanations of one list.
        name: internal item index → external id.
    """
    out = []
    for e in rows:
        d = dict(e)
        d.pop("position", None)
        item = d.pop("item", None)
        if item is not None:
            d["item_id"] = name(int(item))
        pen = d.get("penalized_by")
        if pen is not None and not isinstance(pen, str):
            d["penalized_by"] = name(int(pen))
        out.append({k: _plain(v) for k, v in d.items()})
    return out


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v
