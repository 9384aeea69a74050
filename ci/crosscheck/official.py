#!/usr/bin/env python3
"""The official-AutoAttack side of the cross-check (ci/crosscheck/all): runs Croce & Hein's
AutoAttack (PyPI `pyautoattack` 0.2.0, the packaged fra31/auto-attack) on a TorchScript model and
the first N test images of MNIST or Fashion-MNIST, and prints JSON shaped like
`infoat eval --json`:

    {"n": N, "clean_acc": ..., "clean": {"correct": ...},
     "attacks": {"apgd_ce": {"robust_acc": ..., "seconds": ..., "flags": "0110..."}, ...},
     "pyautoattack": "0.2.0", "torch": "2.11.0"}

    official.py MODEL.pt [--dataset mnist] [--data-dir DIR] [--eps 0.3] [--n 500]
                [--attacks apgd_ce,apgd_t,fab_t,square,aa] [--seed 0] [--batch-size 500]
                [--threads 2] [--device cpu] [--tf32] [--verbose]

Every attack is configured by AutoAttack itself: the script builds
`AutoAttack(model, norm='Linf', eps=eps, version='standard', seed=seed)` (which sets APGD-CE to
100 iterations and 1 restart, APGD-T to 100 iterations, 9 target classes and 1 restart, FAB-T to
100 iterations, 9 target classes and 1 restart, Square to 5,000 queries with p_init 0.8 and
resc_schedule=False) and runs `run_standard_evaluation` with `attacks_to_run` set to one
attack (apgd_ce -> ['apgd-ce'], apgd_t -> ['apgd-t'], fab_t -> ['fab-t'], square -> ['square'])
or, for `aa`, to the standard cascade ['apgd-ce', 'apgd-t', 'fab-t', 'square'] (each attack on
the points the earlier ones left robust). A fresh AutoAttack object is built for every attack
id, so no state carries over. AutoAttack re-seeds torch's generator with `seed` before each
attack on each batch.

`--harness-starts` seeds AutoAttack as the harness seeds libtorch: batch b (of --batch-size) is
run by its own AutoAttack object with `seed = derive(SEED, Eval, [b])` (harness/src/seed.rs,
transcribed in common.py), the seed `infoat eval --seed SEED --batch-size B` gives libtorch's
generator before that batch. Both sides then draw APGD's random start `2 * rand(shape) - 1` from
the same generator state, over the same clean-correct examples, so APGD-CE's and APGD-T's starts
are bit-identical and their per-example verdicts can be compared one to one (FAB-T's first run
has no random start on either side). Only apgd_ce, apgd_t and fab_t are accepted then: the
harness's Square draws its squares per example and its AA cascade does not re-seed between
components, so neither shares draws with AutoAttack.

Per attack: `flags` has one character per test image, in order: `1` robust (classified
correctly clean AND at the returned point), `0` not -- the convention of the harness's `flags`.
The returned points are checked to lie in the eps-ball (up to 1e-5, float rounding) and in
[0, 1]; `max_outside_threat_model` reports the largest excess, and a point outside counts as
broken only if it is misclassified AND inside (it is reported, never silently accepted).
`seconds` is the wall-clock time of `run_standard_evaluation` (AutoAttack's input checks, a few
forward passes, included); for `aa` also `stages`: the robust accuracy after each component and
AutoAttack's own cumulative time.

On CUDA the model runs in IEEE float32 as the harness's evaluation does: PyTorch's default of
TF32 convolutions is turned off unless --tf32 (recorded as "tf32" in the JSON).

Needs torch and pyautoattack: run it with the python that ci/crosscheck/setup prints.
"""
import argparse
import json
import logging
import os
import re
import sys
import time
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import add_model_args, harness_eval_seed, ieee_fp32, load_frozen, read_test, resolve  # noqa: E402

# harness attack id -> AutoAttack's attacks_to_run
ATTACKS = {
    "apgd_ce": ["apgd-ce"],
    "apgd_t": ["apgd-t"],
    "fab_t": ["fab-t"],
    "square": ["square"],
    "aa": ["apgd-ce", "apgd-t", "fab-t", "square"],
}
# The attacks whose random draws the harness shares with AutoAttack under --harness-starts.
SAME_STARTS = ["apgd_ce", "apgd_t", "fab_t"]
TOLERANCE = 1e-5  # float32 rounding of x + delta; AutoAttack itself allows eps + 1e-5 in its checks


