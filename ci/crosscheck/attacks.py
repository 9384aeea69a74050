#!/usr/bin/env python3
"""The torchattacks side of the attack cross-check (ci/crosscheck/run): runs torchattacks'
counterparts of the harness's white-box attacks on a TorchScript model and the first N test
images of MNIST or Fashion-MNIST, and prints JSON in the shape of `infoat eval --json`:

    {"n": N, "clean_acc": ..., "attacks": {"fgsm": {"robust_acc": ..., "seconds": ...}, ...},
     "worst_case_acc": ...}

An example counts as robust when the model classifies it correctly clean AND at the point the
attack returns (as `infoat eval` counts it). Needs torch and torchattacks: run it with the python
that ci/crosscheck/setup prints.

    attacks.py MODEL.pt [--dataset mnist] [--data-dir DIR] [--eps 0.3] [--n 200]
               [--attacks fgsm,pgd20,cw20] [--seed 0] [--batch-size 500] [--threads 2]
               [--aa-impl standard|torchattacks]

Attack ids and what runs for each (the harness's definitions, SPEC §3, as closely as
torchattacks allows):

    fgsm     torchattacks.FGSM(eps)
    pgd20    torchattacks.PGD(eps, alpha=eps/4, steps=20, random_start=True)
    pgd100   likewise, 100 steps
    cw20     THIS SCRIPT'S OWN code (torchattacks has CW only in L2): L-inf PGD-20 on the margin
             loss -max(z_y - max_{j!=y} z_j + 50, 0), step eps/4, uniform start, final iterate
    cw100    likewise, 100 steps
    apgd_ce  torchattacks.APGD(eps, loss='ce', steps=100, n_restarts=1)
    apgd_t   torchattacks.APGDT(eps, steps=100, n_classes=10, n_restarts=1)  (9 targets)
    fab_t    torchattacks.FAB(eps, multi_targeted=True, n_classes=10, steps=100, n_restarts=1)
    square   torchattacks.Square(eps, n_queries=5000, p_init=0.8, n_restarts=1, resc_schedule=False)
    aa       --aa-impl standard (default): AutoAttack's standard version (fra31/auto-attack:
             APGD-CE, APGD-T, FAB-T at 100 iterations, Square at 5,000 queries) assembled from
             the four torchattacks attacks above with torchattacks.MultiAttack, each running on
             the points the earlier ones left robust. --aa-impl torchattacks: the class
             torchattacks.AutoAttack(norm='Linf', eps, version='standard', n_classes=10) as
             shipped, whose APGD, APGD-T and FAB run torchattacks' default 10 iterations, not
             the standard version's 100 (weaker and about 10x cheaper).

pgd_plus, bpda and infopgd20 have no torchattacks counterpart: they are reported under
"skipped" with the reason and left out of the worst case.
"""
import argparse
import json
import os
import sys
import time
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import add_model_args, load_frozen, read_mnist_test, resolve  # noqa: E402

ALL_IDS = ["fgsm", "pgd20", "pgd100", "cw20", "cw100", "apgd_ce", "apgd_t", "fab_t", "square", "aa"]
NO_COUNTERPART = {
    "pgd_plus": "torchattacks has no any-iterate PGD with restarts",
    "bpda": "torchattacks has no BPDA",
    "infopgd20": "InfoPGD (paper eq. 18) is the harness's own attack",
}


# --- The script's own attack: CW-inf-k (torchattacks has CW only in L2) -------------------------
def cw_margin_loss(logits, y, kappa):
    """-max(z_y - max_{j!=y} z_j + kappa, 0) per example (SPEC §3's CW loss)."""
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return -(z_y - others + kappa).clamp_min(0.0)


def cw_linf(model, x, y, eps, steps, kappa=50.0):
    """PGD on the CW margin loss: uniform start clamped to [0, 1], `steps` signed-gradient steps
    of eps/4, projection onto the L-inf ball and [0, 1] after each, final iterate returned."""
    alpha = eps / 4
    x = x.detach()
    x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0.0, 1.0)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = cw_margin_loss(model(x_adv), y, kappa).sum()
        (grad,) = torch.autograd.grad(loss, [x_adv])
        x_adv = x_adv.detach() + alpha * grad.sign()
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0.0, 1.0)
    return x_adv.detach()
# ------------------------------------------------------------------------------------------------


