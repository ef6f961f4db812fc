"""``--policy-config`` YAML (BLIS's policy bundle), parsed strictly.

Unknown keys anywhere are errors naming the YAML path.  CLI flags given
explicitly override the bundle (admission policy, token-bucket parameters,
routing policy, routing scorers, scheduler, preemption); tier-shed, GAIE
thresholds, tenant budgets and SLO priorities exist only here.  The
``autoscaler``, ``node_pools`` and ``instance_lifecycle`` sections configure
autoscaling (see blis.autoscaler); ``autoscaler.engine`` (a blis extension)
chooses the engine by name.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import yaml

from blis.errors import ConfigError

TOP_KEYS = ("admission", "routing", "priority", "scheduler", "preemption", "tenant_budgets", "node_pools",
            "autoscaler", "instance_lifecycle")
ADMISSION_KEYS = ("policy", "token_bucket_capacity", "token_bucket_refill_rate", "tier_shed_threshold",
                  "tier_shed_min_priority", "gaie_qd_threshold", "gaie_kv_threshold", "slo_priorities",
                  "slo_targets")


@dataclass
class PolicyBundle:
    admission_policy: Optional[str] = None
    token_bucket_capacity: Optional[float] = None
    token_bucket_refill_rate: Optional[float] = None
    tier_shed_threshold: int = 0
    tier_shed_min_priority: Optional[int] = None
    gaie_qd_threshold: float = 5.0
    gaie_kv_threshold: float = 0.8
    slo_priorities: Dict[str, int] = field(default_factory=dict)
    slo_targets: Dict[str, int] = field(default_factory=dict)
    routing_policy: Optional[str] = None
    routing_scorers: List[Tuple[str, float]] = field(default_factory=list)
    scheduler: Optional[str] = None
    preemption_policy: Optional[str] = None
    tenant_budgets: Dict[str, float] = field(default_factory=dict)
    unsupported_sections: List[str] = field(default_factory=list)
    autoscaler: Optional[object] = None    # blis.autoscaler.AutoscalerConfig (interval 0 = off)


def _mapping(v, where):
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise ConfigError(f"{where}: must be a mapping, got {type(v).__name__}")
    return v


def _strict(d, allowed, where):
    for k in d:
        if k not in allowed:
            raise ConfigError(f"{where}.{k}: unknown key; valid: {', '.join(allowed)}")


def _num(v, where, *, integer=False):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not isinstance(v, int)):
        raise ConfigError(f"{where}: must be {'an integer' if integer else 'a number'}, got {v!r}")
    if isinstance(v, float) and not math.isfinite(v):
        raise ConfigError(f"{where}: must be finite, got {v!r}")
    return v


def parse_policy_config(text: str, where: str = "policy-config") -> PolicyBundle:
    from blis.routing import ROUTING_POLICIES, SCORERS
    from blis.schedulers import SCHEDULERS

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML ({e})")
    doc = _mapping(doc, where)
    _strict(doc, TOP_KEYS, where)
    b = PolicyBundle()
    a = _mapping(doc.get("admission"), f"{where}.admission")
    _strict(a, ADMISSION_KEYS, f"{where}.admission")
    if "policy" in a:
        valid = ("always-admit", "token-bucket", "reject-all", "tier-shed", "gaie-legacy")
        if a["policy"] not in valid and a["policy"] != "":
            raise ConfigError(f"{where}.admission.policy: must be one of {', '.join(valid)}, got {a['policy']!r}")
        b.admission_policy = a["policy"] or "always-admit"
    for key in ("token_bucket_capacity", "token_bucket_refill_rate"):
        if key in a:
            v = _num(a[key], f"{where}.admission.{key}")
            if v < 0:
                raise ConfigError(f"{where}.admission.{key}: must be >= 0, got {v}")
            setattr(b, key, float(v))
    if "tier_shed_threshold" in a:
        v = _num(a["tier_shed_threshold"], f"{where}.admission.tier_shed_threshold", integer=True)
        if v < 0:
            raise ConfigError(f"{where}.admission.tier_shed_threshold: must be >= 0, got {v}")
        b.tier_shed_threshold = v
    if "tier_shed_min_priority" in a:
        b.tier_shed_min_priority = _num(a["tier_shed_min_priority"], f"{where}.admission.tier_shed_min_priority",
                                        integer=True)
    elif b.admission_policy == "tier-shed":
        b.tier_shed_min_priority = 3
    if "gaie_qd_threshold" in a:
        v = _num(a["gaie_qd_threshold"], f"{where}.admission.gaie_qd_threshold")
        if not v > 0:
            raise ConfigError(f"{where}.admission.gaie_qd_threshold: must be > 0, got {v}")
        b.gaie_qd_threshold = float(v)
    if "gaie_kv_threshold" in a:
        v = _num(a["gaie_kv_threshold"], f"{where}.admission.gaie_kv_threshold")
        if not (0 < v <= 1):
            raise ConfigError(f"{where}.admission.gaie_kv_threshold: must be in (0, 1], got {v}")
        b.gaie_kv_threshold = float(v)
    for cls, v in _mapping(a.get("slo_priorities"), f"{where}.admission.slo_priorities").items():
        v = _num(v, f"{where}.admission.slo_priorities.{cls}", integer=True)
        if not -100 <= v <= 100:
            raise ConfigError(f"{where}.admission.slo_priorities.{cls}: must be in [-100, 100], got {v}")
        b.slo_priorities[str(cls)] = v
    for cls, v in _mapping(a.get("slo_targets"), f"{where}.admission.slo_targets").items():
        b.slo_targets[str(cls)] = _num(v, f"{where}.admission.slo_targets.{cls}", integer=True)
    r = _mapping(doc.get("routing"), f"{where}.routing")
    _strict(r, ("policy", "scorers"), f"{where}.routing")
    if "policy" in r:
        ROUTING_POLICIES.get(r["policy"] or "")
        b.routing_policy = r["policy"] or "round-robin"
    seen = set()
    for k, sc in enumerate(r.get("scorers") or []):
        w = f"{where}.routing.scorers[{k}]"
        sc = _mapping(sc, w)
        _strict(sc, ("name", "weight"), w)
        name = sc.get("name")
        if name not in SCORERS:
            raise ConfigError(f"{w}.name: must be a known scorer, got {name!r}; valid: {', '.join(SCORERS.names())}")
        if name in seen:
            raise ConfigError(f"{w}.name: scorer {name!r} must appear at most once")
        seen.add(name)
        weight = _num(sc.get("weight"), f"{w}.weight")
        if not weight > 0:
            raise ConfigError(f"{w}.weight: must be > 0, got {weight}")
        b.routing_scorers.append((name, float(weight)))
    p = _mapping(doc.get("priority"), f"{where}.priority")
    _strict(p, ("policy",), f"{where}.priority")
    if "scheduler" in doc and doc["scheduler"] is not None:
        SCHEDULERS.get(doc["scheduler"])
        b.scheduler = doc["scheduler"]
    pr = _mapping(doc.get("preemption"), f"{where}.preemption")
    _strict(pr, ("policy",), f"{where}.preemption")
    if "policy" in pr:
        if pr["policy"] not in ("fcfs", "priority", ""):
            raise ConfigError(f"{where}.preemption.policy: must be fcfs or priority, got {pr['policy']!r}")
        b.preemption_policy = pr["policy"] or "fcfs"
    for tenant, frac in _mapping(doc.get("tenant_budgets"), f"{where}.tenant_budgets").items():
        frac = _num(frac, f"{where}.tenant_budgets.{tenant}")
        if not 0 <= frac <= 1:
            raise ConfigError(f"{where}.tenant_budgets.{tenant}: must be in [0, 1], got {frac}")
        b.tenant_budgets[str(tenant)] = float(frac)
    b.autoscaler = _parse_autoscaling(doc, where)
    return b


def _delay(v, where):
    from blis.autoscaler import DelaySpec
    d = _mapping(v, where)
    _strict(d, ("mean", "stddev"), where)
    vals = {}
    for k in ("mean", "stddev"):
        x = _num(d.get(k, 0), f"{where}.{k}")
        if x < 0:
            raise ConfigError(f"{where}.{k}: must be >= 0 (seconds), got {x}")
        vals[k] = float(x)
    return DelaySpec(**vals)


AUTOSCALER_KEYS = ("interval_us", "scale_up_stabilization_window_us", "scale_down_stabilization_window_us",
                   "hpa_scrape_delay", "analyzer", "engine")
ANALYZER_KEYS = ("kv_cache_threshold", "scale_up_threshold", "scale_down_boundary", "avg_input_tokens")
NODE_POOL_KEYS = ("name", "gpu_type", "gpus_per_node", "gpu_memory_gib", "initial_nodes", "min_nodes", "max_nodes",
                  "provisioning_delay", "cost_per_hour")
LIFECYCLE_KEYS = ("loading_delay", "warm_start_initial_instances")


def _parse_autoscaling(doc, where):
    """The ``autoscaler``, ``node_pools`` and ``instance_lifecycle`` sections (BLIS's
    validation; sub-keys of ``autoscaler`` are read only when ``interval_us`` > 0)."""
    from blis.autoscaler import ENGINES, AnalyzerConfig, AutoscalerConfig, NodePoolConfig

    cfg = AutoscalerConfig()
    a = _mapping(doc.get("autoscaler"), f"{where}.autoscaler")
    _strict(a, AUTOSCALER_KEYS, f"{where}.autoscaler")
    w = f"{where}.autoscaler"
    interval = float(_num(a.get("interval_us", 0), f"{w}.interval_us"))
    if interval < 0:
        raise ConfigError(f"{w}.interval_us: must be >= 0 (0 = disabled), got {interval}")
    for key in ("scale_up_stabilization_window_us", "scale_down_stabilization_window_us"):
        v = _num(a.get(key, 0), f"{w}.{key}")
        if v < 0:
            raise ConfigError(f"{w}.{key}: must be a finite non-negative number, got {v}")
    hpa = _delay(a.get("hpa_scrape_delay"), f"{w}.hpa_scrape_delay")
    an = _mapping(a.get("analyzer"), f"{w}.analyzer")
    _strict(an, ANALYZER_KEYS, f"{w}.analyzer")
    vals = {k: float(_num(an.get(k, 0), f"{w}.analyzer.{k}")) for k in ANALYZER_KEYS}
    if vals["kv_cache_threshold"] != 0 and not 0 < vals["kv_cache_threshold"] <= 1:
        raise ConfigError(f"{w}.analyzer.kv_cache_threshold: must be in (0, 1], got {vals['kv_cache_threshold']}")
    for k in ("scale_up_threshold", "scale_down_boundary", "avg_input_tokens"):
        if vals[k] < 0:
            raise ConfigError(f"{w}.analyzer.{k}: must be > 0, got {vals[k]}")
    defaults = AnalyzerConfig()
    eff = AnalyzerConfig(**{k: vals[k] or getattr(defaults, k) for k in ANALYZER_KEYS})
    if eff.scale_down_boundary >= eff.scale_up_threshold:
        raise ConfigError(f"{w}.analyzer.scale_down_boundary: must be < the effective scale_up_threshold "
                          f"({eff.scale_up_threshold}), got {eff.scale_down_boundary}")
    engine = a.get("engine", "unlimited")
    if engine not in ENGINES:
        raise ConfigError(f"{w}.engine: must be a registered engine, got {engine!r}; valid: {', '.join(ENGINES.names())}")
    if interval > 0:
        cfg.interval_us = interval
        cfg.scale_up_window_us = float(a.get("scale_up_stabilization_window_us", 0))
        cfg.scale_down_window_us = float(a.get("scale_down_stabilization_window_us", 0))
        cfg.hpa_scrape_delay = hpa
        cfg.analyzer = eff
        cfg.engine = engine
    pools = doc.get("node_pools") or []
    if not isinstance(pools, list):
        raise ConfigError(f"{where}.node_pools: must be a list, got {type(pools).__name__}")
    names = set()
    for k, p in enumerate(pools):
        pw = f"{where}.node_pools[{k}]"
        p = _mapping(p, pw)
        _strict(p, NODE_POOL_KEYS, pw)
        name = p.get("name") or ""
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{pw}.name: must be a non-empty string, got {name!r}")
        if name in names:
            raise ConfigError(f"{pw}.name: pool names must be unique, got {name!r} twice")
        names.add(name)
        gpu = p.get("gpu_type") or ""
        if not isinstance(gpu, str) or not gpu:
            raise ConfigError(f"{pw}.gpu_type: must be a non-empty string, got {gpu!r}")
        ints = {key: _num(p.get(key, 0), f"{pw}.{key}", integer=True)
                for key in ("gpus_per_node", "initial_nodes", "min_nodes", "max_nodes")}
        if ints["gpus_per_node"] < 1:
            raise ConfigError(f"{pw}.gpus_per_node: must be >= 1, got {ints['gpus_per_node']}")
        for key in ("initial_nodes", "min_nodes"):
            if ints[key] < 0:
                raise ConfigError(f"{pw}.{key}: must be >= 0, got {ints[key]}")
        if ints["max_nodes"] < ints["initial_nodes"]:
            raise ConfigError(f"{pw}.max_nodes: must be >= initial_nodes ({ints['initial_nodes']}), "
                              f"got {ints['max_nodes']}")
        if ints["min_nodes"] > ints["max_nodes"]:
            raise ConfigError(f"{pw}.min_nodes: must be <= max_nodes ({ints['max_nodes']}), got {ints['min_nodes']}")
        mem = _num(p.get("gpu_memory_gib", 0), f"{pw}.gpu_memory_gib")
        if not mem > 0:
            raise ConfigError(f"{pw}.gpu_memory_gib: must be > 0, got {mem}")
        cost = _num(p.get("cost_per_hour", 0), f"{pw}.cost_per_hour")
        if cost < 0:
            raise ConfigError(f"{pw}.cost_per_hour: must be >= 0, got {cost}")
        cfg.node_pools.append(NodePoolConfig(
            name=name, gpu_type=gpu, gpus_per_node=ints["gpus_per_node"], gpu_memory_gib=float(mem),
            initial_nodes=ints["initial_nodes"], min_nodes=ints["min_nodes"], max_nodes=ints["max_nodes"],
            provisioning_delay=_delay(p.get("provisioning_delay"), f"{pw}.provisioning_delay"),
            cost_per_hour=float(cost)))
    lc = _mapping(doc.get("instance_lifecycle"), f"{where}.instance_lifecycle")
    _strict(lc, LIFECYCLE_KEYS, f"{where}.instance_lifecycle")
    cfg.loading_delay = _delay(lc.get("loading_delay"), f"{where}.instance_lifecycle.loading_delay")
    warm = lc.get("warm_start_initial_instances", False)
    if not isinstance(warm, bool):
        raise ConfigError(f"{where}.instance_lifecycle.warm_start_initial_instances: must be true or false, "
                          f"got {warm!r}")
    cfg.warm_start_initial_instances = warm
    return cfg


def load_policy_config(path: str) -> PolicyBundle:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"--policy-config: file must be readable, got {path!r} ({e.strerror})")
    return parse_policy_config(text, where=f"policy-config {path}")
