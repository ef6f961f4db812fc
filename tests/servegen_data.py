"""Synthetic ServeGen data directories for the loader tests (no real ServeGen data ships with blis)."""
from __future__ import annotations

import json
from pathlib import Path

WINDOW_STARTS = [0, 600, 1200, 28800, 29400, 30000, 50400, 51000, 51600]


def _pdf(center: int, spread: int) -> str:
    keys = [center - spread, center, center + spread]
    return "{" + ", ".join(f"{k}: {p}" for k, p in zip(keys, (0.25, 0.5, 0.25))) + ",}"


def write_language(root: Path, chunks: int = 7, days: int = 1, patterns: bool = True) -> Path:
    """``chunks`` chunks, each active in a chunk-dependent subset of the nine period windows.
    ``patterns=False``: every row has an empty pattern (poisson windows, no cv in the cohorts)."""
    root.mkdir(parents=True, exist_ok=True)
    for c in range(chunks):
        lines = ["start_time,rate,cv,pattern,shape,scale"]
        for d in range(days):
            for w, start in enumerate(WINDOW_STARTS):
                active = (c + w) % 3 != 0
                rate = 0.0 if not active else 0.5 + 0.25 * c + 0.1 * w + 0.05 * d
                pattern = (("Gamma", "Weibull")[(c + w) % 2]) if patterns else ""
                shape, scale = 0.8 + 0.1 * c, 1.5 + 0.01 * w
                lines.append(f"{start + d * 86400}.0,{rate},{1.2 + 0.1 * c},{pattern},{shape},{scale}")
        (root / f"chunk-{c}-trace.csv").write_text("\n".join(lines) + "\n")
        ds = {}
        for d in range(days):
            for k, ts in enumerate((0, 21600, 43200)):
                ds[str(ts + d * 86400)] = {"input_tokens": _pdf(200 + 50 * c + 10 * k, 40 + d),
                                           "output_tokens": _pdf(100 + 20 * c + 5 * k, 20)}
        ds["64800"] = {"input_tokens": "{}", "output_tokens": "{}"}
        (root / f"chunk-{c}-dataset.json").write_text(json.dumps(ds))
    return root


def write_reasoning(root: Path, chunks: int = 6) -> Path:
    """Reasoning chunks: datasets carry ``reason_ratio``; the best-covered window is 1200 s."""
    root.mkdir(parents=True, exist_ok=True)
    for c in range(chunks):
        lines = []  # no header: the first row sets the field count
        for w, start in enumerate((0, 600, 1200, 1800)):
            rate = 0.0 if (w == 0 and c % 2) or (w == 1 and c % 3 == 0) or w == 3 else 1.0 + c + 0.5 * w
            lines.append(f"{start},{rate},1.0,Gamma,1.0,1.0")
        (root / f"chunk-{c:02d}-trace.csv").write_text("\n".join(lines) + "\n")
        ratio = '{"0.0": 0.3, "0.5": %s, "1.0": %s}' % (0.2 + 0.05 * c, 0.5 - 0.05 * c)
        ds = {"0": {"input_tokens": _pdf(300 + 10 * c, 50), "output_tokens": _pdf(800 + 30 * c, 100),
                    "reason_ratio": ratio}}
        (root / f"chunk-{c:02d}-dataset.json").write_text(json.dumps(ds))
    return root
