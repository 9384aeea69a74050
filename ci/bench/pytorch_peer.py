#!/usr/bin/env python3
"""PyTorch eager peer of `infoat bench` (issue 9): the same work as the harness's bench `Rig`
(harness/src/bench.rs) on the same architectures, batch, random data and threads, timed the
same way (device synchronised before reading the clock, warm-up steps untimed).

Work (--work), one timed step each:
  train-step   one training step of --method with the harness's defaults for the dataset
               (eps 0.3 MNIST, 0.1 Fashion-MNIST, 8/255 otherwise; 10 inner steps of eps/4;
               BatchNorm in eval mode during the attack, train mode for the outer passes; SGD
               lr 0.01, momentum 0.9, weight decay 3.5e-3 on every parameter):
     at      inner: CE summed over the batch, uniform start; outer: mean CE(f(x_adv), y)
     trades  p(x) from an eval-mode pass (no grad); inner: KL(p(x) || p(x')) summed, start
             x + 0.001 N(0, I); outer: train-mode natural pass, then adversarial pass,
             mean CE(f(x), y) + 6 mean KL(p(x) || p(x_adv)), p(x) not detached
     infoat  p(x), w = H(p(x)) from an eval-mode pass (constants); inner: sum of
             CE(f(x'), y) + 2.5 w ||p(x') - p(x)||^2, uniform start; outer: train-mode natural
             pass, then adversarial pass, mean CE(f(x_adv), y) + 2.5 mean H(p(x)) ||p(x_adv) -
             p(x)||^2 - 0.2 mean H(p(x_adv)), H(p(x)) and p(x) from the natural pass, not detached
  pgd          the inner maximisation alone: PGD on the summed CE, uniform start, whatever the
               method (as the harness's `--work pgd`)
  apgd-ce      one APGD-CE attack (Croce & Hein 2020; harness/src/attacks/apgd.rs, `Apgd::ce`)
               against the labels the model itself predicts on the batch, as the harness's bench
               does (so every example starts correctly classified, whatever the random weights
               predict): 100 iterations, 1 run, start x + eps t/||t||_inf (t ~ U(-1, 1)), step
               2 eps per example, momentum 0.75 (1 on the first step), step halved and iterate
               reset to the best point at the checkpoints 0, 22, 41, 57, 70, 80, 87, 93, 99
               (rho 0.75); an example leaves the run as soon as an iterate is misclassified, as in
               the harness, so on the same model and data the passes are the harness's (counted
               under "apgd")

Variants:
  reference      parameters keep requires_grad during the attack, NCHW (as TRADES/MART write it)
  tuned          parameters frozen during the attack, channels-last memory format
  frozen         parameters frozen, NCHW;   channels-last: requires_grad kept, channels-last
The variants change how the work is done, not what is computed, which is always the harness's
(TRADES' trades.py also forwards x again at every attack step and twice in the outer loss; the
harness, and so this peer, forwards it once for the attack and once for the update).

    pytorch_peer.py --arch resnet18 --dataset cifar10 --device cuda --precision bf16 --variant tuned
    pytorch_peer.py --arch smallcnn --dataset mnist --method infoat --steps 2 --warmup 1
    pytorch_peer.py --arch smallcnn --dataset mnist --work apgd-ce --steps 1 --warmup 1

On the CPU with the same --seed, the model and the random batch are the harness's own (the
harness initialises layers draw for draw as PyTorch does, in the same order, then draws x and y).
Prints one JSON object per invocation on stdout (images_per_second, ms_per_step, peak memory;
"heap": GLIBC_TUNABLES if set; for apgd-ce, "apgd": the example passes per attack).
Needs only torch (the cached venv or the device machine's python3).
"""
import argparse
import contextlib
import json
import os
import resource
import sys
import time
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
warnings.filterwarnings("ignore", message=".*Profiler clears events")
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "peers"))
from pytorch_reference import SmallCNN  # noqa: E402

SHAPES = {"mnist": (1, 28, 28, 10, 0.3, 60000), "fashion_mnist": (1, 28, 28, 10, 0.1, 60000),
          "cifar10": (3, 32, 32, 10, 8 / 255, 50000), "cifar100": (3, 32, 32, 100, 8 / 255, 50000),
          "svhn": (3, 32, 32, 10, 8 / 255, 73257)}

