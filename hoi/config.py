"""One way to configure everything: YAML files with ``_base_`` inheritance, ``key=value``
overrides from the command line, validated against typed dataclasses (OmegaConf).

A YAML file may name one or more parent files in ``_base_`` (paths relative to itself); the
parents are merged first, the child on top. Every key, in files and overrides, must exist in
the schema: a typo is an error that names the closest valid keys.

Every value is checked when the config is built, before any work: its type (``optim.lr=abc``:
expected a number), and for the keys a dataclass declares in its ``RANGES`` (a
``ClassVar[dict[str, Check]]`` beside its fields, merged along the class hierarchy) its range
and finiteness (``optim.lr=nan``: expected a finite number > 0). Each refusal is one line naming
where the value came from, the dotted key, the value and what is expected.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError
from omegaconf.nodes import BooleanNode, FloatNode, IntegerNode, StringNode, ValueNode

from hoi.errors import UserError

T = TypeVar("T")

BASE_KEY = "_base_"


class ConfigError(UserError, ValueError):
    """A config file or override that does not fit the schema."""


RANGES_ATTR = "RANGES"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


@dataclass(frozen=True)
class Check:
    """The values one config key may take, declared once beside its dataclass::

        @dataclass
        class OptimConfig:
            RANGES: ClassVar[dict[str, Check]] = {"lr": POSITIVE, "epochs": Check(ge=0)}
            lr: float = 0.001
            epochs: int = 50

    A number must be finite and within the bounds given (``gt`` >, ``ge`` >=, ``lt`` <, ``le``
    <=); ``choices`` lists the only values allowed (numbers or strings). For a list-valued key
    every element must pass, and ``size`` (when set) fixes the list's length. ``None`` passes
    where the field is optional (it then means "off" or "the default"). ``why`` ends the
    message: what the numbers mean.
    """

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    choices: tuple[Any, ...] | None = None
    size: int | None = None
    why: str = ""

    def accepts(self, value: Any) -> bool:
        """Whether one (scalar) value is allowed."""
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if not math.isfinite(value):
            return False
        return ((self.gt is None or value > self.gt) and (self.ge is None or value >= self.ge)
                and (self.lt is None or value < self.lt) and (self.le is None or value <= self.le))

    def bounds(self) -> str:
        """The bounds in words: ``> 0``, ``in [0, 1)``, ``>= 1`` or empty."""
        low = (f"({_num(self.gt)}" if self.gt is not None else
               f"[{_num(self.ge)}" if self.ge is not None else None)
        high = (f"{_num(self.lt)})" if self.lt is not None else
                f"{_num(self.le)}]" if self.le is not None else None)
        if low and high:
            return f"in {low}, {high}"
        if low:
            return (">" if low[0] == "(" else ">=") + f" {low[1:]}"
        if high:
            return ("<" if high[-1] == ")" else "<=") + f" {high[:-1]}"
        return ""

    def expected(self, kind: type | None = None, is_list: bool = False) -> str:
        """What is expected, in words: ``a finite number > 0``, ``a whole number >= 1``,
        ``one of auto, cuda, cpu``, ``a list of 2 finite numbers in (0, 1]``."""
        if self.choices is not None:
            what = "one of " + ", ".join(str(c) for c in self.choices)
            if is_list:
                what = "values, each " + what
        else:
            noun = "whole number" if kind is int else "finite number"
            what = f"{noun}s" if is_list else f"a {noun}"
            if self.bounds():
                what += f" {self.bounds()}"
        if is_list:
            what = f"a list of {self.size} {what}" if self.size is not None else \
                f"a list of {what}"
        return what + (f" ({self.why})" if self.why else "")


FINITE = Check()  # any finite number
POSITIVE = Check(gt=0)  # learning rates, scales, timeouts
NON_NEGATIVE = Check(ge=0)  # weight decay, worker processes, seeds
AT_LEAST_ONE = Check(ge=1)  # sizes, counts, batch sizes, intervals
FRACTION = Check(ge=0, le=1)  # probabilities, detection-score thresholds, IoU thresholds
SEED = Check(ge=0, le=2**32 - 1)


def one_of(*values: Any, why: str = "") -> Check:
    """A key that takes one of ``values`` only."""
    return Check(choices=tuple(values), why=why)


def declared_ranges(cls: type) -> dict[str, Check]:
    """The ``RANGES`` of a config dataclass and of its base classes (the subclass wins)."""
    out: dict[str, Check] = {}
    for klass in reversed(cls.__mro__):
        out.update(vars(klass).get(RANGES_ATTR, {}))
    return out


def _value_kind(node: Any) -> type | None:
    if isinstance(node, IntegerNode):
        return int
    if isinstance(node, FloatNode):
        return float
    if isinstance(node, BooleanNode):
        return bool
    if isinstance(node, StringNode):
        return str
    return None


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


Origin = Callable[[str], "tuple[str, Any] | None"]


def check_ranges(cfg: Any, origin_of: Origin | None = None, prefix: str = "") -> None:
    """Check every key of ``cfg`` (an OmegaConf config built from dataclasses, or a dataclass
    instance) that its dataclass declares in ``RANGES``; raise ConfigError naming the first value
    not allowed: ``<origin>: optim.lr=nan: expected a finite number > 0``. ``origin_of(key)``
    gives the file or layer that set the key and the value as written there (None: the
    schema's default)."""
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.structured(cfg)
    cls = cfg._metadata.object_type
    ranges = declared_ranges(cls) if dataclasses.is_dataclass(cls) else {}
    for name in cfg.keys():
        key = f"{prefix}{name}"
        node = cfg._get_node(name)
        if isinstance(node, DictConfig):
            if not is_open_dict(node) and not node._is_none():
                check_ranges(node, origin_of, key + ".")
            continue
        check = ranges.get(str(name))
        if check is None or node._is_none():
            continue
        if isinstance(node, ListConfig):
            values = OmegaConf.to_container(node, resolve=True)
            kind = node._metadata.element_type
            ok = (check.size is None or len(values) == check.size) and \
                all(v is None or check.accepts(v) for v in values)
            shown, expected = _shown(values), check.expected(kind, is_list=True)
        else:
            value = cfg[name]
            ok = check.accepts(value)
            shown, expected = _shown(value), check.expected(_value_kind(node) or type(value))
        if not ok:
            found = origin_of(key) if origin_of is not None else None
            where = ""
            if found is not None:
                where = f"{found[0]}: "
                written = found[1]
                if isinstance(written, (DictConfig, ListConfig)):
                    written = OmegaConf.to_container(written)
                if written is not None and not isinstance(written, (dict, str)):
                    shown = _shown(written)  # as typed: 2, not the converted 2.0
            raise ConfigError(f"{where}{key}={shown}: expected {expected}")


def _type_words(node: Any) -> str:
    """What a node of the schema holds, in words (for a value of the wrong type)."""
    if isinstance(node, DictConfig):
        words = "a mapping of keys"
    elif isinstance(node, ListConfig):
        element = node._metadata.element_type
        inner = {int: "whole numbers", float: "numbers", bool: "true/false values",
                 str: "strings"}.get(element, "values")
        words = f"a list of {inner}"
    else:
        words = {int: "a whole number (int)", float: "a number (float)", bool: "true or false",
                 str: "a string"}.get(_value_kind(node), "a value of another type")
    if isinstance(node, (DictConfig, ListConfig, ValueNode)) and node._is_optional():
        words += " or null"
    return words


def _schema_node(schema: DictConfig, key: str) -> Any:
    """The node of ``schema`` at dotted ``key`` (``a.b[1]``), or None."""
    node: Any = schema
    for part in re.findall(r"[^.\[\]]+", key):
        if isinstance(node, DictConfig) and part in node:
            node = node._get_node(part)
        elif isinstance(node, ListConfig) and part.isdigit():
            if int(part) < len(node):
                node = node._get_node(int(part))
            else:  # an element beyond the default list: a node of the element type
                element = node._metadata.element_type
                kinds = {int: IntegerNode, float: FloatNode, bool: BooleanNode, str: StringNode}
                return kinds[element]() if element in kinds else None
        else:
            return None
    return node


def load_yaml(path: str | Path) -> DictConfig:
    """Load a YAML file, resolving its ``_base_`` chain (parents first, child on top)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        cfg = OmegaConf.load(path)
    except Exception as err:  # yaml.YAMLError and friends; keep the file name in the message
        raise ConfigError(f"{path}: not a valid YAML file ({err})") from err
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    bases = cfg.pop(BASE_KEY, None)
    if bases is None:
        return cfg
    if isinstance(bases, str):
        bases = [bases]
    merged = OmegaConf.create()
    for base in bases:
        merged = OmegaConf.merge(merged, load_yaml(path.parent / base))
    return OmegaConf.merge(merged, cfg)


def _all_keys(node: Any, prefix: str = "") -> list[str]:
    keys: list[str] = []
    if isinstance(node, DictConfig):
        for key in node.keys():
            full = f"{prefix}{key}"
            keys.append(full)
            keys.extend(_all_keys(node._get_node(key), full + "."))
    return keys


def _closest(key: str, schema: DictConfig) -> str:
    candidates = _all_keys(schema)
    close = difflib.get_close_matches(key, candidates, n=3, cutoff=0.5)
    if not close:  # try the last component alone, e.g. "attn.reducton" -> "reduction"
        tail = key.rsplit(".", 1)[-1]
        close = [c for c in candidates if difflib.get_close_matches(tail, [c.rsplit(".", 1)[-1]])]
    return ", ".join(close[:3]) if close else "(no similar key)"


def _check_keys(cfg: DictConfig, schema: DictConfig, origin: str, prefix: str = "") -> None:
    for key in cfg.keys():
        full = f"{prefix}{key}"
        if not isinstance(schema, DictConfig) or key not in schema:
            raise ConfigError(
                f"{origin}: unknown config key '{full}'; closest valid keys: "
                f"{_closest(full, schema_root(schema))}"
            )
        child, schema_child = cfg._get_node(key), schema._get_node(key)
        if isinstance(schema_child, DictConfig) and not is_open_dict(schema_child):
            if isinstance(child, DictConfig):
                _check_keys(child, schema_child, origin, full + ".")
            elif not child._is_none():  # optim=3: a value where a group of keys belongs
                inner = ", ".join(f"{full}.{k}" for k in list(schema_child.keys())[:3])
                raise ConfigError(f"{origin}: {full}={_shown(cfg[key])}: expected a mapping of "
                                  f"keys ({inner}, ...)")


def is_open_dict(node: DictConfig) -> bool:
    """A field typed ``dict[str, Any]``: its keys belong to whoever reads it (e.g. an attention
    block's ``options``, checked against the block's own dataclass), not to the schema."""
    return node._metadata.object_type in (None, dict)


def schema_root(node: DictConfig) -> DictConfig:
    root = node
    while root._get_parent() is not None:
        root = root._get_parent()
    return root


def _layers(
    path: str | Path | None, overrides: Sequence[str], base: Mapping[str, Any] | None,
    base_origin: str = "preset",
) -> list[tuple[str, DictConfig]]:
    """The config layers above the schema's defaults, bottom first, each with its origin."""
    layers: list[tuple[str, DictConfig]] = []
    if base:
        layers.append((base_origin, OmegaConf.create(dict(base))))
    if path is not None:
        layers.append((str(path), load_yaml(path)))
    if overrides:
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"overrides must look like key=value, got {bad}")
        layers.append(("command line", _read_overrides(overrides)))
    return layers


