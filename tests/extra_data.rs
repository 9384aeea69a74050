//! Table VI's extra data (issue 8): RST's pickle format converted by `ci/convert-rst-extra`,
//! then mixed into training; the digest found is recorded with the run, a pinned digest that
//! does not match stops the run before anything is recorded.

use infoat_tests::{infoat, mnist_dir, repo_root, stdout_json, tiny_config};

/// Writes a pickle laid out exactly as numpy writes one (`numpy.core.multiarray._reconstruct`,
/// `numpy.ndarray` state, `numpy.dtype`), without numpy: the first `n` real MNIST training
/// images as (N, 28, 28, 1) uint8 and their labels as int64 "pseudo-labels".
const MAKE_PICKLE: &str = r#"
import gzip, os, pickle, struct, sys, types
src, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def read(stem):
    p = os.path.join(src, stem)
    return open(p, "rb").read() if os.path.exists(p) else gzip.open(p + ".gz").read()
images = read("train-images-idx3-ubyte")[16:16 + n * 784]
labels = read("train-labels-idx1-ubyte")[8:8 + n]
np = types.ModuleType("numpy"); core = types.ModuleType("numpy.core"); ma = types.ModuleType("numpy.core.multiarray")
def _reconstruct(cls, shape, code): return cls.__new__(cls)
class dtype:
    def __init__(self, name): self.name = name
    def __reduce__(self): return (dtype, (self.name, False, True), (3, "<" if self.name == "i8" else "|", None, None, None, -1, -1, 0))
class ndarray:
    def __init__(self, shape, dt, raw): self.shape, self.dt, self.raw = shape, dt, raw
    def __reduce__(self): return (_reconstruct, (ndarray, (0,), b"b"), (1, self.shape, self.dt, False, self.raw))
for m, k in ((np, "numpy"), (core, "numpy.core"), (ma, "numpy.core.multiarray")): sys.modules[k] = m
_reconstruct.__module__ = "numpy.core.multiarray"; ma._reconstruct = _reconstruct
dtype.__module__ = ndarray.__module__ = "numpy"; np.dtype, np.ndarray = dtype, ndarray
d = {"data": ndarray((n, 28, 28, 1), dtype("u1"), images),
     "extrapolated_targets": ndarray((n,), dtype("i8"), struct.pack("<%dq" % n, *labels))}
pickle.dump(d, open(out, "wb"), protocol=4)
"#;

#[test]
fn rst_pickle_converts_and_trains_half_extra_batches_with_the_digest_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for e in std::fs::read_dir(mnist_dir()).unwrap() {
        let e = e.unwrap();
        std::os::unix::fs::symlink(e.path(), data.join(e.file_name())).unwrap();
    }
    let pickle = dir.path().join("pseudo.pickle");
    let made = std::process::Command::new("python3")
        .args(["-c", MAKE_PICKLE])
        .arg(mnist_dir())
        .arg("300")
        .arg(&pickle)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let conv = std::process::Command::new(repo_root().join("ci/convert-rst-extra"))
        .arg(&pickle)
        .arg(&data)
        .arg("--gzip")
        .output()
        .unwrap();
    assert!(conv.status.success(), "{}", String::from_utf8_lossy(&conv.stderr));
    let digest = String::from_utf8(conv.stdout).unwrap().trim().to_string();
    assert_eq!(digest.len(), 64, "{digest}");
    assert!(data.join("pseudo-images-idx4-ubyte.gz").exists());

    let with_extra = |pin: &str| {
        tiny_config(4, 256)
            .replace("dataset = \"mnist\"\n", &format!("dataset = \"mnist\"\nextra = {{ name = \"pseudo\"{pin} }}\n"))
    };
    std::fs::write(dir.path().join("c.toml"), with_extra(&format!(", sha256 = \"{digest}\""))).unwrap();
    let out = infoat(dir.path())
        .args(["--quiet", "train", "--config", "c.toml", "--json", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = stdout_json(&out);
    let rec = &r["record"];
    assert_eq!(rec["data"]["extra"]["sha256"], digest.as_str(), "{rec}");
    assert_eq!(rec["data"]["extra"]["images"], 300);
    assert_eq!(rec["config"]["data"]["extra"]["fraction"], 0.5, "the default fraction is written out");

    // A pinned digest that does not match: an error naming the file, and no run recorded.
    let wrong = "0".repeat(64);
    std::fs::write(dir.path().join("w.toml"), with_extra(&format!(", sha256 = \"{wrong}\""))).unwrap();
    let out = infoat(dir.path()).args(["train", "--config", "w.toml", "--data-dir"]).arg(&data).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("pseudo-images-idx4-ubyte") && err.contains(&digest), "{err}");
    let list = stdout_json(&infoat(dir.path()).args(["registry", "ls", "--json"]).output().unwrap());
    assert_eq!(list["runs"].as_array().map(Vec::len), Some(1), "{list}");
}