def build(attack_id, model, eps, n_classes, seed, aa_impl):
    """(callable(x, y) -> x_adv, a description of what runs)."""
    import torchattacks as ta

    def apgd_ce():
        return ta.APGD(model, norm="Linf", eps=eps, steps=100, n_restarts=1, seed=seed, loss="ce", rho=0.75)

    def apgd_t():
        return ta.APGDT(model, norm="Linf", eps=eps, steps=100, n_restarts=1, seed=seed, rho=0.75,
                        n_classes=n_classes)

    def fab_t():
        return ta.FAB(model, norm="Linf", eps=eps, steps=100, n_restarts=1, alpha_max=0.1, eta=1.05,
                      beta=0.9, seed=seed, multi_targeted=True, n_classes=n_classes)

    def square():
        return ta.Square(model, norm="Linf", eps=eps, n_queries=5000, n_restarts=1, p_init=0.8,
                         loss="margin", resc_schedule=False, seed=seed)

    if attack_id == "fgsm":
        return ta.FGSM(model, eps=eps), "torchattacks.FGSM(eps)"
    if attack_id in ("pgd20", "pgd100"):
        steps = int(attack_id[3:])
        return (ta.PGD(model, eps=eps, alpha=eps / 4, steps=steps, random_start=True),
                f"torchattacks.PGD(eps, alpha=eps/4, steps={steps}, random_start=True)")
    if attack_id in ("cw20", "cw100"):
        steps = int(attack_id[2:])
        return ((lambda x, y: cw_linf(model, x, y, eps, steps)),
                f"crosscheck script's own CW-inf: PGD-{steps} on -max(z_y - max_(j!=y) z_j + 50, 0), "
                "step eps/4, uniform start")
    if attack_id == "apgd_ce":
        return apgd_ce(), "torchattacks.APGD(eps, loss='ce', steps=100, n_restarts=1, rho=0.75)"
    if attack_id == "apgd_t":
        return (apgd_t(), f"torchattacks.APGDT(eps, steps=100, n_restarts=1, n_classes={n_classes}) "
                f"({n_classes - 1} targets)")
    if attack_id == "fab_t":
        return (fab_t(), f"torchattacks.FAB(eps, multi_targeted=True, n_classes={n_classes}, steps=100, "
                "n_restarts=1)")
    if attack_id == "square":
        return square(), "torchattacks.Square(eps, n_queries=5000, p_init=0.8, n_restarts=1, loss='margin', resc_schedule=False)"
    if attack_id == "aa":
        if aa_impl == "torchattacks":
            return (ta.AutoAttack(model, norm="Linf", eps=eps, version="standard", n_classes=n_classes, seed=seed),
                    "torchattacks.AutoAttack(norm='Linf', eps, version='standard') as shipped: APGD, APGD-T "
                    "and FAB at torchattacks' default 10 iterations, Square 5000 queries")
        return (ta.MultiAttack([apgd_ce(), apgd_t(), fab_t(), square()]),
                "AutoAttack standard (fra31 configuration) = torchattacks.MultiAttack([APGD-CE 100, "
                "APGD-T 100 x 9 targets, FAB-T 100 x 9 targets, Square 5000])")
    raise ValueError(attack_id)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p, None, "first N test images [default: all]")
    p.add_argument("--attacks", default="fgsm,pgd20,cw20", help="comma-separated harness attack ids")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--aa-impl", choices=["standard", "torchattacks"], default="standard",
                   help="what `aa` runs (see the module docstring)")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    eps, folder, n = resolve(a)
    ids = [s.strip().replace("-", "_") for s in a.attacks.split(",") if s.strip()]
    unknown = [i for i in ids if i not in ALL_IDS and i not in NO_COUNTERPART]
    if unknown:
        p.error(f"unknown attack ids {unknown}; expected some of {ALL_IDS + sorted(NO_COUNTERPART)}")

    import torchattacks

    x, y = read_mnist_test(folder, n)
    model = load_frozen(a.model)
    batches = [(x[i:i + a.batch_size], y[i:i + a.batch_size]) for i in range(0, n, a.batch_size)]

    with torch.no_grad():
        clean = torch.cat([model(xb).argmax(1) == yb for xb, yb in batches])
        n_classes = model(x[:1]).shape[1]

    out_attacks, skipped, worst = {}, {}, None
    for attack_id in ids:
        if attack_id in NO_COUNTERPART:
            skipped[attack_id] = NO_COUNTERPART[attack_id]
            continue
        torch.manual_seed(a.seed)
        atk, what = build(attack_id, model, eps, n_classes, a.seed, a.aa_impl)
        flags, overshoot = [], 0.0
        t0 = time.perf_counter()
        for b, (xb, yb) in enumerate(batches):
            adv = atk(xb, yb).detach()
            with torch.no_grad():
                ok = model(adv).argmax(1) == yb
            flags.append(ok)
            # The threat model: the returned point must lie in the ball and in [0, 1].
            overshoot = max(overshoot, float((adv - xb).abs().amax()) - eps,
                            float((-adv).amax()), float((adv - 1).amax()))
        seconds = time.perf_counter() - t0
        robust = torch.cat(flags) & clean
        worst = robust if worst is None else worst & robust
        correct = int(robust.sum())
        out_attacks[attack_id] = {
            "robust_acc": correct / n,
            "robust": {"total": n, "correct": correct, "accuracy": correct / n},
            "eps": eps,
            "seconds": seconds,
            "runs": what,
            "max_outside_threat_model": max(overshoot, 0.0),
        }
        print(f"[crosscheck] torchattacks {attack_id:<8} robust {100 * correct / n:6.2f}%  {seconds:8.1f}s",
              file=sys.stderr)

    report = {
        "source": "torchattacks",
        "torchattacks": torchattacks.__version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "model": os.path.abspath(a.model),
        "dataset": a.dataset,
        "data_dir": os.path.abspath(folder),
        "seed": a.seed,
        "batch_size": a.batch_size,
        "n": n,
        "clean_acc": int(clean.sum()) / n,
        "clean": {"total": n, "correct": int(clean.sum()), "accuracy": int(clean.sum()) / n},
        "attacks": out_attacks,
        "skipped": skipped,
        "worst_case_acc": None if worst is None else int(worst.sum()) / n,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
