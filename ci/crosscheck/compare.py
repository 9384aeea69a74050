#!/usr/bin/env python3
"""Compares the harness's report (`infoat eval --json`) with official AutoAttack's
(ci/crosscheck/official.py) and the independent RayS (ci/crosscheck/rays.py) on one model, and
prints Markdown tables (ci/crosscheck/all runs it once per model):

    compare.py --harness H.json --official O.json [--same-starts S.json] [--rays R.json]
               [--label NAME] [--out REC.json]

White-box and score-based attacks (apgd_ce, apgd_t, fab_t, square, aa), each side with its own
random draws: the harness's robust accuracy, official AutoAttack's, the difference in points, and
the per-example sets from the `flags` strings: how many examples official AutoAttack breaks that
the harness leaves robust ("official only"), and the reverse ("harness only"), with McNemar's
exact two-sided p for those discordant pairs; seconds of both sides. Verdict OK when the
harness's robust accuracy is at most 1 point above official AutoAttack's.

Same random starts (`--same-starts`, official.py --harness-starts: APGD's starts bit-identical to
the harness's): per attack, the examples whose verdicts differ. Verdict IDENTICAL when none do,
OK when at most 1 % of N do (float rounding of batches of other sizes can flip an example on the
boundary), else DIFFERS. Where an attack is more than 1 point above official with independent
draws but its verdicts under the same starts are within that 1 %, the gap is the random start's
and not the implementation's: the independent verdict says so (with McNemar's p) and passes.

RayS: the harness's ADBD and robust accuracy against rays.py's, OK when the ADBDs agree within
2 % (relative to rays.py's) and the robust accuracies within 1 point; with the per-example
distances, the largest and the median |difference| and how many flags differ.

Both sides must also agree on N and on the clean-correct examples (same model, same images).
Exit status: 0 every verdict OK, 1 a verdict failed, 2 an input could not be read.
"""
import argparse
import json
import math
import statistics
import sys

WHITE_BOX = ["apgd_ce", "apgd_t", "fab_t", "square", "aa"]
TOL_POINTS = 1.0
TOL_ADBD = 0.02
TOL_SAME = 0.01  # share of N whose verdicts may differ under the same random starts


def mcnemar_p(b, c):
    """McNemar's exact two-sided p-value for b and c discordant pairs (binomial, p = 1/2)."""
    m = b + c
    if m == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(m, i) for i in range(k + 1)) / 2 ** m
    return min(1.0, 2 * tail)


def pct(v):
    return f"{100 * v:.2f} %"


def load(path, what):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        print(f"compare.py: cannot read the {what} report {path}: {e}", file=sys.stderr)
        sys.exit(2)


