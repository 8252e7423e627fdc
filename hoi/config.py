"""One way to configure everything: YAML files with ``_base_`` inheritance, ``key=value``
overrides from the command line, validated against typed dataclasses (OmegaConf).

A YAML file may name one or more parent files in ``_base_`` (paths relative to itself); the
parents are merged first, the child on top. Every key, in files and overrides, must exist in
the schema: a typo is an error that names the closest valid keys.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from hoi.errors import UserError

T = TypeVar("T")

BASE_KEY = "_base_"


class ConfigError(UserError, ValueError):
    """A config file or override that does not fit the schema."""


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
        if isinstance(child, DictConfig) and isinstance(schema_child, DictConfig) \
                and not is_open_dict(schema_child):
            _check_keys(child, schema_child, origin, full + ".")


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
    path: str | Path | None, overrides: Sequence[str], base: dict[str, Any] | None
) -> list[tuple[str, DictConfig]]:
    """The config layers above the schema's defaults, bottom first, each with its origin."""
    layers: list[tuple[str, DictConfig]] = []
    if base:
        layers.append(("preset", OmegaConf.create(base)))
    if path is not None:
        layers.append((str(path), load_yaml(path)))
    if overrides:
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"overrides must look like key=value, got {bad}")
        layers.append(("command line", OmegaConf.from_dotlist(list(overrides))))
    return layers


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


def build_config(
    schema: type[T],
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    base: dict[str, Any] | None = None,
) -> T:
    """Make a validated config object of dataclass type ``schema``.

    Layers, each on top of the previous: the schema's defaults, ``base`` (e.g. a named preset),
    the YAML file at ``path`` and the ``key=value`` ``overrides``. Returns an OmegaConf object
    that behaves as (and type-checks as) the dataclass.
    """
    structured = OmegaConf.structured(schema)
    layers = _layers(path, overrides, base)
    cfg = structured
    for origin, layer in layers:
        _check_keys(layer, structured, origin)
        try:
            cfg = OmegaConf.merge(cfg, layer)
        except (ValidationError, ConfigKeyError) as err:
            raise ConfigError(f"{origin}: {err.msg if hasattr(err, 'msg') else err}") from err
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
