"""Rig profiles: rig files loaded, merged with their base, validated, and compiled to arrays."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from avatar_engine.rigs.schema import (
    REGION_ORDER,
    BoneDriver,
    ChannelSpec,
    LodSpec,
    Region,
    RigFile,
)
from avatar_engine.rigs.sparse import SparseMap
from avatar_engine.types import F32, I8, I32

_DATA_PACKAGE = "avatar_engine.rigs.data"


class RigProfileError(ValueError):
    """A rig file that cannot be used; the message names the file, the key and the problem."""


def builtin_rig_names() -> list[str]:
    """Names of the rig profiles shipped with the package."""
    root = resources.files(_DATA_PACKAGE)
    return sorted(p.name.removesuffix(".json") for p in root.iterdir() if p.name.endswith(".json"))


RIG_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
"""What a rig *name* looks like: no dots, no slashes, so a name can never be a path."""
_RIG_NAME = re.compile(RIG_NAME_PATTERN)


def available_rig_names(folder: str | Path | None = None) -> list[str]:
    """Built-in rig names, then the names of ``*.json`` rigs in ``folder`` (if configured)."""
    names = builtin_rig_names()
    if folder is not None:
        try:
            found = sorted(p.stem for p in Path(folder).glob("*.json") if p.is_file())
        except OSError:
            found = []
        names += [n for n in found if _RIG_NAME.fullmatch(n) and n not in names]
    return names


def resolve_rig_name(name: str, folder: str | Path | None = None) -> str | Path:
    """What a rig name from a request refers to: a built-in rig name, or a file in ``folder``.

    The one place that turns untrusted rig names into something :func:`load_rig` opens. A
    name is a plain token (:data:`RIG_NAME_PATTERN`), never a path, and names only built-in
    rigs or ``<folder>/<name>.json``; built-in names win. The error lists the names that
    exist and nothing else: it does not say whether some path exists, is a directory, or is
    readable.
    """
    available = available_rig_names(folder)
    if not isinstance(name, str) or not _RIG_NAME.fullmatch(name) or name not in available:
        shown = repr(name[:64]) if isinstance(name, str) else "a non-string"
        raise RigProfileError(f"unknown rig {shown}; available rigs: {', '.join(available)}")
    if name in builtin_rig_names():
        return name
    assert folder is not None
    return Path(folder) / f"{name}.json"


def load_named_rig(name: str, folder: str | Path | None = None) -> RigProfile:
    """Load a rig a request names (see :func:`resolve_rig_name`). A folder rig must call
    itself by its file name, so sessions, streams and clients agree on one name."""
    ref = resolve_rig_name(name, folder)
    try:
        rig = load_rig(ref)
    except RigProfileError as exc:  # a broken folder rig: name it, not where it lives
        raise RigProfileError(str(exc).replace(f"{Path(folder or '.')}/", "")) from None
    if rig.name != name:
        raise RigProfileError(f"rig {name!r}: its file names it {rig.name!r}; the two must match")
    return rig


def _read_json(source: str, text: str) -> dict[str, Any]:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RigProfileError(f"{source}: line {exc.lineno}: not valid JSON: {exc.msg}") from None
    if not isinstance(raw, dict):
        raise RigProfileError(f"{source}: the top level must be a JSON object")
    return raw


def _is_path(name_or_path: str | Path) -> bool:
    """A file path rather than the name of a built-in rig."""
    text = str(name_or_path)
    return isinstance(name_or_path, Path) or text.endswith(".json") or "/" in text


def _read_rig_source(name_or_path: str | Path) -> tuple[str, dict[str, Any]]:
    """Raw JSON of a built-in rig (by name) or of a file (by path)."""
    text_name = str(name_or_path)
    if _is_path(name_or_path):
        path = Path(name_or_path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RigProfileError(f"{path}: cannot read rig file: {exc.strerror}") from None
        return str(path), _read_json(str(path), text)
    resource = resources.files(_DATA_PACKAGE).joinpath(f"{text_name}.json")
    if not resource.is_file():
        known = ", ".join(builtin_rig_names())
        raise RigProfileError(f"unknown rig {text_name!r}; built-in rigs: {known}")
    return f"{text_name}.json", _read_json(f"{text_name}.json", resource.read_text("utf-8"))


def _merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """Child keys replace the base's; ``mappings`` merge per source name, so an override file
    can change how one ARKit shape maps without restating the rest."""
    merged = {**base, **{k: v for k, v in child.items() if k != "mappings"}}
    mappings = {src: dict(table) for src, table in base.get("mappings", {}).items()}
    for src, table in child.get("mappings", {}).items():
        mappings.setdefault(src, {}).update(table)
    merged["mappings"] = mappings
    merged.pop("extends", None)
    return merged


def _check_mapping_shape(source: str, raw: dict[str, Any]) -> None:
    """``mappings`` and each table in it must be JSON objects before :func:`_merge` runs."""
    mappings = raw.get("mappings", {})
    if not isinstance(mappings, dict):
        raise RigProfileError(f"{source}: mappings: must be a JSON object (source -> table)")
    for vocabulary, table in mappings.items():
        if not isinstance(table, dict):
            raise RigProfileError(
                f"{source}: mappings.{vocabulary}: must be a JSON object "
                "(name -> {morph: weight})"
            )


def _resolve(name_or_path: str | Path, depth: int = 0) -> tuple[str, dict[str, Any]]:
    source, raw = _read_rig_source(name_or_path)
    _check_mapping_shape(source, raw)
    base_name = raw.get("extends")
    if base_name is None:
        return source, raw
    if depth > 8:
        raise RigProfileError(f"{source}: extends: chain deeper than 8 rigs (a cycle?)")
    if not isinstance(base_name, str):
        raise RigProfileError(f"{source}: extends: must be a rig name or path")
    if base_name.endswith(".json") and not Path(base_name).is_absolute():
        base_name = str(Path(source).parent / base_name)  # relative to the extending file
    _, base_raw = _resolve(base_name, depth + 1)
    return source, _merge(base_raw, raw)


def _format_error(source: str, exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        problems.append(f"{source}: {key}: {err['msg']}")
    return "\n".join(problems)


def load_rig(name_or_path: str | Path) -> RigProfile:
    """Load a built-in rig by name (``cc4-extended``) or a rig file by path, validated."""
    if _is_path(name_or_path):
        return _load(name_or_path)  # user files are re-read: they may be edited between loads
    return _load_builtin(name_or_path)


@cache
def _load_builtin(name: str) -> RigProfile:
    """Built-in rigs are immutable package data: compile each once per process."""
    return _load(name)


def _load(name_or_path: str | Path) -> RigProfile:
    source, raw = _resolve(name_or_path)
    try:
        spec = RigFile.model_validate(raw)
    except ValidationError as exc:
        raise RigProfileError(_format_error(source, exc)) from None
    return RigProfile(spec=spec, source=source)


@dataclass(frozen=True)
class RigProfile:
    """A validated rig compiled to the arrays the kernels take (one copy shared by sessions)."""

    spec: RigFile
    source: str
    morph_names: tuple[str, ...] = field(init=False)
    region_codes: I8 = field(init=False)
    lower: F32 = field(init=False)
    upper: F32 = field(init=False)
    gain: F32 = field(init=False)
    offset: F32 = field(init=False)
    exclusive: I32 = field(init=False)
    """``(P, 2)`` morph indices: column 0 dominant, column 1 suppressed."""

    def __post_init__(self) -> None:
        names = tuple(m for morphs in self.spec.regions.values() for m in morphs)
        index = {n: i for i, n in enumerate(names)}
        regions = np.empty(len(names), dtype=np.int8)
        for region, morphs in self.spec.regions.items():
            for m in morphs:
                regions[index[m]] = REGION_ORDER.index(region)
        lower = np.zeros(len(names), dtype=np.float32)
        upper = np.ones(len(names), dtype=np.float32)
        for m, (lo, hi) in self.spec.limits.items():
            lower[index[m]], upper[index[m]] = lo, hi
        gain = np.ones(len(names), dtype=np.float32)
        for m, g in self.spec.gain.items():
            gain[index[m]] = g
        offset = np.zeros(len(names), dtype=np.float32)
        for m, o in self.spec.offset.items():
            offset[index[m]] = o
        pairs = np.array(
            [[index[a], index[b]] for a, b in self.spec.exclusive], dtype=np.int32
        ).reshape(-1, 2)
        for attr, value in (
            ("morph_names", names),
            ("region_codes", regions),
            ("lower", lower),
            ("upper", upper),
            ("gain", gain),
            ("offset", offset),
            ("exclusive", pairs),
        ):
            if isinstance(value, np.ndarray):
                value.setflags(write=False)
            object.__setattr__(self, attr, value)
        object.__setattr__(self, "_index", index)

    @property
    def name(self) -> str:
        """The rig's name as requests and stream hellos carry it."""
        return self.spec.name

    @property
    def morph_count(self) -> int:
        """Morphs in the rig's frame vector (the width of every morph array for this rig)."""
        return len(self.morph_names)

    @property
    def channels(self) -> list[ChannelSpec]:
        """The rig's rotation channels (head and eyes) as declared in its file."""
        return self.spec.channels

    @property
    def channel_names(self) -> tuple[str, ...]:
        """Channel names in frame order (the width of every channel array for this rig)."""
        return tuple(c.name for c in self.spec.channels)

    @property
    def bone_drivers(self) -> list[BoneDriver]:
        """Morphs the rig drives from bone rotations, as declared in its file."""
        return self.spec.bone_drivers

    @property
    def lod(self) -> list[LodSpec]:
        """The rig's levels of detail, finest first (each a subset of morphs and channels)."""
        return self.spec.lod

    def morph_index(self, name: str) -> int:
        """Position of a morph in this rig's frame vector."""
        index: dict[str, int] = self.__dict__["_index"]
        try:
            return index[name]
        except KeyError:
            raise KeyError(f"rig {self.name!r} has no morph {name!r}") from None

    def morphs_in(self, *regions: Region) -> list[int]:
        """Indices of the morphs in the given regions, in frame order."""
        codes = {REGION_ORDER.index(r) for r in regions}
        return [i for i, c in enumerate(self.region_codes.tolist()) if c in codes]

    def mapping_sources(self) -> list[str]:
        """Sources the rig maps from (``arkit52``, ``visemes``...), sorted."""
        return sorted(self.spec.mappings)

    def sparse_map(self, source: str, source_names: Sequence[str]) -> SparseMap:
        """The mapping from ``source`` (in ``source_names`` order) onto this rig's morphs.

        Source names the rig file does not mention drive nothing; names in the file that are
        not in ``source_names`` are an error, because they would silently do nothing.
        """
        try:
            table = self.spec.mappings[source]
        except KeyError:
            known = ", ".join(self.mapping_sources()) or "none"
            raise RigProfileError(
                f"{self.source}: mappings: rig {self.name!r} has no {source!r} mapping "
                f"(it has: {known})"
            ) from None
        column = {n: i for i, n in enumerate(source_names)}
        triplets: list[tuple[int, int, float]] = []
        for source_name, targets in table.items():
            if source_name not in column:
                raise RigProfileError(
                    f"{self.source}: mappings.{source}.{source_name}: not a {source} name"
                )
            for morph, weight in targets.items():
                triplets.append((self.morph_index(morph), column[source_name], weight))
        return SparseMap.from_triplets(self.morph_count, len(source_names), triplets)
