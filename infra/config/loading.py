"""Loading a stack file's config: namespaces split, secrets masked, defaults merged, one-line errors."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from .. import layout, naming
from .models import ModelSettings, Pin
from .stage import TOP_LEVEL_KEYS, StackConfig
from .types import CONFIG_NAMESPACE, PASSTHROUGH_NAMESPACES, SECRET_PLACEHOLDER, ConfigError


def _all_aliases(model: type[BaseModel], seen: set[type[BaseModel]] | None = None) -> set[str]:
    """Every camelCase key any block accepts, for "did you mean" suggestions."""
    seen = seen if seen is not None else set()
    if model in seen:
        return set()
    seen.add(model)
    names: set[str] = set()
    for name, field in model.model_fields.items():
        names.add(field.alias or name)
        for arg in _field_models(field.annotation):
            names |= _all_aliases(arg, seen)
    return names


def _field_models(annotation: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        found.append(annotation)
    for arg in getattr(annotation, "__args__", ()) or ():
        found.extend(_field_models(arg))
    return found


_VOCABULARY = sorted(_all_aliases(StackConfig) | set(TOP_LEVEL_KEYS))


def suggest(word: str, choices: list[str] | tuple[str, ...] | set[str]) -> str:
    """A ' (did you mean X?)' suffix, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _strip_secrets(value: Any) -> tuple[Any, bool]:
    """Replace Pulumi `secure:` values by a placeholder; offline nobody can (or should) decrypt them."""
    if isinstance(value, Mapping):
        if set(value) == {"secure"}:
            return SECRET_PLACEHOLDER, True
        out: dict[str, Any] = {}
        any_secret = False
        for k, v in value.items():
            out[k], secret = _strip_secrets(v)
            any_secret |= secret
        return out, any_secret
    if isinstance(value, list):
        items = [_strip_secrets(v) for v in value]
        return [v for v, _ in items], any(s for _, s in items)
    return value, False


def split_config(raw: Mapping[str, Any], source: str) -> tuple[dict[str, Any], dict[str, Any], set[str]]:
    """Split flat Pulumi config (`ns:key` → value) into mlinfra keys, provider keys and the secret key names."""
    ours: dict[str, Any] = {}
    others: dict[str, Any] = {}
    secrets: set[str] = set()
    for full_key, value in raw.items():
        namespace, sep, key = str(full_key).partition(":")
        if not sep:
            raise ConfigError(
                source, str(full_key), f"config keys need a namespace, e.g. {CONFIG_NAMESPACE}:{full_key}"
            )
        clean, secret = _strip_secrets(value)
        if secret:
            secrets.add(full_key)
        if namespace == CONFIG_NAMESPACE:
            if key not in TOP_LEVEL_KEYS:
                raise ConfigError(source, full_key, "unknown key" + suggest(key, TOP_LEVEL_KEYS))
            ours[key] = clean
        elif namespace in PASSTHROUGH_NAMESPACES:
            others[full_key] = clean
        else:
            raise ConfigError(
                source,
                full_key,
                f"unknown namespace {namespace!r}" + suggest(namespace, (CONFIG_NAMESPACE, *PASSTHROUGH_NAMESPACES)),
            )
    return ours, others, secrets


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge two config blocks; the override wins key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _key_path(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p != "[key]"]
    if not parts:
        return f"{CONFIG_NAMESPACE}:"
    head = parts[0]
    prefix = f"aws:{head}" if head == "region" else f"{CONFIG_NAMESPACE}:{head}"
    return ".".join([prefix, *parts[1:]])


def _describe(error: Mapping[str, Any]) -> str:
    kind = error["type"]
    loc = error["loc"]
    if kind == "extra_forbidden":
        return "unknown key" + suggest(str(loc[-1]), _VOCABULARY)
    if kind == "missing":
        return "required key is missing"
    message = str(error["msg"])
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    given = error.get("input")
    if kind.startswith(("literal_", "int_", "float_", "bool_", "string_", "greater", "less", "list_", "dict_")):
        return f"{message} (got {given!r})"
    return message


