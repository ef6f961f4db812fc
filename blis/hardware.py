"""GPU calibration (``hardware_config.json``) and per-model defaults (``defaults.yaml``).

``hardware_config.json`` maps a GPU name to its peak FLOP/s, FP8 FLOP/s, HBM
bandwidth, MFU factors and memory.  Field names match case-insensitively (as
Go's JSON decoder does), ``_comment`` and other unknown keys are ignored and
missing fields are 0.  GPU names themselves are matched exactly.

``hardware_extra.json`` (not part of BLIS) adds more GPUs (H200, B200, ...)
with a ``_sources`` citation per figure.  :func:`get_hardware_calib` and
:func:`load_hardware_configs` read BLIS's table only, exactly as before;
:func:`resolve_hardware_calib` is the lookup that also knows the extra GPUs
(BLIS's entries first; an explicit ``--hardware-config`` file still replaces
everything, as in BLIS).  See docs/kv-and-hardware.md.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple

from .errors import ConfigError

__all__ = [
    "HardwareCalib",
    "ModelDefaults",
    "DATA_DIR",
    "default_hardware_config_path",
    "default_defaults_path",
    "load_hardware_configs",
    "get_hardware_calib",
    "load_defaults_yaml",
    "model_defaults",
    "trained_physics_coefficients",
    "default_extra_hardware_path",
    "load_extra_hardware_configs",
    "extra_hardware_sources",
    "known_hardware",
    "resolve_hardware_calib",
]

DATA_DIR = Path(__file__).resolve().parent / "data"

# JSON key (lower-cased) -> HardwareCalib attribute.
_HW_FIELDS = {
    "tflopspeak": "tflops_peak",
    "tflopsfp8": "tflops_fp8",
    "bwpeaktbs": "bw_peak_tbs",
    "mfuprefill": "mfu_prefill",
    "mfudecode": "mfu_decode",
    "memorygib": "memory_gib",
}


@dataclass(frozen=True)
class HardwareCalib:
    """One GPU's calibration (BLIS ``HardwareCalib``): TFLOP/s, TB/s (1e12 B/s), MFU factors, GiB."""

    tflops_peak: float = 0.0
    tflops_fp8: float = 0.0
    bw_peak_tbs: float = 0.0
    mfu_prefill: float = 0.0
    mfu_decode: float = 0.0
    memory_gib: float = 0.0


@dataclass(frozen=True)
class ModelDefaults:
    """Per-model defaults from ``defaults.yaml`` ``defaults[<model>]``; empty/0 when unset."""

    gpu: str = ""
    tensor_parallelism: int = 0
    hf_repo: str = ""


def default_hardware_config_path() -> Path:
    """The bundled ``hardware_config.json``."""
    return DATA_DIR / "hardware_config.json"


def default_defaults_path() -> Path:
    """The bundled ``defaults.yaml``."""
    return DATA_DIR / "defaults.yaml"


def _calib_from_json(gpu: str, obj: Any, where: str) -> HardwareCalib:
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: entry {gpu!r} must be a JSON object, got {type(obj).__name__}")
    values: Dict[str, float] = {}
    for key, val in obj.items():
        attr = _HW_FIELDS.get(key.lower())
        if attr is None:
            continue
        if val is None:
            continue
        if isinstance(val, bool) or not isinstance(val, (int, float)):
            raise ConfigError(f"{where}: {gpu}.{key} must be a number, got {val!r}")
        values[attr] = float(val)
    return HardwareCalib(**values)


def load_hardware_configs(path: "os.PathLike[str] | str | None" = None) -> Dict[str, HardwareCalib]:
    """All GPU entries of a hardware config file (bundled file when ``path`` is None)."""
    p = Path(path) if path is not None and str(path) != "" else default_hardware_config_path()
    return dict(_load_hardware_configs_cached(*_cache_key(p)))


def _cache_key(p: Path) -> Tuple[str, int, int]:
    """(path, mtime_ns, size): a file rewritten in place is re-read."""
    try:
        st = p.stat()
        return str(p.resolve()), st.st_mtime_ns, st.st_size
    except OSError:
        return str(p), -1, -1


