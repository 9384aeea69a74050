"""What the cross-check's Python sides share (attacks.py, official.py, rays.py, train_torch.py):
the cache and data folders as ci/lib.sh lays them out, the datasets' default eps (SPEC §3), the
model-and-images arguments and their resolution, and loading the TorchScript model frozen."""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "peers"))
from pytorch_reference import read_mnist, read_mnist_test  # noqa: E402,F401

DEFAULT_EPS = {"mnist": 0.3, "fashion-mnist": 0.1, "cifar10": 8 / 255}
CIFAR_RECORD = 1 + 3 * 32 * 32  # CIFAR-10 binary version: label byte, then the R, G and B planes

# The harness's seed derivation (harness/src/seed.rs `derive`, SplitMix64's finaliser as a
# counter-based mix), transcribed so that official AutoAttack can be seeded exactly as the harness
# seeds libtorch: `infoat eval --seed S --batch-size B` calls `tch::manual_seed(derive(S, Eval,
# [b]))` before batch b. The tag of the Eval stream is 6. harness/src/seed.rs's tests pin the same
# values as the check below, so a change on either side fails there or here.
_M64 = (1 << 64) - 1
EVAL_STREAM = 6


def _mix(z):
    z = (z + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def harness_seed(seed, stream, parts):
    """harness/src/seed.rs `derive(seed, stream, parts)`: a u64."""
    h = _mix((seed & _M64) ^ _mix(stream))
    for p in parts:
        h = _mix(h ^ _mix((p + 0x5851F42D4C957F2D) & _M64))
    return h


def harness_eval_seed(seed, batch):
    """The seed of libtorch's generator before batch `batch` of `infoat eval --seed seed` (as the
    u64 that torch.manual_seed takes; tch passes the same bits as an i64)."""
    return harness_seed(seed, EVAL_STREAM, [batch])


assert (harness_eval_seed(0, 0), harness_eval_seed(7, 3)) == (13227923862947999477, 11159919908865059751), \
    "common.py's seed derivation drifted from harness/src/seed.rs"


def ieee_fp32(device, allow_tf32=False):
    """Sets PyTorch's TF32 switches for work on `device` and returns whether TF32 is on. The
    harness evaluates in IEEE float32 (harness/src/precision.rs `configure_backends(Fp32)` turns
    TF32 off for cuDNN and cuBLAS), while PyTorch's defaults let cuDNN convolutions run in TF32 on
    Ampere and later GPUs, so a CUDA comparison with PyTorch's defaults would time a
    lower-precision attack. `allow_tf32` restores PyTorch's default for convolutions (official
    AutoAttack as its users run it); CPU kernels ignore both switches."""
    if not str(device).startswith("cuda"):
        return False
    torch.backends.cudnn.allow_tf32 = allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    return allow_tf32


def cache_dir():
    """$INFOAT_CACHE, else $XDG_CACHE_HOME/infoat, else ~/.cache/infoat (ci/lib.sh)."""
    return os.environ.get("INFOAT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "infoat")


def data_dir(dataset):
    return os.path.join(os.environ.get("INFOAT_DATA") or os.path.join(cache_dir(), "data"), dataset)


def read_cifar10_test(folder, n):
    """The first n images of CIFAR-10's binary test_batch.bin as ([n, 3, 32, 32] float32 in [0, 1],
    [n] int64 labels), the layout the harness's CIFAR-10 reader takes."""
    path = os.path.join(folder, "test_batch.bin")
    raw = open(path, "rb").read(n * CIFAR_RECORD)
    if len(raw) < n * CIFAR_RECORD:
        raise SystemExit(f"{path}: {len(raw) // CIFAR_RECORD} records, expected at least {n}")
    t = torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(n, CIFAR_RECORD)
    return t[:, 1:].reshape(n, 3, 32, 32).float() / 255.0, t[:, 0].long()


def read_test(dataset, folder, n):
    """The first n test images of `dataset` (IDX for MNIST-like sets, binary for CIFAR-10)."""
    return read_cifar10_test(folder, n) if dataset == "cifar10" else read_mnist_test(folder, n)


def test_count(folder):
    """Number of test images: the IDX test labels file's count (header bytes 4..8, big-endian),
    or the records of a CIFAR-10 test_batch.bin."""
    cifar = os.path.join(folder, "test_batch.bin")
    if os.path.exists(cifar):
        return os.path.getsize(cifar) // CIFAR_RECORD
    for name in ("t10k-labels-idx1-ubyte", "t10k-labels-idx1-ubyte.gz"):
        p = os.path.join(folder, name)
        if os.path.exists(p):
            if p.endswith(".gz"):
                import gzip
                head = gzip.open(p).read(8)
            else:
                head = open(p, "rb").read(8)
            return int.from_bytes(head[4:8], "big")
    raise FileNotFoundError(os.path.join(folder, "t10k-labels-idx1-ubyte"))


def add_model_args(p, n_default, n_help, eps_help="L-inf radius"):
    """The model and the first-N-test-images arguments every attacking side takes."""
    p.add_argument("model", help="TorchScript module mapping [0, 1] NCHW float32 images to logits")
    p.add_argument("--dataset", choices=sorted(DEFAULT_EPS), default="mnist")
    p.add_argument("--data-dir", help="folder with the IDX test files (CIFAR-10: test_batch.bin) "
                                      "[default: ~/.cache/infoat/data/<dataset>]")
    p.add_argument("--eps", type=float, help=f"{eps_help} [default: 0.3 MNIST, 0.1 Fashion-MNIST]")
    p.add_argument("--n", type=int, default=n_default, help=n_help)


def resolve(a):
    """(eps, data folder, n) from add_model_args's arguments; n None means every test image."""
    eps = DEFAULT_EPS[a.dataset] if a.eps is None else a.eps
    folder = a.data_dir or data_dir(a.dataset)
    count = test_count(folder)
    return eps, folder, count if a.n is None else min(a.n, count)


def load_frozen(path, device="cpu"):
    """The TorchScript model in eval mode with its parameters frozen: white-box attacks on a fixed
    model need input gradients only (the harness freezes the parameters too)."""
    model = torch.jit.load(path, map_location=device).eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return model
