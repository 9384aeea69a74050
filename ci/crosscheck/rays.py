#!/usr/bin/env python3
"""An independent Python RayS for the cross-check (ci/crosscheck/all): the hard-label attack of
Chen & Gu, "RayS: A Ray Searching Method for Hard-label Adversarial Attack" (KDD 2020), written
for this check from the paper and the semantics of the authors' RayS.py (uclaml/RayS), not from
the harness's Rust code. Prints JSON:

    {"n": N, "clean_acc": ..., "clean": {"correct": ...},
     "attacks": {"rays": {"robust_acc": ..., "adbd": ..., "seconds": ..., "flags": "0110...",
                          "distances": [...], "queries": [...]}}}

    rays.py MODEL.pt [--dataset mnist] [--data-dir DIR] [--eps 0.3] [--n 500] [--budget 10000]
            [--tol 1e-3] [--batch-size 500] [--threads 2]

The model is reached only through a label oracle (argmax of the logits), which counts every
image it is shown against that image's example. Per example:

- One query for the clean label. A misclassified example has distance 0 and is not searched
  (RayS.py searches it anyway and converges to about 0; the harness does as this script).
- Directions are sign vectors s in {-1, +1}^D (D = C*H*W) and a point on the ray at distance d is
  clamp(x + d * s/||s||_2, 0, 1); d is in units of the L2-normalised direction, so ||s||_2 =
  sqrt(D) reaches the corner of the box from anywhere.
- The best direction starts as all +1 with best distance +inf; it is never queried itself.
  Candidates flip one block of the best direction: level 0 is one block (everything), level k
  splits the D coordinates into consecutive blocks of ceil(D / 2^k), swept in order; once blocks
  are single coordinates, single-coordinate sweeps repeat. The schedule is the same for every
  example (as in RayS.py, whose block counter is global to the batch).
- A candidate costs one query at the current best distance (the clamped corner while that is
  +inf). Only if that point is misclassified, its boundary is bisected on [0, min(best, sqrt(D))]
  -- one query per midpoint, the misclassified end kept as `hi` -- until hi - lo <= tol (1e-3 in
  the L2-normalised units, i.e. tol/sqrt(D) in L-inf). The candidate becomes the best when its
  `hi` is below the best distance.
- An example starts candidates only while its query count is below the budget; a bisection once
  started finishes, so an example can end one bisection over the budget (RayS.py does the same).
  There is no early stop at eps: the whole budget refines the distance.
- The example's distance is the L-inf norm of (point at the best distance - x) (clamping can make
  it shorter than best/sqrt(D)); 1 (the largest L-inf distance in [0, 1]^D) where no
  misclassified point was found. ADBD is the mean distance over ALL N examples (misclassified
  ones count 0), which is how the harness averages its `distances`; `adbd_correct` is the mean
  over the clean-correct examples only.
- Robust at eps: correct clean and distance > eps.

Batched over the examples (all N at once by default); the search is deterministic.
"""
import argparse
import json
import math
import os
import sys
import time
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import add_model_args, load_frozen, read_mnist_test, resolve  # noqa: E402


class LabelOracle:
    """Labels only; counts one query per image per example index."""

    def __init__(self, model, n, batch_size):
        self.model = model
        self.batch_size = batch_size
        self.count = torch.zeros(n, dtype=torch.long)

    @torch.no_grad()
    def __call__(self, images, owners):
        """Predicted labels of `images`, whose example indices are `owners` (a LongTensor)."""
        self.count.index_add_(0, owners, torch.ones_like(owners))
        return torch.cat([self.model(images[i:i + self.batch_size]).argmax(1)
                          for i in range(0, images.shape[0], self.batch_size)])