@lru_cache(maxsize=16)
def _load_hardware_configs_cached(path: str, mtime_ns: int, size: int) -> Tuple[Tuple[str, HardwareCalib], ...]:
    where = f"hardware config {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: file must be readable, got {exc.strerror}") from None
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: file must be valid JSON, got error {exc}") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: top level must be a JSON object mapping GPU name -> calibration")
    return tuple((gpu, _calib_from_json(gpu, entry, where)) for gpu, entry in obj.items())


def get_hardware_calib(gpu: str, hardware_config: "os.PathLike[str] | str | None" = None) -> HardwareCalib:
    """Calibration of GPU ``gpu`` (exact name) from ``hardware_config`` (default: bundled file)."""
    table = load_hardware_configs(hardware_config)
    calib = table.get(gpu)
    if calib is None:
        raise ConfigError(f"hardware: GPU must be one of the configured GPUs, got {gpu!r}; valid: {', '.join(sorted(table))}")
    return calib


def load_defaults_yaml(path: "os.PathLike[str] | str | None" = None) -> Mapping[str, Any]:
    """The parsed ``defaults.yaml`` (bundled file when ``path`` is None); cached per path."""
    p = Path(path) if path is not None and str(path) != "" else default_defaults_path()
    return _load_defaults_cached(*_cache_key(p))


@lru_cache(maxsize=8)
def _load_defaults_cached(path: str, mtime_ns: int, size: int) -> Mapping[str, Any]:
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"defaults file {path}: file must be readable, got {exc.strerror}") from None
    try:
        # libyaml's parser when PyYAML has it: defaults.yaml parses in ~10 ms instead of ~100 ms
        obj = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 (safe loader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"defaults file {path}: file must be valid YAML, got error {exc}") from None
    if obj is None:
        obj = {}
    if not isinstance(obj, dict):
        raise ConfigError(f"defaults file {path}: top level must be a mapping, got {type(obj).__name__}")
    return obj


def model_defaults(model_name: str, defaults_path: "os.PathLike[str] | str | None" = None) -> ModelDefaults:
    """GPU, TP and HF repo for ``model_name`` (lower-cased) from ``defaults.yaml``; empty when absent."""
    cfg = load_defaults_yaml(defaults_path)
    table = cfg.get("defaults") or {}
    entry = table.get(model_name.lower()) if isinstance(table, dict) else None
    if not isinstance(entry, dict):
        return ModelDefaults()
    gpu = entry.get("GPU", "")
    tp = entry.get("tensor_parallelism", 0)
    repo = entry.get("hf_repo", "")
    if not isinstance(gpu, str) or not isinstance(repo, str):
        raise ConfigError(f"defaults.yaml: defaults[{model_name!r}].GPU/hf_repo must be strings, got {gpu!r}/{repo!r}")
    if isinstance(tp, bool) or not isinstance(tp, int):
        raise ConfigError(f"defaults.yaml: defaults[{model_name!r}].tensor_parallelism must be an integer, got {tp!r}")
    return ModelDefaults(gpu=gpu, tensor_parallelism=tp, hf_repo=repo)


def trained_physics_coefficients(
    defaults_path: "os.PathLike[str] | str | None" = None,
) -> Tuple[List[float], List[float]]:
    """``(alpha, beta)`` from ``defaults.yaml`` ``trained_physics_coefficients``; empty lists when absent."""
    cfg = load_defaults_yaml(defaults_path)
    section = cfg.get("trained_physics_coefficients") or {}
    if not isinstance(section, dict):
        raise ConfigError("defaults.yaml: trained_physics_coefficients must be a mapping")

    def floats(key: str) -> List[float]:
        vals = section.get(key) or []
        if not isinstance(vals, list):
            raise ConfigError(f"defaults.yaml: trained_physics_coefficients.{key} must be a list, got {vals!r}")
        out = []
        for v in vals:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"defaults.yaml: trained_physics_coefficients.{key} must hold numbers, got {v!r}")
            out.append(float(v))
        return out

    return floats("alpha_coeffs"), floats("beta_coeffs")


