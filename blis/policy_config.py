"""``--policy-config`` YAML (BLIS's policy bundle), parsed strictly.

Unknown keys anywhere are errors naming the YAML path.  CLI flags given
explicitly override the bundle (admission policy, token-bucket parameters,
routing policy, routing scorers, scheduler, preemption); tier-shed, GAIE
thresholds, tenant budgets and SLO priorities exist only here.  The autoscaler,
node pools and instance lifecycle sections are validated but not simulated by
this version (they are refused with a clear error).
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
    for sect in ("node_pools", "autoscaler", "instance_lifecycle"):
        v = doc.get(sect)
        if v:
            if sect == "autoscaler" and isinstance(v, dict) and not v.get("interval_us"):
                continue
            b.unsupported_sections.append(sect)
    return b


def load_policy_config(path: str) -> PolicyBundle:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"--policy-config: file must be readable, got {path!r} ({e.strerror})")
    return parse_policy_config(text, where=f"policy-config {path}")
