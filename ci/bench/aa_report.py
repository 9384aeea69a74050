#!/usr/bin/env python3
"""Prints the AutoAttack comparison of ci/bench/aa: the harness's `aa` (infoat eval --json)
beside official AutoAttack's standard cascade (ci/crosscheck/official.py) on one model, images and
device -- both wall-clock times and their ratio, both robust accuracies, and the per-example
comparison (examples only one side breaks, McNemar's exact p) -- as Markdown, and one JSON line
with the same figures last.

    aa_report.py --harness H.json --official O.json [--pass-costs P.json] [--batch-size B]
                 [--label NAME] [--machine TEXT]
    aa_report.py --harness H.json [--batch-size B] --stage-batches   (the batch size each AA
                 component saw, comma-separated: what ci/bench/pass_cost.py is asked to time)

Times: the harness's is its `aa` attack's `seconds` (the cascade over the clean-correct
examples); official AutoAttack's is its `run_standard_evaluation` call (its own clean pass and
input checks included, a few forward passes). Exit status 0, or 1 when the harness's robust
accuracy is more than 1 point above official AutoAttack's (weaker), 2 when an input is unreadable.

Per component (the harness's `stages`, official AutoAttack's log): examples attacked, images sent
through the model without and with an input gradient, both sides' seconds, and -- with
--pass-costs (ci/bench/pass_cost.py at the components' batch sizes) -- the pass bound: those
images times what one pass costs in PyTorch alone at that batch size, the faster memory format
counting. No implementation that makes the same passes through the same kernels can be faster
than the bound, so official seconds / bound is the largest speed-up over official AutoAttack
that the cascade's definition leaves on this machine.
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
    p.add_argument("--official")
    p.add_argument("--label", default="the model")
    p.add_argument("--machine", default="", help="one line naming the machine, printed under the heading")
    p.add_argument("--pass-costs", help="ci/bench/pass_cost.py's JSON at the components' batch sizes")
    p.add_argument("--batch-size", type=int, help="the harness run's --batch-size [default: all images at once]")
    p.add_argument("--stage-batches", action="store_true",
                   help="print only the batch size each AA component saw, comma-separated")
    a = p.parse_args()
    if a.stage_batches:
        h = load(a.harness, "harness")
        n = h["n"]
        stages = h.get("attacks", {}).get("aa", {}).get("stages") or []
        print(",".join(str(stage_batch(st["attacked"], n, a.batch_size or n)) for st in stages))
        return
    if not a.official:
        p.error("--official is required (except with --stage-batches)")
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
    profile = components(ha, oa, n, a.batch_size or n, load(a.pass_costs, "pass costs") if a.pass_costs else None)
    if profile:
        print_profile(profile)
    print()
    print(json.dumps({"label": a.label, "n": n, "harness_robust_acc": ha["robust_acc"],
                      "official_robust_acc": oa["robust_acc"], "harness_seconds": ha["seconds"],
                      "official_seconds": oa["seconds"], "speedup": ratio, "official_only": only_o,
                      "harness_only": only_h, "mcnemar_p": p_value, "device": o.get("device"),
                      "components": profile}))
    sys.exit(1 if diff > 1.0 + 1e-9 else 0)


def stage_batch(attacked, n, bs):
    """The batch a component saw: its examples spread over the evaluation's batches (Square's
    shrinks as points break; on a robust model they rarely do)."""
    batches = max(1, -(-n // bs))
    return max(1, round(attacked / batches))


def components(ha, oa, n, bs, costs):
    """One row per component: what the harness's stage did and cost, official AutoAttack's time
    for the same component, and the pass bound when costs are given."""
    stages = ha.get("stages") or []
    official = {}
    previous = 0.0
    for st in oa.get("stages") or []:
        official[st["attack"].replace("-", "_")] = st["cumulative_seconds"] - previous
        previous = st["cumulative_seconds"]
    rows = []
    for st in stages:
        b = stage_batch(st["attacked"], n, bs)
        row = {"attack": st["attack"], "attacked": st["attacked"], "broken": st["broken"], "batch": b,
               "forward_only_images": st["forward_images"] - st["backward_images"],
               "gradient_images": st["backward_images"], "harness_seconds": st["seconds"],
               "official_seconds": official.get(st["attack"])}
        cell = (costs or {}).get("costs", {}).get(str(b))
        if cell:
            row["bound_seconds"] = (row["forward_only_images"] * cell["forward_s"]
                                    + row["gradient_images"] * cell["gradient_s"]) / b
        rows.append(row)
    return rows


def print_profile(rows):
    bound = all("bound_seconds" in r for r in rows)
    print()
    print("Per component (harness stages; official times from AutoAttack's log"
          + ("; bound = the images × one pass's cost in PyTorch alone at that batch" if bound else "") + "):")
    print()
    head = "| component | attacked | batch | forward-only images | gradient images | harness s | official s |"
    rule = "|---|---|---|---|---|---|---|"
    if bound:
        head += " pass bound s | harness / bound | official / bound |"
        rule += "---|---|---|"
    print(head)
    print(rule)
    total = {"h": 0.0, "o": 0.0, "b": 0.0}
    for r in rows:
        o = r["official_seconds"]
        line = (f"| {r['attack']} | {r['attacked']} | {r['batch']} | {r['forward_only_images']:,} | "
                f"{r['gradient_images']:,} | {r['harness_seconds']:.1f} | {'' if o is None else f'{o:.1f}'} |")
        total["h"] += r["harness_seconds"]
        total["o"] += o or 0.0
        if bound:
            b = r["bound_seconds"]
            total["b"] += b
            line += f" {b:.1f} | {r['harness_seconds'] / b:.2f} | {'' if o is None else f'{o / b:.2f}'} |"
        print(line)
    line = f"| all | | | | | {total['h']:.1f} | {total['o']:.1f} |"
    if bound:
        line += f" {total['b']:.1f} | {total['h'] / total['b']:.2f} | {total['o'] / total['b']:.2f} |"
    print(line)
    if bound:
        print()
        print(f"Largest speed-up over official AutoAttack that the cascade's passes allow here: "
              f"{total['o'] / total['b']:.2f}× (official / bound, components only).")


if __name__ == "__main__":
    main()
