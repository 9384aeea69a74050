#!/usr/bin/env python3
"""PyTorch peer for cross-checks: the reference SmallCNN (TRADES models/small_cnn.py layout and
initialisation, written from SPEC §4), loaded with `load_state_dict(strict=True)` from an infoat
checkpoint. Needs only torch (the cached venv's python3 has it); safetensors and IDX are parsed
by hand so no other package is needed.

    pytorch_reference.py init-digest SEED       digest of the initial SmallCNN of a run seeded SEED
    pytorch_reference.py eval CHECKPOINT MNIST_DIR N
                                                clean accuracy on the first N MNIST test images (JSON)
    pytorch_reference.py torchscript CHECKPOINT OUT.pt [scale]
                                                the checkpoint's SmallCNN as a TorchScript module
                                                (logits multiplied by `scale`, default 1: a large
                                                scale saturates the softmax and masks gradients)
"""
import json
import os
import struct
import sys
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "fixtures", "golden"))
from checkpoint_digest import digest  # noqa: E402

MASK = (1 << 64) - 1


def mix(z):
    """SplitMix64's finaliser (harness/src/seed.rs)."""
    z = (z + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def derive(seed, stream_tag, parts=()):
    h = mix(seed ^ mix(stream_tag))
    for p in parts:
        h = mix(h ^ mix((p + 0x5851F42D4C957F2D) & MASK))
    return h


STREAM_INIT = 1


class SmallCNN(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.feature_extractor = nn.Sequential()
        fe = self.feature_extractor
        fe.add_module("conv1", nn.Conv2d(1, 32, 3))
        fe.add_module("relu1", nn.ReLU())
        fe.add_module("conv2", nn.Conv2d(32, 32, 3))
        fe.add_module("relu2", nn.ReLU())
        fe.add_module("maxpool1", nn.MaxPool2d(2, 2))
        fe.add_module("conv3", nn.Conv2d(32, 64, 3))
        fe.add_module("relu3", nn.ReLU())
        fe.add_module("conv4", nn.Conv2d(64, 64, 3))
        fe.add_module("relu4", nn.ReLU())
        fe.add_module("maxpool2", nn.MaxPool2d(2, 2))
        self.classifier = nn.Sequential()
        cl = self.classifier
        cl.add_module("fc1", nn.Linear(64 * 4 * 4, 200))
        cl.add_module("relu1", nn.ReLU())
        cl.add_module("drop", nn.Dropout(0.5))
        cl.add_module("fc2", nn.Linear(200, 200))
        cl.add_module("relu2", nn.ReLU())
        cl.add_module("fc3", nn.Linear(200, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.zeros_(cl.fc3.weight)
        nn.init.zeros_(cl.fc3.bias)

    def forward(self, x):
        return self.classifier(self.feature_extractor(x).flatten(1))


class Scaled(nn.Module):
    """A model whose logits are multiplied by a constant: same predictions, saturated softmax."""

    def __init__(self, inner, scale):
        super().__init__()
        self.inner = inner
        self.scale = scale

    def forward(self, x):
        return self.inner(x) * self.scale


DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8}
NAMES = {v: k for k, v in DTYPES.items()}


def state_digest(state):
    return digest([
        (name, NAMES[t.dtype], list(t.shape), bytes(t.detach().contiguous().reshape(-1).view(torch.uint8).tolist()))
        for name, t in state.items()
    ])


def read_safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    body = raw[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        t = torch.frombuffer(bytearray(body[a:b]), dtype=DTYPES[info["dtype"]]) if b > a else torch.empty(0, dtype=DTYPES[info["dtype"]])
        out[name] = t.reshape(info["shape"])
    return out


def read_mnist(folder, split, n):
    """The first n images and labels of an MNIST-format IDX split ("t10k" test, "train"),
    images as float32 [n, 1, 28, 28] in [0, 1]."""
    def read(name):
        for candidate in (name, name + ".gz"):
            p = os.path.join(folder, candidate)
            if os.path.exists(p):
                if p.endswith(".gz"):
                    import gzip
                    return gzip.open(p).read()
                return open(p, "rb").read()
        raise FileNotFoundError(f"{os.path.join(folder, name)} (run ci/fetch-data)")

    images = read(f"{split}-images-idx3-ubyte")
    labels = read(f"{split}-labels-idx1-ubyte")
    total = int.from_bytes(labels[4:8], "big")
    if n > total:
        raise ValueError(f"{n} images asked of the {split} split in {folder}, which has {total}")
    x = torch.frombuffer(bytearray(images[16:16 + n * 784]), dtype=torch.uint8).reshape(n, 1, 28, 28).float() / 255.0
    y = torch.frombuffer(bytearray(labels[8:8 + n]), dtype=torch.uint8).long()
    return x, y


def read_mnist_test(folder, n):
    return read_mnist(folder, "t10k", n)


def main():
    torch.set_num_threads(1)
    cmd = sys.argv[1]
    if cmd == "init-digest":
        seed = int(sys.argv[2])
        torch.manual_seed(derive(seed, STREAM_INIT))
        print(state_digest(SmallCNN().state_dict()))
    elif cmd == "eval":
        path, folder, n = sys.argv[2], sys.argv[3], int(sys.argv[4])
        model = SmallCNN()
        model.load_state_dict(read_safetensors(path), strict=True)
        model.eval()
        x, y = read_mnist_test(folder, n)
        with torch.no_grad():
            pred = model(x).argmax(1)
        correct = int((pred == y).sum())
        print(json.dumps({"total": n, "correct": correct, "accuracy": correct / n}))
    elif cmd == "torchscript":
        path, out = sys.argv[2], sys.argv[3]
        scale = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
        model = SmallCNN()
        model.load_state_dict(read_safetensors(path), strict=True)
        model = Scaled(model, scale) if scale != 1.0 else model
        torch.jit.script(model.eval()).save(out)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
