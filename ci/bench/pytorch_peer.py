#!/usr/bin/env python3
"""PyTorch eager peer of `infoat bench` (issue 9): the same PGD-10 adversarial-training step
(Madry AT: eval-mode BatchNorm during the attack, uniform start, 10 signed steps of eps/4,
projection; then train-mode CE on x_adv and SGD with momentum 0.9, weight decay 3.5e-3) on
the same architectures, batch, random data and threads, timed the same way (device
synchronised before reading the clock, warm-up steps untimed).

Variants:
  reference      parameters keep requires_grad during the attack, NCHW (as TRADES/MART write it)
  tuned          parameters frozen during the attack, channels-last memory format
  frozen         parameters frozen, NCHW;   channels-last: requires_grad kept, channels-last

    pytorch_peer.py --arch resnet18 --dataset cifar10 --device cuda --precision bf16 --variant tuned

Prints one JSON object per invocation on stdout (images_per_second, ms_per_step, peak memory).
Needs only torch (the cached venv or the device machine's python3).
"""
import argparse
import json
import os
import sys
import time
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "peers"))
from pytorch_reference import SmallCNN  # noqa: E402

SHAPES = {"mnist": (1, 28, 28, 10, 0.3, 60000), "fashion_mnist": (1, 28, 28, 10, 0.1, 60000),
          "cifar10": (3, 32, 32, 10, 8 / 255, 50000), "cifar100": (3, 32, 32, 100, 8 / 255, 50000),
          "svhn": (3, 32, 32, 10, 8 / 255, 73257)}


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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="smallcnn")
    ap.add_argument("--dataset", default="mnist", choices=sorted(SHAPES))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"])
    ap.add_argument("--variant", default="reference", choices=["reference", "tuned", "frozen", "channels-last"],
                    help="reference: as TRADES/MART write it; tuned: frozen + channels-last; frozen or "
                         "channels-last: one of the two")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--inner-steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="train-step", choices=["train-step", "pgd"],
                    help="a whole AT step, or the inner PGD maximisation alone")
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
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=3.5e-3)
    x = torch.rand(a.batch_size, c, h, w, device=dev).contiguous(memory_format=fmt)
    y = torch.randint(k, (a.batch_size,), device=dev)
    step_size = eps / 4
    params = list(model.parameters())

    def autocast():
        if a.precision == "bf16":
            return torch.autocast(device_type=dev.type, dtype=torch.bfloat16)
        return torch.autocast(device_type=dev.type, enabled=False)

    def attack():
        model.eval()
        if tuned:
            for p in params:
                p.requires_grad_(False)
        x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
        for _ in range(a.inner_steps):
            x_adv.requires_grad_(True)
            with autocast():
                logits = model(x_adv)
            loss = F.cross_entropy(logits.float(), y, reduction="sum")
            (g,) = torch.autograd.grad(loss, [x_adv])
            x_adv = torch.min(torch.max(x_adv.detach() + step_size * g.sign(), x - eps), x + eps).clamp(0, 1)
        if tuned:
            for p in params:
                p.requires_grad_(True)
        return x_adv

    def train_step():
        if a.work == "pgd":
            attack()
            return
        x_adv = attack()
        model.train()
        with autocast():
            logits = model(x_adv)
        loss = F.cross_entropy(logits.float(), y)
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
    t0 = time.perf_counter()
    for _ in range(a.steps):
        train_step()
    sync()
    secs = time.perf_counter() - t0
    ips = a.batch_size * a.steps / secs
    out = {
        "impl": "pytorch", "variant": a.variant, "arch": a.arch, "dataset": a.dataset, "method": "at",
        "work": a.work.replace("-", "_"),
        "inner_steps": a.inner_steps, "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if cuda else "cpu",
        "precision": a.precision, "channels_last": fmt == torch.channels_last, "batch_size": a.batch_size,
        "steps": a.steps, "ms_per_step": 1e3 * secs / a.steps, "images_per_second": ips,
        "epoch_seconds": n_train / ips, "threads": torch.get_num_threads(), "torch": torch.__version__,
    }
    if cuda:
        out["max_memory_allocated_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
        out["max_memory_reserved_mib"] = torch.cuda.max_memory_reserved(dev) / 2**20
    print(json.dumps(out))


if __name__ == "__main__":
    main()
