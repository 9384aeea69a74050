#!/usr/bin/env python3
"""Prints the AutoAttack comparison of ci/bench/aa: the harness's `aa` (infoat eval --json)
beside official AutoAttack's standard cascade (ci/crosscheck/official.py) on one model, images and
device -- both wall-clock times and their ratio, both robust accuracies, and the per-example
comparison (examples only one side breaks, McNemar's exact p) -- as Markdown, and one JSON line
with the same figures last.

    aa_report.py --harness H.json --official O.json [--label NAME] [--machine TEXT]

Times: the harness's is its `aa` attack's `seconds` (the cascade over the clean-correct
examples); official AutoAttack's is its `run_standard_evaluation` call (its own clean pass and
input checks included, a few forward passes). Exit status 0, or 1 when the harness's robust
accuracy is more than 1 point above official AutoAttack's (weaker), 2 when an input is unreadable.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crosscheck"))
from compare import load, mcnemar_p, pct, sets  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--harness", required=True)
    p.add_argument("--official", required=True)
    p.add_argument("--label", default="the model")
    p.add_argument("--machine", default="", help="one line naming the machine, printed under the heading")
    a = p.parse_args()
    h, o = load(a.harness, "harness"), load(a.official, "official AutoAttack")
    ha, oa = h.get("attacks", {}).get("aa"), o.get("attacks", {}).get("aa")
    if ha is None or oa is None:
        sys.exit(f"aa_report.py: {'the harness' if ha is None else 'official AutoAttack'} reported no aa")
    n = h["n"]
    s = sets(ha.get("flags"), oa.get("flags"))
    only_o, only_h = (len(s[0]), len(s[1])) if s else (None, None)
    p_value = mcnemar_p(only_o, only_h) if s else None
    diff = 100 * (ha["robust_acc"] - oa["robust_acc"])
    ratio = oa["seconds"] / ha["seconds"] if ha["seconds"] else float("inf")
    print(f"#### AutoAttack (standard), {a.label}\n")
    if a.machine:
        print(a.machine + "\n")
    print(f"{n} test images, eps {h['attacks']['aa']['eps']:.6f}; clean: harness {h['clean']['correct']}/{n}, "
          f"official side {o['clean']['correct']}/{o['n']}"
          + ("" if (h["clean"]["correct"], n) == (o["clean"]["correct"], o["n"]) else " -- MISMATCH") + "\n")
    print("| side | robust acc | seconds | speed-up over official |")
    print("|---|---|---|---|")
    print(f"| harness `aa` (v{ha.get('version', '?')}) | {pct(ha['robust_acc'])} | {ha['seconds']:.1f} | "
          f"{ratio:.2f}× |")
    print(f"| official AutoAttack {o.get('pyautoattack', '')} | {pct(oa['robust_acc'])} | {oa['seconds']:.1f} | 1× |")
    print()
    line = f"Robust accuracy harness − official: {diff:+.2f} points"
    if s:
        line += f"; official only breaks {only_o}, the harness only {only_h} (McNemar p = {p_value:.2f})"
    print(line + ".")
    stages = oa.get("stages")
    if stages:
        print("Official cascade: " + ", ".join(
            f"after {st['attack']} {pct(st['robust_acc'])} ({st['cumulative_seconds']:.1f} s)" for st in stages) + ".")
    print()
    print(json.dumps({"label": a.label, "n": n, "harness_robust_acc": ha["robust_acc"],
                      "official_robust_acc": oa["robust_acc"], "harness_seconds": ha["seconds"],
                      "official_seconds": oa["seconds"], "speedup": ratio, "official_only": only_o,
                      "harness_only": only_h, "mcnemar_p": p_value, "device": o.get("device")}))
    sys.exit(1 if diff > 1.0 + 1e-9 else 0)


if __name__ == "__main__":
    main()