def sets(h_flags, o_flags):
    """(official breaks & harness robust, harness breaks & official robust), or None."""
    if not h_flags or not o_flags or len(h_flags) != len(o_flags):
        return None
    official_only = [i for i, (a, b) in enumerate(zip(h_flags, o_flags)) if a == "1" and b == "0"]
    harness_only = [i for i, (a, b) in enumerate(zip(h_flags, o_flags)) if a == "0" and b == "1"]
    return official_only, harness_only


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--harness", required=True, help="infoat eval --json report")
    p.add_argument("--official", required=True, help="ci/crosscheck/official.py report")
    p.add_argument("--same-starts", help="ci/crosscheck/official.py --harness-starts report")
    p.add_argument("--rays", help="ci/crosscheck/rays.py report")
    p.add_argument("--label", default="the model", help="the model's name in the headings")
    p.add_argument("--out", help="write the comparison record (JSON) here")
    a = p.parse_args()

    h = load(a.harness, "harness")
    o = load(a.official, "official AutoAttack")
    r = load(a.rays, "rays.py") if a.rays else None
    same = load(a.same_starts, "same-starts official AutoAttack") if a.same_starts else None
    failed = []
    n = h.get("n")

    print(f"#### {a.label}\n")
    h_clean = h["clean"]["correct"]
    clean_ok = h.get("n") == o.get("n") and h_clean == o["clean"]["correct"]
    # The harness reports clean flags only through the attacks; an attack's `1` implies clean-correct.
    line = (f"Clean accuracy: harness {pct(h['clean_acc'])} ({h_clean}/{h['n']}), official side "
            f"{pct(o['clean_acc'])} ({o['clean']['correct']}/{o['n']})")
    if r is not None:
        clean_ok = clean_ok and r.get("n") == n and r["clean"]["correct"] == h_clean
        line += f", rays.py {pct(r['clean_acc'])} ({r['clean']['correct']}/{r['n']})"
    print(line + ("" if clean_ok else " -- MISMATCH: not the same model or images"))
    if not clean_ok:
        failed.append("clean")
    print(f"One example is {100 / int(n):.2f} points.\n")

    same_rows, same_ok = [], {}
    if same is not None:
        if same.get("n") != n:
            print(f"Same starts: the report is for N {same.get('n')}, the harness's for N {n} -- MISMATCH\n")
            failed.append("same_starts")
        else:
            print(f"Same random starts (official.py --harness-starts: AutoAttack seeded per batch of "
                  f"{same.get('batch_size')} as the harness seeds libtorch, so APGD's starts are the harness's):\n")
            print("| attack | harness robust acc | official robust acc | verdicts differ | examples | verdict |")
            print("|---|---|---|---|---|---|")
            for aid, oa in same.get("attacks", {}).items():
                ha = h.get("attacks", {}).get(aid)
                s = sets(ha.get("flags"), oa.get("flags")) if ha else None
                if s is None:
                    print(f"| {aid} | {'missing' if ha is None else pct(ha['robust_acc'])} | {pct(oa['robust_acc'])} "
                          f"| | | FAILED (no per-example flags on both sides) |")
                    failed.append(f"{aid}.same_starts")
                    continue
                differ = sorted(s[0] + s[1])
                ok = len(differ) <= TOL_SAME * int(n) + 1e-9
                same_ok[aid] = ok
                verdict = "IDENTICAL" if not differ else ("OK" if ok else f"DIFFERS (> {100 * TOL_SAME:g} % of N)")
                if not ok:
                    failed.append(f"{aid}.same_starts")
                same_rows.append({"attack": aid, "harness_robust_acc": ha["robust_acc"],
                                  "official_robust_acc": oa["robust_acc"], "differ": differ,
                                  "official_only": s[0], "harness_only": s[1], "ok": ok})
                shown = ", ".join(map(str, differ[:12])) + (" …" if len(differ) > 12 else "")
                print(f"| {aid} | {pct(ha['robust_acc'])} | {pct(oa['robust_acc'])} | {len(differ)} | {shown} | "
                      f"{verdict} |")
            print()
        print("Independent random draws (official.py --seed):\n")

    print("| attack | harness robust acc | official robust acc | difference (points) | official only | "
          "harness only | McNemar p | harness s | official s | verdict |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for aid in WHITE_BOX:
        ha, oa = h.get("attacks", {}).get(aid), o.get("attacks", {}).get(aid)
        if ha is None or oa is None:
            side = "harness" if ha is None else "official"
            print(f"| {aid} | {'missing' if ha is None else pct(ha['robust_acc'])} | "
                  f"{'missing' if oa is None else pct(oa['robust_acc'])} | | | | | | | FAILED ({side} reported nothing) |")
            failed.append(aid)
            continue
        diff = 100 * (ha["robust_acc"] - oa["robust_acc"])
        s = sets(ha.get("flags"), oa.get("flags"))
        p_value = None if s is None else mcnemar_p(len(s[0]), len(s[1]))
        ok = diff <= TOL_POINTS + 1e-9
        if ok:
            verdict = "OK"
        elif same_ok.get(aid):
            ok = True
            verdict = (f"OK: {diff:+.2f} points is the random start's (the same starts give the same verdicts"
                       f"{'' if p_value is None else f'; McNemar p = {p_value:.2f}'})")
        else:
            verdict = f"WEAKER (> {TOL_POINTS:g} point above official)"
        if oa.get("outside_threat_model"):
            verdict += f"; official returned {oa['outside_threat_model']} points outside the threat model"
        if not ok:
            failed.append(aid)
        row = {"attack": aid, "harness_robust_acc": ha["robust_acc"], "official_robust_acc": oa["robust_acc"],
               "difference_points": diff, "harness_seconds": ha["seconds"], "official_seconds": oa["seconds"],
               "harness_version": ha.get("version"), "mcnemar_p": p_value, "ok": ok}
        if s is not None:
            row["official_only"], row["harness_only"] = s
        rows.append(row)
        so = "n/a" if s is None else str(len(s[0]))
        sh = "n/a" if s is None else str(len(s[1]))
        sp = "n/a" if p_value is None else f"{p_value:.2f}"
        print(f"| {aid} | {pct(ha['robust_acc'])} | {pct(oa['robust_acc'])} | {diff:+.2f} | {so} | {sh} | {sp} | "
              f"{ha['seconds']:.1f} | {oa['seconds']:.1f} | {verdict} |")
    print()
    for row in rows:
        if not row["ok"] and "official_only" in row:
            print(f"{row['attack']}: examples (0-based, among the first {n}) official AutoAttack breaks and "
                  f"the harness leaves robust: {row['official_only']}")
    stages = o.get("attacks", {}).get("aa", {}).get("stages")
    if stages:
        print("Official AutoAttack cascade: " + ", ".join(
            f"after {s['attack']} {pct(s['robust_acc'])} ({s['cumulative_seconds']:.1f} s)" for s in stages)
            + ".")

    rays_rec = None
    if r is not None:
        hr, pr = h.get("attacks", {}).get("rays"), r["attacks"]["rays"]
        print()
        print("| RayS | harness | rays.py | difference | verdict |")
        print("|---|---|---|---|---|")
        if hr is None or hr.get("adbd") is None:
            print("| ADBD | missing | | | FAILED (the harness reported no rays ADBD) |")
            failed.append("rays")
        else:
            rel = (hr["adbd"] - pr["adbd"]) / pr["adbd"] if pr["adbd"] else float("inf")
            adbd_ok = abs(rel) <= TOL_ADBD + 1e-12
            dacc = 100 * (hr["robust_acc"] - pr["robust_acc"])
            acc_ok = abs(dacc) <= TOL_POINTS + 1e-9
            if not adbd_ok:
                failed.append("rays.adbd")
            if not acc_ok:
                failed.append("rays.robust_acc")
            print(f"| ADBD (mean L∞ boundary distance over all {n}) | {hr['adbd']:.4f} | {pr['adbd']:.4f} | "
                  f"{100 * rel:+.2f} % | {'OK' if adbd_ok else 'DIFFERS (> 2 %)'} |")
            print(f"| robust acc at eps {pr['eps']:g} | {pct(hr['robust_acc'])} | {pct(pr['robust_acc'])} | "
                  f"{dacc:+.2f} points | {'OK' if acc_ok else 'DIFFERS (> 1 point)'} |")
            print(f"| seconds | {hr['seconds']:.1f} | {pr['seconds']:.1f} | | |")
            rays_rec = {"harness_adbd": hr["adbd"], "python_adbd": pr["adbd"], "relative_difference": rel,
                        "harness_robust_acc": hr["robust_acc"], "python_robust_acc": pr["robust_acc"],
                        "difference_points": dacc, "harness_seconds": hr["seconds"],
                        "python_seconds": pr["seconds"], "ok": adbd_ok and acc_ok}
            hd, pd = hr.get("distances"), pr.get("distances")
            if hd and pd and len(hd) == len(pd):
                diffs = [abs(x - y) for x, y in zip(hd, pd)]
                s = sets(hr.get("flags"), pr.get("flags")) or ([], [])
                print(f"\nPer example: |distance difference| max {max(diffs):.2e}, median {statistics.median(diffs):.2e}; "
                      f"{sum(d > 1e-3 for d in diffs)} examples differ by more than 1e-3; robust flags differ on "
                      f"{len(s[0]) + len(s[1])} (rays.py breaks {len(s[0])} the harness leaves robust, the "
                      f"reverse {len(s[1])}). rays.py: {pr.get('queries_mean_correct', 0):.0f} queries per "
                      f"clean-correct example on average (budget {pr.get('budget')}, at most "
                      f"{pr.get('queries_max')}), {pr.get('not_found', 0)} with no boundary found.")
                rays_rec.update({"max_abs_distance_difference": max(diffs),
                                 "median_abs_distance_difference": statistics.median(diffs),
                                 "python_only": s[0], "harness_only": s[1]})
    print("\nVerdict: " + ("all OK" if not failed else "FAILED for " + ", ".join(failed)))

    if a.out:
        rec = {"label": a.label, "n": n, "clean_agrees": clean_ok, "comparison": rows, "same_starts": same_rows,
               "rays": rays_rec, "failed": failed, "harness": h, "official": o, "official_same_starts": same,
               "rays_py": r}
        with open(a.out, "w") as f:
            json.dump(rec, f, indent=2)
            f.write("\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
