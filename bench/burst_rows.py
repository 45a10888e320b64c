"""The burst benchmark's rounds taken together, and its rows."""

from __future__ import annotations

from typing import Any

from bench.common import Results, Row

MB = 1_000_000
TARGET = 0.8
RSS_TARGET_MB = 400.0


def combined(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one side as one: images over the sum of their windows; the memory figures of
    the round that peaked highest (the idle ones of the highest idle tree); every check."""
    out = dict(max(runs, key=lambda r: r["peak_mb"]))
    idle = max(runs, key=lambda r: r.get("idle_mb", 0.0))
    out.update({k: v for k, v in idle.items() if k.startswith("idle_")})
    out["seconds"] = sum(r["seconds"] for r in runs)
    for key in ("archived", "not_200", "images", "bytes"):
        if key in out:
            out[key] = sum(r[key] for r in runs)
    out["wrong"] = [w for r in runs for w in r["wrong"]]
    out["cdn"] = {"peak": max(r["cdn"]["peak"] for r in runs),
                  "requests": sum(r["cdn"]["requests"] for r in runs)}
    out["peak_pss_mb"] = max(r["peak_pss_mb"] for r in runs)
    out["round_seconds"] = [r["seconds"] for r in runs]
    out["rounds"] = runs
    return out


def per_round(count: int, side: dict[str, Any]) -> str:
    rounds = side["round_seconds"]
    if len(rounds) == 1:
        return f"{rounds[0]:.1f} s"
    return (f"{len(rounds)} rounds of {count}: "
            + ", ".join(f"{count / s:.1f}" for s in rounds) + " img/s")


def add_rows(results: Results, count: int, total: int, ours: dict[str, Any],
             plain: dict[str, Any]) -> None:
    """`count` images of `total` bytes a round; `ours` and `plain` as combined() makes them."""
    rounds = len(ours["rounds"])
    rate = rounds * count / ours["seconds"] if ours["seconds"] else 0.0
    plain_rate = rounds * count / plain["seconds"]
    ratio = rate / plain_rate
    right = ours["archived"] == rounds * count and not ours["wrong"] and not ours["not_200"]
    checked = (f"{ours['archived']}/{rounds * count} archived, "
               + (f"{len(ours['wrong'])} images wrong or missing" if ours["wrong"]
                  else "every image's SHA-256 right")
               + (f", {ours['not_200']} callbacks not answered 200" if ours["not_200"] else ""))
    results.add(Row(
        "burst", f"afterimage up, {count} PNGs of 1-4 MB: img/s", rate, "img/s", ratio,
        f"≥{TARGET}x copier", right and ratio >= TARGET,
        f"{checked}; {per_round(count, ours)}, from the first callback to the last archived "
        f"(callbacks all sent in {ours['callbacks_seconds']:.2f} s)"
        + ("; a fresh up each round" if rounds > 1 else ""),
        ours))
    results.add(Row("burst", "afterimage up: MB/s", rounds * total / MB / ours["seconds"], "MB/s",
                    ratio, note=f"{total / MB:.0f} MB a round"))
    results.add(Row(
        "burst", "afterimage up: peak RSS of the process tree", ours["peak_mb"], "MB",
        target=f"≤{RSS_TARGET_MB:.0f} MB", ok=ours["peak_mb"] <= RSS_TARGET_MB,
        note=f"{ours['processes']} processes, then: {by_role(ours['at_peak'])}; "
             f"max of {ours['samples']} samples every 50 ms; peak PSS (shared pages counted "
             f"once) {ours['peak_pss_mb']:.0f} MB"))
    results.add(Row("burst", "afterimage up: idle RSS of the tree before", ours["idle_mb"], "MB",
                    note=f"{ours['idle_processes']} processes: {by_role(ours['idle_by_role'])}; "
                         f"PSS {ours['idle_pss_mb']:.0f} MB"))
    results.add(Row("burst", "afterimage up: downloads open at once (CDN peak)",
                    ours["cdn"]["peak"], "conns", note=f"{ours['cdn']['requests']} requests"))
    wrong = (f"{len(plain['wrong'])} images wrong or missing" if plain["wrong"]
             else "every image's SHA-256 right")
    results.add(Row(
        "burst", "copier, 32 at once: img/s", plain_rate, "img/s", 1.0,
        note=f"{plain['images']}/{rounds * count} copied, {wrong}; {per_round(count, plain)}, "
             "from the first GET to the last PUT", extra=plain))
    results.add(Row("burst", "copier: MB/s", rounds * total / MB / plain["seconds"], "MB/s", 1.0))
    results.add(Row("burst", "copier: peak RSS", plain["peak_mb"], "MB",
                    note=f"its own VmHWM {plain['hwm_mb']:.0f} MB; peak PSS "
                         f"{plain['peak_pss_mb']:.0f} MB"))
    results.add(Row("burst", "copier: downloads open at once (CDN peak)", plain["cdn"]["peak"],
                    "conns", note=f"{plain['cdn']['requests']} requests"))


def by_role(mb: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.0f}" for k, v in sorted(mb.items())) + " MB"