def _read_overrides(overrides: Sequence[str]) -> DictConfig:
    """``key=value`` strings as one layer; a value that is not readable YAML (``lr=[``) is
    refused naming it."""
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except Exception:  # noqa: BLE001 - yaml's parser errors; find the override to name
        for override in overrides:
            try:
                OmegaConf.from_dotlist([override])
            except Exception as err:  # noqa: BLE001
                first = str(err).strip().splitlines()
                raise ConfigError(f"command line: {override}: not a readable value "
                                  f"({first[0] if first else type(err).__name__})") from None
        raise


def peek(
    key: str,
    default: Any,
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    base: dict[str, Any] | None = None,
) -> Any:
    """The value that ``key`` (dotted) will have once the layers are merged, read before any
    schema is applied: a key that picks the schema itself (``model.name``) is read this way."""
    value = default
    for _, layer in _layers(path, overrides, base):
        found = OmegaConf.select(layer, key, default=None)
        if found is not None:
            value = found
    return value


def _origin_finder(layers: list[tuple[str, DictConfig]]) -> Origin:
    """key -> (the origin of the topmost layer that sets it, the value written there), or None
    for a key left at the schema's default."""
    missing = object()

    def origin_of(key: str) -> tuple[str, Any] | None:
        for origin, layer in reversed(layers):
            try:
                value = OmegaConf.select(layer, key, default=missing)
            except Exception:  # noqa: BLE001 - an interpolation that resolves elsewhere
                value = None
            if value is not missing:
                return origin, value
        return None

    return origin_of