class StageLog(logging.Handler):
    """Collects AutoAttack's 'robust accuracy after X: Y% (total time Z s)' lines."""

    PATTERN = re.compile(r"robust accuracy after (\S+): ([0-9.]+)% \(total time ([0-9.]+) s\)")

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.stages = []

    def emit(self, record):
        m = self.PATTERN.search(record.getMessage())
        if m:
            self.stages.append({"attack": m.group(1).lower(), "robust_acc": float(m.group(2)) / 100,
                                "cumulative_seconds": float(m.group(3))})


def sync(device):
    """Waits for the device's queued work, so that a timer measures it."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def describe(aa, attack_id):
    """What AutoAttack configured, read back from its attack objects."""
    a, t, f, s = aa.apgd, aa.apgd_targeted, aa.fab, aa.square
    parts = {
        "apgd-ce": f"APGDAttack(loss='ce', n_iter={a.n_iter}, n_restarts={a.n_restarts}, rho={a.thr_decr}, "
                   f"eot_iter={a.eot_iter})",
        "apgd-t": f"APGDAttack_targeted(loss='dlr-targeted', n_iter={t.n_iter}, n_restarts={t.n_restarts}, "
                  f"n_target_classes={t.n_target_classes}, rho={t.thr_decr})",
        "fab-t": f"FABAttack_PT(targeted=True, n_iter={f.n_iter}, n_restarts=1, "
                 f"n_target_classes={f.n_target_classes}, alpha_max={f.alpha_max}, eta={f.eta}, beta={f.beta})",
        "square": f"SquareAttack(n_queries={s.n_queries}, p_init={s.p_init}, n_restarts={s.n_restarts}, "
                  f"loss='{s.loss}', resc_schedule={s.rescale_schedule})",
    }
    return f"pyautoattack AutoAttack(version='standard', norm='Linf', eps, seed).attacks_to_run = " \
           f"{ATTACKS[attack_id]}: " + " -> ".join(parts[c] for c in ATTACKS[attack_id])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p, 500, "first N test images [default: %(default)s]")
    p.add_argument("--attacks", default="apgd_ce,apgd_t,fab_t,square,aa",
                   help=f"comma-separated harness attack ids, of {sorted(ATTACKS)} [default: %(default)s]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=500, help="AutoAttack's batch size [default: %(default)s]")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads [default: %(default)s]")
    p.add_argument("--device", default="cpu", help="torch device of the model and the attack, e.g. cuda "
                                                   "[default: %(default)s]")
    p.add_argument("--harness-starts", action="store_true",
                   help="seed each batch as `infoat eval --seed SEED --batch-size B` seeds libtorch, so APGD's "
                        f"random starts are the harness's (attacks: {', '.join(SAME_STARTS)})")
    p.add_argument("--tf32", action="store_true",
                   help="on CUDA, let cuDNN convolutions run in TF32 as PyTorch does by default (the harness "
                        "evaluates in IEEE float32, so a comparison leaves this off)")
    p.add_argument("--verbose", action="store_true", help="AutoAttack's progress log on stderr")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    tf32 = ieee_fp32(a.device, a.tf32)
    eps, folder, n = resolve(a)
    ids = [s.strip().replace("-", "_") for s in a.attacks.split(",") if s.strip()]
    unknown = [i for i in ids if i not in ATTACKS]
    if unknown:
        p.error(f"unknown attack ids {unknown}; official AutoAttack has {sorted(ATTACKS)}")
    if a.harness_starts and any(i not in SAME_STARTS for i in ids):
        p.error(f"--harness-starts: {[i for i in ids if i not in SAME_STARTS]} share no random draws with the "
                f"harness; give --attacks from {SAME_STARTS}")

    try:
        import pyautoattack
        from pyautoattack import AutoAttack
    except ImportError as e:
        sys.exit(f"official.py: cannot import pyautoattack ({e}); run ci/crosscheck/setup and use the python it prints")

    logger = logging.getLogger("auto-attack")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    if a.verbose:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("[auto-attack] %(message)s"))
        logger.addHandler(h)
    else:
        h = logging.StreamHandler(sys.stderr)
        h.setLevel(logging.WARNING)
        h.setFormatter(logging.Formatter("[auto-attack] %(levelname)s %(message)s"))
        logger.addHandler(h)

    x, y = read_test(a.dataset, folder, n)
    x, y = x.to(a.device), y.to(a.device)
    model = load_frozen(a.model, a.device)
    with torch.no_grad():
        clean = torch.cat([model(x[i:i + a.batch_size]).argmax(1) == y[i:i + a.batch_size]
                           for i in range(0, n, a.batch_size)])

    # (first index, last index + 1, AutoAttack's seed) per AutoAttack object: one over all N with
    # --seed, or one per harness batch with the harness's seed for it.
    if a.harness_starts:
        chunks = [(i, min(i + a.batch_size, n), harness_eval_seed(a.seed, b))
                  for b, i in enumerate(range(0, n, a.batch_size))]
    else:
        chunks = [(0, n, a.seed)]
    out_attacks = {}
    for attack_id in ids:
        stage_log = StageLog()
        logger.addHandler(stage_log)
        parts, seconds = [], 0.0
        for lo, hi, seed in chunks:
            aa = AutoAttack(model, norm="Linf", eps=eps, version="standard", seed=seed, device=a.device)
            aa.attacks_to_run = list(ATTACKS[attack_id])
            sync(a.device)
            t0 = time.perf_counter()
            x_adv, _ = aa.run_standard_evaluation(x[lo:hi], y[lo:hi], batch_size=a.batch_size)
            sync(a.device)
            seconds += time.perf_counter() - t0
            parts.append(x_adv.detach())
        logger.removeHandler(stage_log)
        x_adv = torch.cat(parts)
        with torch.no_grad():
            ok_adv = torch.cat([model(x_adv[i:i + a.batch_size]).argmax(1) == y[i:i + a.batch_size]
                                for i in range(0, n, a.batch_size)])
        linf = (x_adv - x).abs().reshape(n, -1).amax(1)
        outside = torch.maximum(linf - eps, torch.maximum(-x_adv.reshape(n, -1).amin(1),
                                                          x_adv.reshape(n, -1).amax(1) - 1))
        inside = outside <= TOLERANCE
        # Robust: correct clean and at the returned point; a misclassified point outside the threat
        # model does not count as broken (and is reported).
        robust = clean & (ok_adv | ~inside)
        correct = int(robust.sum())
        rec = {
            "robust_acc": correct / n,
            "robust": {"total": n, "correct": correct, "accuracy": correct / n},
            "eps": eps,
            "seconds": seconds,
            "flags": "".join("1" if f else "0" for f in robust.tolist()),
            "runs": describe(aa, attack_id) + (f"; seeded per batch of {a.batch_size} as the harness's seed "
                                               f"{a.seed} (--harness-starts)" if a.harness_starts else ""),
            "max_linf": float(linf.max()),
            "max_outside_threat_model": max(float(outside.max()), 0.0),
            "outside_threat_model": int((~inside).sum()),
        }
        if attack_id == "aa":
            rec["stages"] = stage_log.stages
        out_attacks[attack_id] = rec
        print(f"[crosscheck] official {attack_id:<8} robust {100 * correct / n:6.2f}%  {seconds:8.1f}s",
              file=sys.stderr)

    report = {
        "source": "pyautoattack",
        "pyautoattack": pyautoattack.__version__,
        "pyautoattack_file": os.path.abspath(pyautoattack.__file__),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name() if str(a.device).startswith("cuda") else "cpu",
        "tf32": tf32,
        "model": os.path.abspath(a.model),
        "dataset": a.dataset,
        "data_dir": os.path.abspath(folder),
        "eps": eps,
        "seed": a.seed,
        "harness_starts": a.harness_starts,
        "autoattack_seeds": [c[2] for c in chunks],
        "batch_size": a.batch_size,
        "n": n,
        "clean_acc": int(clean.sum()) / n,
        "clean": {"total": n, "correct": int(clean.sum()), "accuracy": int(clean.sum()) / n,
                  "flags": "".join("1" if f else "0" for f in clean.tolist())},
        "attacks": out_attacks,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
