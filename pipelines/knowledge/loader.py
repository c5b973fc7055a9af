"""Read, validate and cross-check the knowledge files into one :class:`KnowledgeBase`.

Every refusal is a :class:`pipelines.errors.InvalidInput` whose ``source`` is the file and
whose ``field`` is the offending field, written ``ingredients[3].family`` or
``concerns.spots.detect[0].any[1].value``.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml
from pydantic import BaseModel, ValidationError

from pipelines.errors import InvalidInput
from pipelines.knowledge import models as m

PACKAGE_DIR = Path(__file__).resolve().parent

# file name -> (attribute of KnowledgeBase, model)
FILES: dict[str, tuple[str, type[m.KnowledgeFile]]] = {
    "ingredients.yaml": ("ingredients", m.IngredientsFile),
    "concerns.yaml": ("concerns", m.ConcernsFile),
    "mapping.yaml": ("mapping", m.MappingFile),
    "contraindications.yaml": ("contraindications", m.ContraindicationsFile),
    "medications.yaml": ("medications", m.MedicationsFile),
    "care.yaml": ("care", m.CareFile),
    "courses.yaml": ("courses", m.CoursesFile),
    "devices.yaml": ("devices", m.DevicesFile),
}


@dataclass(frozen=True)
class KnowledgeBase:
    """All knowledge files, validated, with lookups the planner needs."""

    directory: Path
    ingredients: m.IngredientsFile
    concerns: m.ConcernsFile
    mapping: m.MappingFile
    contraindications: m.ContraindicationsFile
    medications: m.MedicationsFile
    care: m.CareFile
    courses: m.CoursesFile
    devices: m.DevicesFile

    @property
    def versions(self) -> dict[str, str]:
        """``{file name: version}`` of every file, for the plan's provenance."""
        return {name: getattr(self, attr).version for name, (attr, _) in FILES.items()}

    @functools.cached_property
    def ingredient_by_id(self) -> dict[str, m.Ingredient]:
        return {ing.id: ing for ing in self.ingredients.ingredients}

    @functools.cached_property
    def region_order(self) -> tuple[str, ...]:
        """``face`` (whole-face findings) first, then every region in anatomical order."""
        vocab = self.concerns.regions
        return ("face", *vocab.face, *vocab.other)

    def region_label(self, region: str) -> str:
        return self.concerns.regions.labels.get(region, region)

    def ingredient_regions(self, ingredient_id: str) -> frozenset[str]:
        """The regions an ingredient targets, the ``face`` group expanded (and kept)."""
        out: set[str] = set()
        for r in self.ingredient_by_id[ingredient_id].regions:
            out.update((r, *self.concerns.regions.face) if r == "face" else (r,))
        return frozenset(out)


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """Safe loader (libyaml when available) that refuses a key repeated in one mapping
    (PyYAML keeps the last one silently)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def format_loc(loc: tuple[Any, ...]) -> str:
    """Pydantic error location -> ``a.b[2].c``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_error(exc: ValidationError, source: str) -> InvalidInput:
    """The first error of a pydantic ValidationError as an InvalidInput naming file and field."""
    err = exc.errors()[0]
    field = format_loc(err["loc"]) or None
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    elif err["type"] == "missing":
        msg = "required field is missing"
    elif "input" in err and err["type"] not in ("model_type", "value_error", "assertion_error"):
        got = repr(err["input"])
        msg = f"{msg} (got {got if len(got) <= 60 else got[:57] + '...'})"
    where = f"field '{field}'" if field else "top level"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return InvalidInput(f"{source}: {where}: {msg}{more}", field=field, source=source)


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot read knowledge file: {exc.strerror}", source=str(path)) from exc
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidInput(f"{path}: invalid YAML{where}: {problem}", source=str(path)) from exc


def load_file(path: str | Path, model: type[m.KnowledgeFile]) -> m.KnowledgeFile:
    """Read one knowledge file and validate it against ``model``."""
    path = Path(path)
    data = _read(path)
    if not isinstance(data, dict):
        raise InvalidInput(f"{path}: top level must be a mapping with version, sources, ...", source=str(path))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, str(path)) from None


def _source_refs(obj: Any, loc: str = "") -> Iterator[tuple[str, str]]:
    """Every ``source`` field under a model, as (field path, source id)."""
    if isinstance(obj, BaseModel):
        for name in type(obj).model_fields:
            value = getattr(obj, name)
            key = type(obj).model_fields[name].alias or name
            sub = f"{loc}.{key}" if loc else key
            if name == "source" and isinstance(value, str):
                yield sub, value
            elif name != "sources":
                yield from _source_refs(value, sub)
    elif isinstance(obj, (tuple, list)):
        for i, item in enumerate(obj):
            yield from _source_refs(item, f"{loc}[{i}]")
    elif isinstance(obj, dict):
        for key, item in obj.items():
            yield from _source_refs(item, f"{loc}.{key}")


