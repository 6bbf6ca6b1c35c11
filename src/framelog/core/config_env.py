"""The environment's part of the configuration: one rule for every key, plus the older names.

The rule: ``FRAMELOG__<KEY>__<KEY>...=<value>`` sets the key at that path of
framelog.yaml. Names are case-insensitive, ``__`` separates the levels, and an
item of a list is named by its index or by its ``name``
(``FRAMELOG__PROCESSING_PIPELINE__STAGES__TRANSCODING__TIMEOUT=60s`` or
``...__STAGES__1__TIMEOUT=60s``). The value is read as YAML, as the file is:
``60`` is a number, ``true`` a boolean, ``[a, b]`` a list, ``{k: v}`` a mapping
(it replaces the whole value); quote a string YAML would read otherwise
(``'"10:20"'``). The key must exist in the schema like any key of the file: a
misspelt variable is refused with its name, not ignored.

The older names (``ENV_ALIASES``) still work; their values are taken as plain
strings and an empty one counts as unset. Where both name one key, the
``FRAMELOG__`` variable wins.
"""
from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from framelog.core.errors import ConfigError

ENV_PREFIX = "FRAMELOG__"
ENV_SEPARATOR = "__"

# older variable -> the key it sets (kept working for compose files and scripts)
ENV_ALIASES: dict[str, tuple[str, ...]] = {
    "FRAMELOG_STATE_DIR": ("stack", "state_dir"),
    "FRAMELOG_METRICS_HOST": ("stack", "metrics_host"),
    "FRAMELOG_KAFKA_BOOTSTRAP": ("kafka", "bootstrap_servers"),
    "FRAMELOG_SCHEMA_REGISTRY_URL": ("kafka", "schema_registry_url"),
    "FRAMELOG_S3_ENDPOINT": ("object_storage", "endpoint_url"),
    "FRAMELOG_S3_BUCKET": ("object_storage", "bucket"),
    "FRAMELOG_S3_VAULT_BUCKET": ("object_storage", "vault_bucket"),
    "FRAMELOG_S3_ACCESS_KEY": ("object_storage", "access_key"),
    "FRAMELOG_S3_SECRET_KEY": ("object_storage", "secret_key"),
    "FRAMELOG_CLICKHOUSE_DSN": ("clickhouse", "dsn"),
    "FRAMELOG_TOKEN_SECRET": ("security", "token_secret"),
    "FRAMELOG_KEYRING_FILE": ("auth", "keyring_file"),
    "FRAMELOG_KEYRING": ("auth", "keyring_json"),
    "FRAMELOG_OPS_HOST": ("auth", "ops_host"),
}

# keys only the environment may set: secrets never written into a file
ENV_ONLY: dict[tuple[str, ...], str] = {
    ("object_storage", "access_key"): "S3 credentials do not belong in the configuration file: stack up "
                                      "generates them; set FRAMELOG_S3_ACCESS_KEY/SECRET_KEY to override",
    ("object_storage", "secret_key"): "S3 credentials do not belong in the configuration file: stack up "
                                      "generates them; set FRAMELOG_S3_ACCESS_KEY/SECRET_KEY to override",
    ("auth", "keyring_json"): "the keyring does not belong in the configuration file: keyring_file names "
                              "its file, or FRAMELOG_KEYRING holds it",
}


@dataclass(frozen=True)
class EnvSetting:
    """One variable's contribution: the path it names (as written) and its value."""
    variable: str
    path: tuple[str, ...]
    value: Any


def env_settings(environ: Mapping[str, str]) -> list[EnvSetting]:
    """The settings the environment makes: aliases first, then ``FRAMELOG__`` variables (which win)."""
    out = [EnvSetting(name, path, environ[name]) for name, path in ENV_ALIASES.items() if environ.get(name)]
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        parts = tuple(p.lower() for p in name[len(ENV_PREFIX):].split(ENV_SEPARATOR))
        if not all(parts):
            raise ConfigError(name, f"expected {ENV_PREFIX}<KEY>{ENV_SEPARATOR}<KEY>..., with no empty level")
        raw = environ[name]
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(name, f"the value is not valid YAML: {exc}") from None
        out.append(EnvSetting(name, parts, value))
    return out


def refuse_env_only(data: Any, source: str = "") -> None:
    """Secrets written into a file are refused, naming the key."""
    for path, why in ENV_ONLY.items():
        node = data
        for part in path:
            node = node.get(part) if isinstance(node, Mapping) else None
        if node is not None:
            where = f" ({source})" if source else ""
            raise ConfigError(".".join(path), why + where)


def _slug(text: Any) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_")


def _list_index(items: list[Any], part: str, setting: EnvSetting) -> int:
    if part.isdigit() and int(part) < len(items):
        return int(part)
    named = [i for i, item in enumerate(items) if isinstance(item, Mapping) and _slug(item.get("name")) == part]
    if len(named) == 1:
        return named[0]
    names = [str(item.get("name")) for item in items if isinstance(item, Mapping) and "name" in item]
    raise ConfigError(setting.variable, f"no item {part!r} in this list (an index below {len(items)}"
                                        + (f", or one of the names {names})" if names else ")"))


def apply_env(data: Any, settings: list[EnvSetting]) -> tuple[Any, dict[tuple[Any, ...], str]]:
    """``data`` with each setting laid over it, and where each came from (validation loc -> variable)."""
    tree = copy.deepcopy(data) if data is not None else {}
    origins: dict[tuple[Any, ...], str] = {}
    for s in settings:
        node: Any = tree
        loc: list[Any] = []
        for i, part in enumerate(s.path):
            last = i == len(s.path) - 1
            if isinstance(node, list):
                key: Any = _list_index(node, part, s)
            elif isinstance(node, dict):
                # a mapping's keys are matched case-insensitively (storage tier and workspace names are user's)
                key = next((k for k in node if isinstance(k, str) and k.lower() == part), part)
            else:
                raise ConfigError(s.variable, f"{'.'.join(map(str, loc)) or '<root>'} holds a single value, "
                                              f"not keys")
            loc.append(key)
            if last:
                node[key] = s.value
            else:
                if isinstance(node, dict) and key not in node:
                    node[key] = {}
                node = node[key]
        origins[tuple(loc)] = s.variable
    return tree, origins
