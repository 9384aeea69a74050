#!/usr/bin/env python3
"""Seed-level spread of a preset's metrics, for `[regress] seed_sd` (issue 18; docs/numerics.md).

Reads bundles (records.jsonl, as `infoat registry export` or `regress --write-baseline` write
them) holding the same preset trained with different seeds, and prints per metric the values
across seeds, their standard deviation s, and the seed component σ_seed = √max(0, s² − p(1−p)/n)
once the binomial sampling variance of n examples is taken out. It then suggests the preset's
`seed_sd` table: `clean` as the largest σ_seed over the runs (each from few seeds), the attacks'
`default` pooled over every run and attack (many degrees of freedom), `adbd` pooled likewise.

  ci/numerics/seed-spread.py BUNDLE_SEED0 BUNDLE_SEED1 BUNDLE_SEED2 [--json]

Only the standard library: it reads records, never the model.
"""

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def draws(bundle):
    """{(run, metric): (value, n, is_proportion)} of one bundle, run = the method kind."""
    runs, out = {}, {}
    lines = (Path(bundle) / "records.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    for r in records:
        if r["kind"] == "run":
            runs[r["record"]["config_hash"]] = r["record"]["config"]["method"]["kind"]
    for r in records:
        if r["kind"] != "eval":
            continue
        e = r["record"]
        run = runs.get(e.get("config_hash"))
        if run is None:
            continue
        out[(run, "clean")] = (e["clean_acc"], e["n"], True)
        for attack, a in e["attacks"].items():
            out[(run, attack)] = (a["robust_acc"], a["total"], True)
            if a.get("adbd") is not None:
                out[(run, attack + ".adbd")] = (a["adbd"], a["total"], False)
    return out


def spread(bundles):
    per = defaultdict(list)
    for b in bundles:
        for key, value in draws(b).items():
            per[key].append(value)
    rows = []
    for (run, metric), vals in sorted(per.items()):
        if len(vals) < 2:
            continue
        xs = [v for v, _, _ in vals]
        n = min(n for _, n, _ in vals)
        proportion = vals[0][2]
        s2 = statistics.variance(xs)
        p = statistics.fmean(xs)
        sampling = p * (1 - p) / n if proportion and n else 0.0
        rows.append(
            {
                "run": run,
                "metric": metric,
                "values": xs,
                "n": n,
                "sd": math.sqrt(s2),
                "sampling_sd": math.sqrt(sampling),
                "seed_sd": math.sqrt(max(0.0, s2 - sampling)),
                "df": len(xs) - 1,
                "s2_minus_sampling": s2 - sampling,
            }
        )
    return rows


def pooled(rows):
    """√ of the df-weighted mean of (s² − sampling variance), floored at 0."""
    df = sum(r["df"] for r in rows)
    if df == 0:
        return None
    return math.sqrt(max(0.0, sum(r["df"] * r["s2_minus_sampling"] for r in rows) / df))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundles", nargs="+", help="bundle folders of the same preset under different seeds")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    a = ap.parse_args()
    rows = spread(a.bundles)
    if not rows:
        sys.exit("no metric is in two or more bundles: give bundles of the same preset under different seeds")
    clean = [r for r in rows if r["metric"] == "clean"]
    adbd = [r for r in rows if r["metric"].endswith(".adbd")]
    attacks = [r for r in rows if r not in clean and r not in adbd]
    suggestion = {
        "clean": max(r["seed_sd"] for r in clean) if clean else None,
        "default": pooled(attacks),
        "adbd": pooled(adbd),
    }
    if a.json:
        print(json.dumps({"rows": rows, "seed_sd": suggestion}, indent=2))
        return
    print(f"{'run':<10} {'metric':<12} {'n':>6} {'values':<28} {'sd':>7} {'sampling':>8} {'σ_seed':>7}")
    for r in rows:
        vals = " ".join(f"{v:.4f}" for v in r["values"])
        print(
            f"{r['run']:<10} {r['metric']:<12} {r['n']:>6} {vals:<28} {r['sd']:7.4f} {r['sampling_sd']:8.4f} {r['seed_sd']:7.4f}"
        )
    print()
    print("suggested [regress] seed_sd:")
    for k, v in suggestion.items():
        print(f"  {k} = {'n/a' if v is None else f'{v:.4f}'}")


if __name__ == "__main__":
    main()