def load_stack_config(
    raw: Mapping[str, Any],
    *,
    project: str,
    stage: str,
    source: str,
) -> StackConfig:
    """Validate flat Pulumi config (`mlinfra:models` → {...}, `aws:region` → ...) into a StackConfig.

    `raw` is project-level config overlaid by the stack's; `source` names the file in errors. Model entries inherit
    `mlinfra:modelDefaults` key by key. Raises ConfigError naming the first wrong key.
    """
    ours, others, _ = split_config(raw, source)
    defaults = ours.get("modelDefaults") or {}
    models = ours.get("models") or {}
    if not isinstance(models, Mapping):
        raise ConfigError(source, f"{CONFIG_NAMESPACE}:models", "must be a mapping of model name to settings")
    if not isinstance(defaults, Mapping):
        raise ConfigError(source, f"{CONFIG_NAMESPACE}:modelDefaults", "must be a mapping of settings")
    data = dict(ours)
    if "aws:region" in others:
        data["region"] = others["aws:region"]
    data["project"] = project
    data["stage"] = stage
    # Validate the defaults alone first, so an error in them is reported under modelDefaults, not under a model.
    try:
        ModelSettings.model_validate(defaults)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(source, _key_path(("modelDefaults", *err["loc"])), _describe(err)) from None
    data["models"] = {
        name: _merge(defaults, spec if isinstance(spec, Mapping) else {}) for name, spec in models.items()
    }
    try:
        config = StackConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        if loc == ("region",) and err["type"] == "missing":
            raise ConfigError(source, "aws:region", "required key is missing (e.g. aws:region: eu-west-1)") from None
        if loc == ("stage",):
            raise ConfigError(source, "stack name", _describe(err)) from None
        raise ConfigError(source, _key_path(loc), _describe(err)) from None
    # Names derived from project, stage and model must fit AWS's limits (checked once all three are known).
    try:
        naming.check_stage_names(
            config.project, config.stage, config.region, config.account_id, config.registry.bucket_name
        )
    except ValueError as exc:
        raise ConfigError(source, f"{CONFIG_NAMESPACE}:registry.bucketName", str(exc)) from None
    for model, model_cfg in config.models.items():
        gate_from = model_cfg.gates.from_stage
        if gate_from is not None and gate_from not in config.stages:
            raise ConfigError(
                source,
                f"{CONFIG_NAMESPACE}:models.{model}.gates.fromStage",
                f"{gate_from!r} is not a stage{suggest(gate_from, config.stages)} (stages: {', '.join(config.stages)})",
            )
        try:
            naming.check_model_names(config.project, config.stage, model)
        except ValueError as exc:
            raise ConfigError(source, f"{CONFIG_NAMESPACE}:models.{model}", str(exc)) from None
        if model_cfg.pinned is not None:
            _check_pin_location(config, model, model_cfg.pinned, source)
    return config


def _check_pin_location(config: StackConfig, model: str, pin: Pin, source: str) -> None:
    """A pinned artifact must be this stage's registry copy of exactly that digest, or the endpoint cannot read it."""
    key = layout.artifact_key(model, pin.digest)
    bucket, _, found_key = pin.artifact.removeprefix("s3://").partition("/")
    if config.registry.bucket_name is not None or config.account_id is not None:
        expected_bucket = config.registry.bucket_name or naming.registry_bucket(
            config.project, config.stage, config.region, config.account_id or ""
        )
        bucket_ok = bucket == expected_bucket
    else:
        expected_bucket = naming.registry_bucket(config.project, config.stage, config.region, "<account>")
        bucket_ok = (
            re.fullmatch(re.escape(expected_bucket).replace(re.escape("<account>"), r"\d{12}"), bucket) is not None
        )
    if not bucket_ok or found_key != key:
        raise ConfigError(
            source,
            f"{CONFIG_NAMESPACE}:models.{model}.pinned.artifact",
            f"{pin.artifact!r} is not this stage's copy of {pin.digest[:19]}...; expected s3://{expected_bucket}/{key} "
            "(promote with `mlinfra promote`, which copies it there)",
        )