# The harness's defaults (harness/src/methods/mod.rs, config.rs).
TRADES_BETA = 6.0
INFOAT_LAMBDA, INFOAT_BETA = 2.5, 0.2
SGD = dict(lr=0.01, momentum=0.9, weight_decay=3.5e-3)
# APGD-CE (harness/src/attacks/apgd.rs `Apgd::ce`).
APGD_MOMENTUM, APGD_RHO, APGD_RESTARTS = 0.75, 0.75, 1


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, in_channels=3, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, in_planes = [], 64
        for planes, stride in zip([64, 128, 256, 512], [1, 2, 2, 2]):
            blocks = []
            for b in range(2):
                blocks.append(BasicBlock(in_planes, planes, stride if b == 0 else 1))
                in_planes = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(F.avg_pool2d(out, 4).flatten(1))


class WideBlock(nn.Module):
    def __init__(self, in_planes, out_planes, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.equal = in_planes == out_planes
        self.convShortcut = None if self.equal else nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False)

    def forward(self, x):
        act = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(act))))
        return (x if self.equal else self.convShortcut(act)) + out


class WideResNet(nn.Module):
    def __init__(self, depth=34, widen=10, in_channels=3, num_classes=10):
        super().__init__()
        n = (depth - 4) // 6
        w = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(in_channels, w[0], 3, 1, 1, bias=False)
        groups = []
        for g, stride in enumerate([1, 2, 2]):
            groups.append(nn.Sequential(*[WideBlock(w[g] if i == 0 else w[g + 1], w[g + 1], stride if i == 0 else 1)
                                          for i in range(n)]))
        self.block1, self.block2, self.block3 = groups
        self.bn1 = nn.BatchNorm2d(w[3])
        self.fc = nn.Linear(w[3], num_classes)

    def forward(self, x):
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(F.avg_pool2d(F.relu(self.bn1(out)), 8).flatten(1))


def build(arch, c, k):
    if arch == "smallcnn":
        return SmallCNN(k)
    if arch == "resnet18":
        return ResNet18(c, k)
    if arch in ("wrn34_10", "wrn34x10"):
        return WideResNet(34, 10, c, k)
    if arch in ("wrn28_10", "wrn28x10"):
        return WideResNet(28, 10, c, k)
    raise SystemExit(f"unknown arch {arch}")


# Per-example losses as harness/src/methods/losses.rs writes them: [B, C] logits -> [B].
def ce(z, y):
    return F.cross_entropy(z, y, reduction="none")


def entropy(z):
    return -(z.softmax(1) * z.log_softmax(1)).sum(1)


def kl(p_logits, q_logits):
    """KL(p || q), p = softmax(p_logits), both logarithms from log_softmax."""
    return (p_logits.softmax(1) * (p_logits.log_softmax(1) - q_logits.log_softmax(1))).sum(1)


def sq_dist(p_logits, q_logits):
    """||softmax(p_logits) - softmax(q_logits)||^2 (InfoAT's default divergence)."""
    return (p_logits.softmax(1) - q_logits.softmax(1)).square().sum(1)


def project(x_adv, x, eps):
    """Onto the L-inf ball of radius eps around x, then onto [0, 1]."""
    return torch.min(torch.max(x_adv, x - eps), x + eps).clamp(0, 1)