def _problems(kb: KnowledgeBase) -> Iterator[tuple[str, str, str]]:
    """Cross-file and uniqueness checks, as (file name, field, message)."""
    for name, (attr, _) in FILES.items():
        doc = getattr(kb, attr)
        ids = [s.id for s in doc.sources]
        if len(set(ids)) != len(ids):
            yield name, "sources", "source ids must be unique"
        for field, ref in _source_refs(doc):
            if ref not in ids:
                yield name, field, f"unknown source '{ref}' (declare it under sources)"

    def dupes(file: str, items, key: str):
        seen: set[str] = set()
        for i, item in enumerate(items):
            if item.id in seen:
                yield file, f"{key}[{i}].id", f"duplicate id '{item.id}'"
            seen.add(item.id)

    concerns = kb.concerns.concerns
    regions = {"face", *kb.concerns.regions.face, *kb.concerns.regions.other}
    families = {f.id for f in kb.ingredients.families}
    yield from dupes("ingredients.yaml", kb.ingredients.families, "families")
    yield from dupes("ingredients.yaml", kb.ingredients.ingredients, "ingredients")
    for i, ing in enumerate(kb.ingredients.ingredients):
        if ing.family not in families:
            yield "ingredients.yaml", f"ingredients[{i}].family", f"unknown family '{ing.family}'"
        for j, c in enumerate(ing.concerns):
            if c not in concerns:
                yield "ingredients.yaml", f"ingredients[{i}].concerns[{j}]", f"unknown concern '{c}' (see concerns.yaml)"
        for j, r in enumerate(ing.regions):
            if r not in regions:
                yield "ingredients.yaml", f"ingredients[{i}].regions[{j}]", f"unknown region '{r}' (see concerns.yaml regions)"

    ingredients = kb.ingredient_by_id
    for concern, entries in kb.mapping.mapping.items():
        if concern not in concerns or not concerns[concern].measured:
            yield "mapping.yaml", f"mapping.{concern}", f"'{concern}' is not a measured concern of concerns.yaml"
        seen: set[str] = set()
        for i, entry in enumerate(entries):
            field = f"mapping.{concern}[{i}].ingredient"
            if entry.ingredient not in ingredients:
                yield "mapping.yaml", field, f"unknown ingredient '{entry.ingredient}'"
            elif concern not in ingredients[entry.ingredient].concerns:
                yield "mapping.yaml", field, f"ingredient '{entry.ingredient}' does not list '{concern}' in its concerns"
            if entry.ingredient in seen:
                yield "mapping.yaml", field, f"duplicate ingredient '{entry.ingredient}'"
            seen.add(entry.ingredient)

    yield from dupes("contraindications.yaml", kb.contraindications.contraindications, "contraindications")
    pre_care = {item.id for item in kb.care.pre_care}
    yield from dupes("medications.yaml", kb.medications.categories, "categories")
    for i, cat in enumerate(kb.medications.categories):
        for j, item in enumerate(cat.pre_care):
            if item not in pre_care:
                yield "medications.yaml", f"categories[{i}].pre_care[{j}]", f"unknown pre-care item '{item}' (see care.yaml)"
            elif next(p for p in kb.care.pre_care if p.id == item).tailored is None:
                yield "medications.yaml", f"categories[{i}].pre_care[{j}]", f"pre-care item '{item}' has no `tailored` text"
    yield from dupes("care.yaml", kb.care.pre_care, "pre_care")
    yield from dupes("care.yaml", kb.care.post_care, "post_care")
    yield from dupes("devices.yaml", kb.devices.devices, "devices")


def load_knowledge(directory: str | Path | None = None) -> KnowledgeBase:
    """Load and check every knowledge file of ``directory`` (default: this package).

    The default directory is read once per process; pass a directory to read it afresh."""
    if directory is None:
        return _load_default()
    return _load(Path(directory))


@functools.lru_cache(maxsize=1)
def _load_default() -> KnowledgeBase:
    return _load(PACKAGE_DIR)


def _load(directory: Path) -> KnowledgeBase:
    docs = {attr: load_file(directory / name, model) for name, (attr, model) in FILES.items()}
    kb = KnowledgeBase(directory=directory, **docs)
    for name, field, message in _problems(kb):
        path = directory / name
        raise InvalidInput(f"{path}: field '{field}': {message}", field=field, source=str(path))
    return kb