def blocks(dim):
    """The flip schedule: (start, end) ranges of the flattened coordinates, forever."""
    level = 0
    while True:
        size = -(-dim // (1 << level)) if level < 62 else 1
        for start in range(0, dim, size):
            yield start, min(start + size, dim)
        level += 1


def point(x, s, d, root_d):
    """clamp(x + d * s / sqrt(D), 0, 1) with d per example (+inf allowed)."""
    shape = (-1,) + (1,) * (x.dim() - 1)
    step = (s / root_d).reshape(x.shape)
    d32 = d.to(torch.float32).reshape(shape)
    # d * s/sqrt(D) with d = +inf is +-inf (s has no zeros): the clamped corner.
    return (x + d32 * step).clamp(0.0, 1.0)


def rays(oracle, x, y, budget, tol):
    n = x.shape[0]
    dim = x[0].numel()
    root_d = math.sqrt(dim)
    everyone = torch.arange(n)
    correct = oracle(x, everyone) == y
    best = torch.where(correct, torch.full((n,), math.inf, dtype=torch.float64),
                       torch.zeros(n, dtype=torch.float64))
    s_best = torch.ones(n, dim)
    schedule = blocks(dim)
    candidates = 0
    while True:
        active = torch.nonzero(correct & (oracle.count < budget)).flatten()
        if active.numel() == 0:
            break
        start, end = next(schedule)
        candidates += 1
        s = s_best[active].clone()
        s[:, start:end] *= -1.0
        xa, ya, da = x[active], y[active], best[active]
        hit = oracle(point(xa, s, da, root_d), active) != ya
        if not bool(hit.any()):
            continue
        # Bisection for the examples whose candidate beats (or first finds) the best distance.
        k = torch.nonzero(hit).flatten()
        owners, xk, yk, sk = active[k], xa[k], ya[k], s[k]
        hi = torch.clamp(da[k], max=root_d)
        lo = torch.zeros_like(hi)
        while True:
            open_ = torch.nonzero(hi - lo > tol).flatten()
            if open_.numel() == 0:
                break
            mid = (lo[open_] + hi[open_]) / 2
            adv = oracle(point(xk[open_], sk[open_], mid, root_d), owners[open_]) != yk[open_]
            hi[open_] = torch.where(adv, mid, hi[open_])
            lo[open_] = torch.where(adv, lo[open_], mid)
        better = hi < da[k]
        if bool(better.any()):
            won = owners[better]
            best[won] = hi[better]
            s_best[won] = sk[better]
    found = torch.isfinite(best) & correct
    d = torch.where(found, best, torch.zeros_like(best))
    adv = point(x, s_best, d, root_d)
    realised = (adv - x).abs().reshape(n, -1).amax(1).to(torch.float64)
    distance = torch.where(correct, torch.where(found, realised, torch.ones_like(realised)),
                           torch.zeros_like(realised))
    # The found points must really be misclassified (a check on the bisection's invariant).
    if bool(found.any()):
        idx = torch.nonzero(found).flatten()
        with torch.no_grad():
            labels = torch.cat([oracle.model(adv[idx][i:i + oracle.batch_size]).argmax(1)
                                for i in range(0, idx.numel(), oracle.batch_size)])
        not_adv = int((labels == y[idx]).sum())
    else:
        not_adv = 0
    return correct, distance, found, candidates, not_adv


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p, 500, "first N test images [default: %(default)s]", "L-inf radius of the robust verdict")
    p.add_argument("--budget", type=int, default=10000, help="label queries per example [default: %(default)s]")
    p.add_argument("--tol", type=float, default=1e-3,
                   help="bisection tolerance along s/||s||_2 [default: %(default)s, RayS.py's]")
    p.add_argument("--batch-size", type=int, default=500, help="largest forward batch [default: %(default)s]")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads [default: %(default)s]")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    eps, folder, n = resolve(a)
    x, y = read_mnist_test(folder, n)
    model = load_frozen(a.model)
    oracle = LabelOracle(model, n, a.batch_size)

    t0 = time.perf_counter()
    correct, distance, found, candidates, not_adv = rays(oracle, x, y, a.budget, a.tol)
    seconds = time.perf_counter() - t0
    robust = correct & (distance > eps)
    n_correct = int(correct.sum())
    queries = oracle.count
    rec = {
        "robust_acc": int(robust.sum()) / n,
        "robust": {"total": n, "correct": int(robust.sum()), "accuracy": int(robust.sum()) / n},
        "eps": eps,
        "adbd": float(distance.mean()),
        "adbd_correct": float(distance[correct].mean()) if n_correct else None,
        "seconds": seconds,
        "flags": "".join("1" if f else "0" for f in robust.tolist()),
        "distances": distance.tolist(),
        "queries": queries.tolist(),
        "queries_mean_correct": float(queries[correct].float().mean()) if n_correct else None,
        "queries_max": int(queries.max()),
        "not_found": int((correct & ~found).sum()),
        "found_but_not_misclassified": not_adv,
        "candidates": candidates,
        "budget": a.budget,
        "tol": a.tol,
        "runs": "ci/crosscheck/rays.py: independent RayS (Chen & Gu 2020, RayS.py semantics), "
                f"{a.budget} label queries per example (clean check included), bisection tol {a.tol} "
                "along s/||s||_2",
    }
    print(f"[crosscheck] rays.py  robust {100 * rec['robust_acc']:6.2f}%  ADBD {rec['adbd']:.4f}  "
          f"{seconds:8.1f}s", file=sys.stderr)
    report = {
        "source": "ci/crosscheck/rays.py",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "model": os.path.abspath(a.model),
        "dataset": a.dataset,
        "data_dir": os.path.abspath(folder),
        "n": n,
        "clean_acc": n_correct / n,
        "clean": {"total": n, "correct": n_correct, "accuracy": n_correct / n},
        "attacks": {"rays": rec},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