def apgd_checkpoints(n_iter):
    """w_j = ceil(p_j N), p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06) while
    p_j <= 1, in exact hundredths, duplicates removed (N = 100: 0, 22, 41, 57, 70, 80, 87, 93, 99)."""
    p = [0, 22]
    while p[-1] + max(p[-1] - p[-2] - 3, 6) <= 100:
        p.append(p[-1] + max(p[-1] - p[-2] - 3, 6))
    w = []
    for pj in p:
        v = -(-pj * n_iter // 100)
        if not w or w[-1] != v:
            w.append(v)
    return w


class Peer:
    """The work of one bench run on a given model and batch: the training step of each method
    (`loss` returns the outer loss and its named parts), the PGD inner maximisation and APGD-CE.
    `tuned` freezes the parameters during attacks; `fmt` is the memory format of the inputs."""

    def __init__(self, model, x, y, eps, inner_steps=10, apgd_iterations=100, tuned=False,
                 fmt=torch.contiguous_format, precision="fp32"):
        self.model, self.x, self.y, self.eps = model, x, y, eps
        self.inner_steps, self.apgd_iterations = inner_steps, apgd_iterations
        self.tuned, self.fmt, self.precision = tuned, fmt, precision
        self.params = list(model.parameters())
        self.counts = {"attacks": 0, "entered": 0, "forward": 0, "forward_backward": 0}
        # The PGD attack as a captured CUDA graph and its output (`capture_pgd`), replayed by `pgd`.
        self.graphed, self.capturing = None, False

    def autocast(self):
        dev = self.x.device.type
        if self.precision == "bf16":
            # A CUDA graph capture must not use autocast's weight-cast cache (PyTorch's CUDA-graph
            # notes); eager runs keep it, as users run it.
            return torch.autocast(device_type=dev, dtype=torch.bfloat16, cache_enabled=not self.capturing)
        return torch.autocast(device_type=dev, enabled=False)

    def logits(self, inp):
        """The model's float32 logits on inp, in the variant's memory format (a no-op when inp
        already has it, as in the harness's channels-last path)."""
        with self.autocast():
            out = self.model(inp.contiguous(memory_format=self.fmt))
        return out.float()

    def layout(self, t):
        """t in the variant's memory format when it is a batch of images (index_select returns
        NCHW whatever its input's layout)."""
        return t.contiguous(memory_format=self.fmt) if t.dim() == 4 else t

    def draw(self, fn, like):
        """fn (torch.rand or torch.randn) of like's shape, drawn in NCHW order (so the values do
        not depend on the memory format), then laid out in the variant's format."""
        return fn(like.shape, dtype=like.dtype, device=like.device).contiguous(memory_format=self.fmt)

    @contextlib.contextmanager
    def attacking(self):
        """Eval mode (BatchNorm running statistics, no dropout); parameters frozen when tuned,
        left requiring grad otherwise (as the reference repositories do)."""
        self.model.eval()
        if self.tuned:
            for p in self.params:
                p.requires_grad_(False)
        try:
            yield
        finally:
            if self.tuned:
                for p in self.params:
                    p.requires_grad_(True)

    def ascend(self, start, objective):
        """The harness's `maximize`: `inner_steps` signed-gradient steps of eps/4 on the scalar
        objective(logits), projected onto the ball and [0, 1] after each."""
        x, eps = self.x, self.eps
        with self.attacking():
            # The noise is drawn in NCHW order whatever x's layout, as the harness draws it.
            if start == "uniform":
                x_adv = (x + (self.draw(torch.rand, x) * (2 * eps) - eps)).clamp(0, 1)
            else:  # TRADES' start x + 0.001 N(0, I), not clamped until the first step projects it
                x_adv = x + self.draw(torch.randn, x) * 0.001
            for _ in range(self.inner_steps):
                xa = x_adv.detach().requires_grad_(True)
                loss = objective(self.logits(xa))
                (g,) = torch.autograd.grad(loss, [xa])
                x_adv = project(xa.detach() + (eps / 4) * g.sign(), x, eps)
            if self.inner_steps == 0 and start != "uniform":
                x_adv = project(x_adv, x, eps)
        return x_adv.detach()

    def pgd(self):
        """The inner maximisation alone (the harness's `Rig::pgd`): CE, uniform start; a replay
        of the captured graph once `capture_pgd` ran."""
        if self.graphed is not None:
            graph, x_adv = self.graphed
            graph.replay()
            return x_adv
        return self.pgd_eager()

    def pgd_eager(self):
        """PGD on the summed CE from a uniform start, op by op."""
        y = self.y
        return self.ascend("uniform", lambda z: ce(z, y).sum())

    def capture_pgd(self):
        """Captures the whole PGD attack (random start, every forward, input gradient, step and
        projection) in one CUDA graph, after PyTorch's recipe (warm-up on a side stream, then
        `torch.cuda.graph`): each later `pgd` is one graph launch instead of some thousand
        kernel launches. x and y stay where they are; a training loop would copy each batch
        into them. The random start is drawn anew at every replay (graph-safe generator)."""
        self.capturing = True  # autocast without its cache (see `autocast`)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self.pgd_eager()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            x_adv = self.pgd_eager()
        self.graphed, self.capturing = (graph, x_adv), False

    def natural_fixed(self):
        """p(x) for the inner problem: an eval-mode pass without gradient."""
        self.model.eval()
        with torch.no_grad():
            return self.logits(self.x)

    def loss(self, method):
        """The outer loss of one training step of `method` (inner maximisation included) and
        its named parts, as the harness's `Method::loss` computes them."""
        x, y = self.x, self.y
        if method == "at":
            x_adv = self.pgd()
            self.model.train()
            total = ce(self.logits(x_adv), y).mean()
            return total, {"ce_adv": total}
        if method == "trades":
            nat_fixed = self.natural_fixed()
            x_adv = self.ascend("gaussian", lambda z: kl(nat_fixed, z).sum())
            self.model.train()
            nat = self.logits(x)
            adv = self.logits(x_adv)
            ce_nat = ce(nat, y).mean()
            robust = kl(nat, adv).mean()
            return ce_nat + robust * TRADES_BETA, {"ce": ce_nat, "robust_kl": robust}
        if method == "infoat":
            nat_fixed = self.natural_fixed()
            w_fixed = entropy(nat_fixed)

            def inner(z):
                return (ce(z, y) + w_fixed * sq_dist(nat_fixed, z) * INFOAT_LAMBDA).sum()

            x_adv = self.ascend("uniform", inner)
            self.model.train()
            nat = self.logits(x)
            adv = self.logits(x_adv)
            ce_adv = ce(adv, y).mean()
            ib = (entropy(nat) * sq_dist(nat, adv)).mean()
            reg = entropy(adv).mean() * -INFOAT_BETA
            return ce_adv + ib * INFOAT_LAMBDA + reg, {"ce_adv": ce_adv, "ib_weighted": ib, "entropy_reg": reg}
        raise ValueError(method)

    def own_labels(self):
        """The labels the model predicts on x (eval mode, no gradient): the harness's bench
        attacks against them (`attack_own_labels` in harness/src/bench.rs)."""
        self.model.eval()
        self.counts["forward"] += self.x.shape[0]
        with torch.no_grad():
            return self.logits(self.x).argmax(1)

    def apgd_ce(self, y=None):
        """One APGD-CE attack on (x, y) (y: self.y unless given), after
        harness/src/attacks/apgd.rs: the adversarial batch and the broken flags. Counts the
        example passes it makes in self.counts."""
        x, eps, counts = self.x.detach(), self.eps, self.counts
        y = (self.y if y is None else y).detach()
        n_iter = self.apgd_iterations
        schedule = apgd_checkpoints(n_iter)
        per = (-1,) + (1,) * (x.dim() - 1)

        def evaluate(xk, yk, need_grad):
            counts["forward_backward" if need_grad else "forward"] += xk.shape[0]
            if need_grad:
                xa = xk.detach().requires_grad_(True)
                z = self.logits(xa)
                loss = ce(z, yk)
                (g,) = torch.autograd.grad(loss.sum(), [xa])
                return loss.detach(), torch.nan_to_num(g, nan=0.0), z.detach().argmax(-1) != yk
            with torch.no_grad():
                z = self.logits(xk)
                return ce(z, yk), None, z.argmax(-1) != yk

        with self.attacking():
            with torch.no_grad():
                counts["forward"] += x.shape[0]
                broken = self.logits(x).argmax(-1) != y
            out = x.clone()
            best = torch.full((x.shape[0],), float("-inf"), device=x.device)

            def retire(s, wrong):
                """Records the examples misclassified at s["xk"] as broken there and drops them
                from the run; False when none is left."""
                if not bool(wrong.any()):
                    return True
                hit = wrong.nonzero().squeeze(1)
                orig = s["idx"].index_select(0, hit)
                out.index_copy_(0, orig, s["xk"].index_select(0, hit))
                broken.index_fill_(0, orig, True)
                keep = (~wrong).nonzero().squeeze(1)
                for key in s:
                    s[key] = self.layout(s[key].index_select(0, keep))
                return s["idx"].shape[0] > 0

            for _ in range(APGD_RESTARTS):
                active = (~broken).nonzero().squeeze(1)
                if active.shape[0] == 0:
                    break
                counts["entered"] += active.shape[0]
                xa = self.layout(x.index_select(0, active))
                ya = y.index_select(0, active)
                n = active.shape[0]
                t = self.draw(torch.rand, xa) * 2 - 1
                norm = (t.abs().flatten(1).amax(1) + 1e-12).view(per)
                x0 = project(xa + t / norm * eps, xa, eps)
                f0, g0, wrong0 = evaluate(x0, ya, n_iter > 0)
                if g0 is None:
                    g0 = torch.zeros_like(x0)
                s = {"idx": active, "x": xa, "y": ya, "xprev": x0, "xk": x0, "grad": g0, "fk": f0, "xmax": x0,
                     "gmax": g0, "fmax": f0, "step": torch.full((n,), 2 * eps, dtype=xa.dtype, device=x.device),
                     "increases": torch.zeros_like(f0), "fmax_last": f0,
                     "halved_last": torch.zeros(n, dtype=torch.bool, device=x.device)}
                if not retire(s, wrong0):
                    continue
                next_check, emptied = 1, False
                for it in range(1, n_iter + 1):
                    alpha = 1.0 if it == 1 else APGD_MOMENTUM
                    xk = s["xk"]
                    z = project(xk + s["grad"].sign() * s["step"].view(per), s["x"], eps)
                    moved = xk + (z - xk) * alpha + (xk - s["xprev"]) * (1 - alpha)
                    xnew = project(moved, s["x"], eps)
                    f, g, wrong = evaluate(xnew, s["y"], it < n_iter)
                    s["increases"] = s["increases"] + (f > s["fk"]).to(s["increases"].dtype)
                    better = f > s["fmax"]
                    s["xmax"] = torch.where(better.view(per), xnew, s["xmax"])
                    s["fmax"] = torch.where(better, f, s["fmax"])
                    if g is not None:
                        s["gmax"] = torch.where(better.view(per), g, s["gmax"])
                        s["grad"] = g
                    s["xprev"], s["xk"], s["fk"] = xk, xnew, f
                    if not retire(s, wrong):
                        emptied = True
                        break
                    if next_check < len(schedule) and it == schedule[next_check]:
                        window = schedule[next_check] - schedule[next_check - 1]
                        next_check += 1
                        oscillating = s["increases"] <= APGD_RHO * window
                        stalled = ~s["halved_last"] & (s["fmax"] <= s["fmax_last"])
                        halve = oscillating | stalled
                        s["step"] = torch.where(halve, s["step"] * 0.5, s["step"])
                        s["xk"] = torch.where(halve.view(per), s["xmax"], s["xk"])
                        s["grad"] = torch.where(halve.view(per), s["gmax"], s["grad"])
                        s["fk"] = torch.where(halve, s["fmax"], s["fk"])
                        s["halved_last"] = halve
                        s["fmax_last"] = s["fmax"]
                        s["increases"] = torch.zeros_like(s["increases"])
                if emptied:
                    continue
                # The surviving examples keep their best point if it beats the earlier runs'.
                fmax = s["fmax"].float()
                old = best.index_select(0, s["idx"])
                better = fmax > old
                best.index_copy_(0, s["idx"], torch.where(better, fmax, old))
                out.index_copy_(0, s["idx"], torch.where(better.view(per), s["xmax"], out.index_select(0, s["idx"])))
        counts["attacks"] += 1
        return out, broken


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="smallcnn")
    ap.add_argument("--dataset", default="mnist", choices=sorted(SHAPES))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"])
    ap.add_argument("--variant", default="reference", choices=["reference", "tuned", "frozen", "channels-last"],
                    help="reference: as TRADES/MART write it; tuned: frozen + channels-last; frozen or "
                         "channels-last: one of the two")
    ap.add_argument("--method", default="at", choices=["at", "trades", "infoat"],
                    help="the training method of --work train-step (its inner maximisation and outer "
                         "loss, the harness's defaults); --work pgd and apgd-ce do not depend on it")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--inner-steps", type=int, default=10)
    ap.add_argument("--apgd-iterations", type=int, default=100,
                    help="APGD iterations (AutoAttack and the harness: 100)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", action="store_true",
                    help="after the timed steps, run one more under torch.profiler and add where its time "
                         "went: on CUDA the kernels' summed time against the step's wall time (how busy the "
                         "GPU is; low means launch-bound), on the CPU the ops with most self time")
    ap.add_argument("--graph", action="store_true",
                    help="CUDA only, --work pgd or --method at: capture the PGD attack in one CUDA graph "
                         "and replay it each step (the outer training pass stays eager); reported as "
                         "variant VARIANT+graph")
    ap.add_argument("--work", default="train-step", choices=["train-step", "pgd", "apgd-ce"],
                    help="a whole training step of --method, the inner PGD maximisation alone, or one "
                         "APGD-CE attack on the batch")
    a = ap.parse_args()

    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    torch.backends.cudnn.benchmark = cuda
    tf32 = a.precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    c, h, w, k, eps, n_train = SHAPES[a.dataset]
    model = build(a.arch, c, k).to(dev)
    tuned = a.variant in ("tuned", "frozen")
    fmt = torch.channels_last if a.variant in ("tuned", "channels-last") else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), **SGD)
    x = torch.rand(a.batch_size, c, h, w, device=dev).contiguous(memory_format=fmt)
    y = torch.randint(k, (a.batch_size,), device=dev)
    peer = Peer(model, x, y, eps, a.inner_steps, a.apgd_iterations, tuned, fmt, a.precision)
    if a.graph:
        if not cuda:
            raise SystemExit("--graph needs --device cuda (CUDA graphs)")
        if a.work == "apgd-ce" or (a.work == "train-step" and a.method != "at"):
            raise SystemExit("--graph captures the PGD attack: use it with --work pgd or --method at")
        peer.capture_pgd()

    def train_step():
        if a.work == "pgd":
            peer.pgd()
        elif a.work == "apgd-ce":
            peer.apgd_ce(peer.own_labels())
        else:
            loss, _ = peer.loss(a.method)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    for _ in range(a.warmup):
        train_step()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    counts = peer.counts
    for key in counts:
        counts[key] = 0
    t0 = time.perf_counter()
    for _ in range(a.steps):
        train_step()
    sync()
    secs = time.perf_counter() - t0
    ips = a.batch_size * a.steps / secs
    out = {
        "impl": "pytorch", "variant": a.variant + ("+graph" if a.graph else ""), "arch": a.arch,
        "dataset": a.dataset, "method": a.method,
        "work": a.work.replace("-", "_"),
        "inner_steps": a.apgd_iterations if a.work == "apgd-ce" else a.inner_steps, "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if cuda else "cpu",
        "precision": a.precision, "channels_last": fmt == torch.channels_last, "batch_size": a.batch_size,
        "steps": a.steps, "ms_per_step": 1e3 * secs / a.steps, "images_per_second": ips,
        "epoch_seconds": n_train / ips, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "heap": os.environ.get("GLIBC_TUNABLES") or "default",
    }
    if a.work == "apgd-ce":
        n = max(counts["attacks"], 1)
        # Per timed attack: examples that entered the run (all of them: the labels are the model's
        # own), and example passes without gradient (the pass that predicts the labels, APGD's clean
        # pass, each run's last iterate) and with an input gradient.
        out["apgd"] = {"iterations": a.apgd_iterations, "restarts": APGD_RESTARTS, "entered": counts["entered"] / n,
                       "forward": counts["forward"] / n, "forward_backward": counts["forward_backward"] / n}
    # The process's peak resident memory (host), as `infoat bench` records it.
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if cuda:
        out["max_memory_allocated_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
        out["max_memory_reserved_mib"] = torch.cuda.max_memory_reserved(dev) / 2**20
    if a.profile:
        out["profile"] = profile_step(train_step, sync, cuda, 1e3 * secs / a.steps)
    print(json.dumps(out))


def profile_step(step, sync, cuda, ms_per_step):
    """Where one more step's time goes, under torch.profiler. On CUDA: the number of kernels (and
    copies) the device ran and their summed time, against the unprofiled ms per step — the share
    of the step the GPU is busy. On the CPU: the ops with most self time and their shares.
    Errors are reported in the result, not raised: the timing above stands without it."""
    from torch.profiler import ProfilerActivity, profile
    try:
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=acts) as prof:
            step()
            sync()
        if cuda:
            kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
            busy_ms = sum(e.time_range.elapsed_us() for e in kernels) / 1e3
            span_ms = (max(e.time_range.end for e in kernels) - min(e.time_range.start for e in kernels)) / 1e3 \
                if kernels else 0.0
            return {"device_events": len(kernels), "device_busy_ms": busy_ms, "device_span_ms": span_ms,
                    "ms_per_step": ms_per_step, "device_busy_fraction": busy_ms / ms_per_step,
                    "mean_event_us": 1e3 * busy_ms / max(len(kernels), 1)}
        avg = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in avg) or 1.0
        top = sorted(avg, key=lambda e: e.self_cpu_time_total, reverse=True)[:8]
        return {"ops": sum(e.count for e in avg), "self_cpu_ms": total / 1e3,
                "top": [{"op": e.key, "calls": e.count, "share": e.self_cpu_time_total / total} for e in top]}
    except Exception as e:  # noqa: BLE001 - reported, see the docstring
        return {"error": f"{type(e).__name__}: {e}"}


if __name__ == "__main__":
    main()