# ---------------------------------------------------------------- extra GPUs
# BLIS's hardware_config.json stays byte-identical to BLIS's; the GPUs it lacks
# live in hardware_extra.json (same schema, plus a ``_sources`` object per GPU
# citing the vendor datasheet of every figure; top-level keys starting with
# "_" are comments).


def default_extra_hardware_path() -> Path:
    """The bundled ``hardware_extra.json`` (GPUs beyond BLIS's table)."""
    return DATA_DIR / "hardware_extra.json"


@lru_cache(maxsize=8)
def _load_extra_cached(path: str, mtime_ns: int, size: int) -> Tuple[Tuple[str, HardwareCalib, Tuple[Tuple[str, str], ...]], ...]:
    where = f"extra hardware config {path}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: file must be readable, got {exc.strerror}") from None
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: file must be valid JSON, got error {exc}") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: top level must be a JSON object mapping GPU name -> calibration")
    out = []
    for gpu, entry in obj.items():
        if gpu.startswith("_"):
            continue
        calib = _calib_from_json(gpu, entry, where)
        src = entry.get("_sources", {})
        if not isinstance(src, dict) or not all(isinstance(v, str) for v in src.values()):
            raise ConfigError(f"{where}: {gpu}._sources must be an object of strings, got {src!r}")
        out.append((gpu, calib, tuple(src.items())))
    return tuple(out)


def load_extra_hardware_configs(path: "os.PathLike[str] | str | None" = None) -> Dict[str, HardwareCalib]:
    """The GPUs of ``hardware_extra.json`` (bundled file when ``path`` is None)."""
    p = Path(path) if path is not None and str(path) != "" else default_extra_hardware_path()
    return {gpu: calib for gpu, calib, _ in _load_extra_cached(*_cache_key(p))}


def extra_hardware_sources(path: "os.PathLike[str] | str | None" = None) -> Dict[str, Dict[str, str]]:
    """``{gpu: {field: citation}}`` from the ``_sources`` objects of ``hardware_extra.json``."""
    p = Path(path) if path is not None and str(path) != "" else default_extra_hardware_path()
    return {gpu: dict(src) for gpu, _, src in _load_extra_cached(*_cache_key(p))}


def known_hardware(hardware_config: "os.PathLike[str] | str | None" = None) -> Dict[str, HardwareCalib]:
    """Every GPU :func:`resolve_hardware_calib` accepts.

    With ``hardware_config`` given: that file's table alone (it replaces the
    bundled tables, as ``--hardware-config`` does in BLIS).  Otherwise BLIS's
    bundled table plus the extra GPUs; a BLIS name is never overridden.
    """
    if hardware_config is not None and str(hardware_config) != "":
        return load_hardware_configs(hardware_config)
    table = load_extra_hardware_configs()
    table.update(load_hardware_configs())
    return table


def resolve_hardware_calib(gpu: str, hardware_config: "os.PathLike[str] | str | None" = None) -> HardwareCalib:
    """Calibration of GPU ``gpu`` (exact name), knowing BLIS's GPUs and the extra ones.

    ``hardware_config`` given: exactly :func:`get_hardware_calib` on that file.
    Otherwise BLIS's bundled table is consulted first, then ``hardware_extra.json``;
    an unknown name raises :class:`ConfigError` listing both sets of names.
    """
    if hardware_config is not None and str(hardware_config) != "":
        return get_hardware_calib(gpu, hardware_config)
    blis_table = load_hardware_configs()
    calib = blis_table.get(gpu)
    if calib is not None:
        return calib
    extra = load_extra_hardware_configs()
    calib = extra.get(gpu)
    if calib is not None:
        return calib
    raise ConfigError(
        f"hardware: GPU must be one of the configured GPUs, got {gpu!r}; valid: {', '.join(sorted(blis_table))}; "
        f"extra ({default_extra_hardware_path().name}): {', '.join(sorted(set(extra) - set(blis_table)))}"
    )