def _type_error(err: ValidationError, origin: str, schema: DictConfig) -> ConfigError:
    """A value of the wrong type, in one line: ``optim.lr=abc: expected a number (float)``."""
    key = str(getattr(err, "full_key", "") or "")
    node = _schema_node(schema, key) if key else None
    if node is None:  # no key to name: the library's first line
        first = str(err.msg if hasattr(err, "msg") else err).strip().splitlines()
        return ConfigError(f"{origin}: {first[0] if first else type(err).__name__}")
    value = getattr(err, "value", None)
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value)
    return ConfigError(f"{origin}: {key}={_shown(value)}: expected {_type_words(node)}")


def build_config(
    schema: type[T],
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    base: Mapping[str, Any] | None = None,
    base_origin: str = "preset",
) -> T:
    """Make a validated config object of dataclass type ``schema``.

    Layers, each on top of the previous: the schema's defaults, ``base`` (e.g. a named preset,
    or a saved config; ``base_origin`` names it in errors), the YAML file at ``path`` and the
    ``key=value`` ``overrides``. Every key must exist in the schema, every value must have its
    type, and the keys declared in the dataclasses' ``RANGES`` must be in range
    (:func:`check_ranges`); a refusal names the layer, the key, the value and what is expected.
    Returns an OmegaConf object that behaves as (and type-checks as) the dataclass.
    """
    structured = OmegaConf.structured(schema)
    layers = _layers(path, overrides, base, base_origin)
    cfg = structured
    for origin, layer in layers:
        _check_keys(layer, structured, origin)
        try:
            cfg = OmegaConf.merge(cfg, layer)
        except ValidationError as err:
            raise _type_error(err, origin, structured) from err
        except ConfigKeyError as err:
            raise ConfigError(f"{origin}: {err.msg if hasattr(err, 'msg') else err}") from err
    check_ranges(cfg, _origin_finder(layers))
    return cfg  # type: ignore[return-value]


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML text (saved next to every output)."""
    return OmegaConf.to_yaml(cfg, resolve=True)


def to_dict(cfg: Any) -> dict[str, Any]:
    """The resolved config as plain Python containers."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return OmegaConf.to_container(OmegaConf.structured(cfg),
                                  resolve=True)  # type: ignore[return-value]
