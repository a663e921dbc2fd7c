"""A/B arms of `divrec serve`: the experiment definition and sticky assignment by salted hash.

An experiment is a small JSON document, ``experiment.json`` in the model directory (picked up
at every start and reload) or the file given as `AppConfig.experiment`::

    {"name": "dpp-vs-relevance", "salt": "2026-12-05", "control": "control",
     "arms": [{"name": "control", "share": 0.5, "method": "none"},
              {"name": "dpp", "share": 0.5, "method": "dpp", "diversity": 0.5},
              {"name": "other", "share": 0.0, "method": "dpp", "model_dir": "../m2"}]}

Each arm is one of the pipelines a model directory holds (``method``: a fitted re-ranker or
``"none"``, the relevance-only chain of the same retriever and ranker) with an optional
fixed diversity knob (else the service default) and an optional other ``model_dir`` (a
path relative to the experiment file), which must have the same item catalogue and users
in the same order as the served model (its pipelines then answer the same queries).

Assignment: user `u` gets the arm whose cumulative share interval holds
``h(u) = int(sha256(salt ‖ 0x00 ‖ u)[:8]) / 2⁶⁴`` (uniform on [0, 1), independent of the
user id's form): sticky (the same user gets the same arm for the life of the experiment,
across restarts and reloads), reproducible from the record (salt and shares are stored in
the event log, `EventLog.record_experiment`) and, over users, multinomial with the shares.
In an experiment the arm decides the method and knob of a user's list (a request's
``method=`` and ``diversity=`` are not used); ``?arm=`` with the API key forces an arm for
debugging, and such lists are logged as forced and left out of the readout.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "EXPERIMENT_FILE",
    "Arm",
    "ArmRouter",
    "Experiment",
    "attach_experiment",
    "check_experiment",
    "hash_unit",
    "load_experiment",
]

#: the experiment file a model directory may hold
EXPERIMENT_FILE = "experiment.json"
_KEYS = {"name", "salt", "control", "arms"}
_ARM_KEYS = {"name", "share", "method", "diversity", "model_dir"}
_SHARE_TOL = 1e-9


def hash_unit(salt: str, user_id: str) -> float:
    """``int(sha256(salt ‖ 0x00 ‖ user_id)[:8]) / 2⁶⁴``, uniform on [0, 1)."""
    digest = hashlib.sha256(f"{salt}\x00{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclass(frozen=True)
class Arm:
    """One arm.

    Attributes:
        name: the arm's name (``[A-Za-z0-9_.-]``, 1–64 characters).
        share: its traffic share in [0, 1].
        method: a re-ranking method of its model (None: the model's default).
        diversity: a fixed knob in [0, 1] or ``"auto"`` (None: the service default).
        model_dir: another model directory (resolved path), or None for the served one.
    """

    name: str
    share: float
    method: str | None = None
    diversity: float | str | None = None
    model_dir: str | None = None


@dataclass(frozen=True)
class Experiment:
    """A validated experiment (see the module docstring).

    Attributes:
        name: the experiment's name.
        salt: the assignment salt.
        control: the control arm's name.
        arms: the arms, in the file's order.
    """

    name: str
    salt: str
    control: str
    arms: tuple[Arm, ...]

    def __post_init__(self) -> None:
        shares = np.array([a.share for a in self.arms])
        bounds = np.cumsum(shares)
        if shares.any():  # rounding: the last arm with a share ends at exactly 1
            bounds[int(np.flatnonzero(shares > 0)[-1]) :] = 1.0
        object.__setattr__(self, "_bounds", bounds)

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.arms]

    def arm(self, name: str) -> Arm:
        """The arm called `name`.

        Raises:
            ValueError: ``field 'arm': unknown arm ...`` (one line).
        """
        for a in self.arms:
            if a.name == name:
                return a
        raise ValueError(f"field 'arm': unknown arm {name!r}; known: {', '.join(self.names)}")

    def index_of_unit(self, h: np.ndarray | float) -> np.ndarray:
        """Arm indices of hash values in [0, 1) (shares of 0 never get a user)."""
        bounds = self._bounds  # type: ignore[attr-defined]
        idx = np.searchsorted(bounds, np.asarray(h, dtype=np.float64), side="right")
        return np.minimum(idx, len(self.arms) - 1)

    def assign(self, user_id: str) -> Arm:
        """The arm of `user_id` (sticky; see the module docstring)."""
        return self.arms[int(self.index_of_unit(hash_unit(self.salt, str(user_id))))]

    def assign_many(self, user_ids) -> np.ndarray:
        """`(U,)` arm indices of `user_ids`."""
        h = np.array([hash_unit(self.salt, str(u)) for u in user_ids], dtype=np.float64)
        return self.index_of_unit(h).astype(np.int64)

    def record(self) -> dict[str, Any]:
        """The definition stored in the event log (name, salt, control, arms and shares)."""
        return {
            "name": self.name,
            "salt": self.salt,
            "control": self.control,
            "arms": [
                {k: v for k, v in dataclasses.asdict(a).items() if k != "model_dir"}
                | {"model_dir": None if a.model_dir is None else Path(a.model_dir).name}
                for a in self.arms
            ],
        }

    @classmethod
    def from_dict(cls, doc: Any, base: Path | None = None) -> Experiment:
        """Validates an experiment document.

        Args:
            doc: the parsed JSON.
            base: folder an arm's relative ``model_dir`` is resolved against.

        Raises:
            ValueError: ``field '<key>': <problem>`` (one line).
        """
        if not isinstance(doc, dict):
            raise ValueError("field 'experiment': must be a JSON object")
        extra = sorted(set(doc) - _KEYS)
        if extra:
            raise ValueError(f"field '{extra[0]}': unknown key (known: {', '.join(sorted(_KEYS))})")
        for key in ("name", "salt", "control"):
            v = doc.get(key)
            if not isinstance(v, str) or not v.strip():
                raise ValueError(f"field '{key}': required, a non-empty string")
        _check_name(doc["name"], "name")
        arms_doc = doc.get("arms")
        if not isinstance(arms_doc, list) or len(arms_doc) < 2:
            raise ValueError("field 'arms': required, a list of at least 2 arms")
        arms = []
        for k, a in enumerate(arms_doc):
            if not isinstance(a, dict):
                raise ValueError(f"field 'arms.{k}': must be an object")
            extra = sorted(set(a) - _ARM_KEYS)
            if extra:
                raise ValueError(f"field 'arms.{k}.{extra[0]}': unknown key")
            name = a.get("name")
            if not isinstance(name, str):
                raise ValueError(f"field 'arms.{k}.name': required, a string")
            _check_name(name, f"arms.{k}.name")
            share = a.get("share")
            if (
                isinstance(share, bool)
                or not isinstance(share, int | float)
                or not (math.isfinite(share) and 0.0 <= share <= 1.0)
            ):
                raise ValueError(f"field 'arms.{k}.share': required, a number in [0, 1]")
            method = a.get("method")
            if method is not None and not isinstance(method, str):
                raise ValueError(f"field 'arms.{k}.method': must be a string")
            div = a.get("diversity")
            if div is not None and div != "auto":
                if (
                    isinstance(div, bool)
                    or not isinstance(div, int | float)
                    or not (math.isfinite(div) and 0.0 <= div <= 1.0)
                ):
                    raise ValueError(f"field 'arms.{k}.diversity': must be in [0, 1] or 'auto'")
                div = float(div)
            md = a.get("model_dir")
            if md is not None:
                if not isinstance(md, str) or not md:
                    raise ValueError(f"field 'arms.{k}.model_dir': must be a path")
                p = Path(md)
                md = str(p if p.is_absolute() or base is None else (base / p))
            arms.append(Arm(name, float(share), method, div, md))
        names = [a.name for a in arms]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"field 'arms': arm name {dup[0]!r} used twice")
        total = math.fsum(a.share for a in arms)
        if abs(total - 1.0) > _SHARE_TOL:
            raise ValueError(f"field 'arms.*.share': the shares sum to {total:g}, not 1")
        if doc["control"] not in names:
            raise ValueError(
                f"field 'control': {doc['control']!r} is not an arm (arms: {', '.join(names)})"
            )
        return cls(doc["name"], doc["salt"], doc["control"], tuple(arms))

    @classmethod
    def load(cls, path: str | Path) -> Experiment:
        """Reads and validates an experiment file (see `from_dict`).

        Raises:
            ValueError: ``<path>: field '<key>': <problem>`` (one line).
        """
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise ValueError(f"{path}: {err.strerror or err}") from None
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ValueError(f"{path}: not valid JSON") from None
        try:
            return cls.from_dict(doc, base=path.parent)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None


def _check_name(name: str, key: str) -> None:
    import re

    if not re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", name):
        raise ValueError(f"field '{key}': must match [A-Za-z0-9_.-]{{1,64}}, got {name!r}")


def load_experiment(model_dir: str | Path, path: str | Path | None = None) -> Experiment | None:
    """The experiment of a service: `path`, else ``experiment.json`` of `model_dir`, else
    None (no experiment)."""
    if path is not None:
        return Experiment.load(path)
    f = Path(model_dir) / EXPERIMENT_FILE
    return Experiment.load(f) if f.is_file() else None


class ArmRouter:
    """Routes a service's requests to arms (the serving side of an `Experiment`).

    The pipelines of an arm with its own model directory are added to the served bundle's
    `pipelines` and `cold_start` under the key ``arm:<name>`` (one bundle per model
    directory; the bundle is the service's own and is replaced at reload).

    Args:
        experiment: the experiment.
        bundle: the served `ModelBundle`.
        default_diversity: the service's knob for arms without one.

    Raises:
        ValueError: an arm's method is not in its model, or its model has another item
            catalogue or other users (one line naming ``arms.<k>.<key>``).
    """

    def __init__(self, experiment: Experiment, bundle, default_diversity: float | str) -> None:
        from divrec.serve.model_dir import ModelBundle

        self.experiment = experiment
        self.methods: dict[str, str] = {}
        self.knobs: dict[str, float | str] = {}
        ids = [it["id"] for it in bundle.items]
        for k, arm in enumerate(experiment.arms):
            src = bundle
            if arm.model_dir is not None:
                try:
                    src = ModelBundle.load(arm.model_dir)
                except ValueError as err:
                    raise ValueError(f"field 'arms.{k}.model_dir': {err}") from None
                if [it["id"] for it in src.items] != ids:
                    raise ValueError(
                        f"field 'arms.{k}.model_dir': {arm.model_dir} has another item "
                        f"catalogue ({src.n_items} items) than the served model "
                        f"({len(ids)} items); every arm must serve the same items"
                    )
                if list(src.user_ids) != list(bundle.user_ids):
                    raise ValueError(
                        f"field 'arms.{k}.model_dir': {arm.model_dir} was trained on other "
                        "users than the served model"
                    )
            method = src.default_method if arm.method is None else arm.method
            if method != "none" and method not in src.rerankers:
                known = ", ".join(sorted(src.rerankers) + ["none"])
                raise ValueError(
                    f"field 'arms.{k}.method': unknown method {method!r}; known: {known}"
                )
            key = method
            if src is not bundle:
                key = f"arm:{arm.name}"
                bundle.pipelines[key] = src.pipelines[method]
                bundle.cold_start[key] = src.cold_start[method]
            self.methods[arm.name] = key
            self.knobs[arm.name] = default_diversity if arm.diversity is None else arm.diversity

    def route(self, requests: list) -> tuple[list, list[str | None], list[bool]]:
        """Each request with a user id gets its arm's method and knob.

        Args:
            requests: `RecRequest`s; ``arm`` (when set) forces an arm.

        Returns:
            `(requests, arms, forced)`: the requests to answer, each one's arm (None for an
            anonymous request, which is not in the experiment) and whether it was forced.

        Raises:
            ValueError: a forced arm that is not in the experiment (one line).
        """
        out, arms, forced = [], [], []
        exp = self.experiment
        for r in requests:
            name = getattr(r, "arm", None)
            if r.user_id is None:
                out.append(r)
                arms.append(None)
                forced.append(False)
                continue
            arm = exp.arm(name) if name is not None else exp.assign(r.user_id)
            out.append(
                dataclasses.replace(
                    r, method=self.methods[arm.name], diversity=self.knobs[arm.name]
                )
            )
            arms.append(arm.name)
            forced.append(name is not None)
        return out, arms, forced


def attach_experiment(service, model_dir: str | Path, log, path: str | Path | None = None) -> None:
    """Loads the experiment of a service (see `load_experiment`), routes its requests to
    the arms and records the definition in the event log (or checks it against the record).

    Raises:
        ValueError: a bad experiment file, an arm its model cannot serve, or a definition
            that differs from the log's record of the same name (one line).
    """
    exp = load_experiment(model_dir, path)
    if exp is None:
        service.router = None
        return
    router = ArmRouter(exp, service.bundle, service.settings.default_diversity)
    log.record_experiment(exp.name, exp.record())
    service.router = router


def forced_arm_error(router, arm: str, key_ok: bool) -> tuple[int, str] | None:
    """The HTTP error of ``?arm=<arm>`` (None: allowed): no experiment (422), no or a wrong
    API key (401/403), an unknown arm (422); every message names the field."""
    if router is None:
        return 422, "field 'arm': no experiment is running"
    if not key_ok:
        return 401, "field 'arm': forcing an arm needs the API key (X-API-Key header)"
    try:
        router.experiment.arm(arm)
    except ValueError as err:
        return 422, str(err)
    return None


def impression_of(res: dict, experiment: str, now: float):
    """The `Impression` row of one answered request (adds its ``request_id`` to `res`)."""
    import uuid

    from divrec.serve.events import Impression

    rid = uuid.uuid4().hex
    res["request_id"] = rid
    div = res.get("diversity")
    return Impression(
        rid,
        experiment,
        res["arm"],
        str(res["user_id"]),
        tuple(it["item_id"] for it in res["items"]),
        str(res["method"]),
        float(div) if isinstance(div, int | float) else None,
        bool(res.get("arm_forced", False)),
        now,
    )


def check_experiment(
    model_dir: str | Path, bundle, db: str | Path, path: str | Path | None = None
) -> Experiment | None:
    """The start-up check of `divrec serve` (before anything is created): the experiment
    file, its arms against the loaded `bundle`, and its definition against the record of
    the same name in the event log `db` (opened read-only, when it exists).

    Returns:
        The experiment, or None when the service runs none.

    Raises:
        ValueError: one line naming the field (see `Experiment.from_dict`, `ArmRouter`) or
            the differing parts of the definition.
    """
    import sqlite3

    exp = load_experiment(model_dir, path)
    if exp is None:
        return None
    ArmRouter(exp, bundle, "auto")
    db = Path(db)
    if not db.is_file():
        return exp
    try:
        conn = sqlite3.connect(f"file:{db.absolute()}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            row = None
            if "experiments" in tables:
                row = conn.execute(
                    "SELECT record FROM experiments WHERE name = ?", (exp.name,)
                ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return exp  # not a log: the caller's own check of the log says so
    if row is not None:
        old, new = json.loads(row[0]), exp.record()
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if diff:
            raise ValueError(
                f"experiment {exp.name!r}: {', '.join(diff)} differ from the record in {db} "
                "(assignments would change mid-experiment; give the experiment a new name)"
            )
    return exp
