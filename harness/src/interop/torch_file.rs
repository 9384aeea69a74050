//! PyTorch's `torch.save` file format, read and written without Python: what RobustBench and
//! the reference repositories ship (adversarial-image tensors for external evaluations, state
//! dicts of model-zoo checkpoints).
//!
//! A file is a zip archive (stored entries) under one top folder `<name>/`: `data.pkl`, a pickle
//! (protocol 2) of the object whose tensors are persistent references
//! `('storage', torch.<Type>Storage, key, location, numel)` to the raw little-endian entries
//! `data/<key>`, plus `version` and `byteorder`. A tensor is
//! `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)`.
//!
//! Files from PyTorch before 1.6 (and `torch.save(..., _use_new_zipfile_serialization=False)`)
//! use the **legacy** format instead: five pickles in a row — a magic number, the protocol
//! version, the writer's byte order and type sizes, the object (the same persistent references,
//! with a sixth element for views), the list of storage keys — then each storage as its element
//! count (8 bytes, little-endian) and raw bytes, in that list's order. Both are read.
//!
//! The reader runs a **restricted** unpickler written here: nothing in a file is ever executed
//! or imported. It understands the opcodes of pickle protocols 2–4, the globals above plus
//! `collections.OrderedDict` and `torch._utils._rebuild_parameter`. An adversarial-image file
//! ([`load_tensor`]) may name nothing else: any other global is refused by name. A state dict
//! ([`load_state_dict`]) is often saved beside other objects (`args` as an
//! `argparse.Namespace`, NumPy scalars, `torch.device`s, optimizer state); there any other global
//! is kept as an opaque name, calls and objects built from it stay opaque, and only tensors are
//! ever taken from the file.

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};
use std::path::Path;

use tch::{Kind, Tensor};

use crate::{Error, Result};

/// The archive's top folder when writing (`torch.save` uses the file stem; any name loads).
const ARCHIVE: &str = "archive";

/// Entries of the archive are aligned to this many bytes, as `torch.save` aligns them (so
/// `torch.load(..., mmap=True)` can map them).
const ALIGN: u16 = 64;

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::Checkpoint { path: path.to_path_buf(), message: message.into() }
}

/// The storage class name and element size of a tensor kind.
fn storage_of(kind: Kind) -> Option<(&'static str, usize)> {
    Some(match kind {
        Kind::Float => ("FloatStorage", 4),
        Kind::Double => ("DoubleStorage", 8),
        Kind::Half => ("HalfStorage", 2),
        Kind::BFloat16 => ("BFloat16Storage", 2),
        Kind::Int64 => ("LongStorage", 8),
        Kind::Int => ("IntStorage", 4),
        Kind::Int16 => ("ShortStorage", 2),
        Kind::Int8 => ("CharStorage", 1),
        Kind::Uint8 => ("ByteStorage", 1),
        Kind::Bool => ("BoolStorage", 1),
        _ => return None,
    })
}

fn kind_of_storage(name: &str) -> Option<Kind> {
    [
        Kind::Float,
        Kind::Double,
        Kind::Half,
        Kind::BFloat16,
        Kind::Int64,
        Kind::Int,
        Kind::Int16,
        Kind::Int8,
        Kind::Uint8,
        Kind::Bool,
    ]
    .into_iter()
    .find(|k| storage_of(*k).is_some_and(|(n, _)| n == name))
}

/// Pickle opcodes (protocol 2) this module writes or reads.
mod op {
    pub const PROTO: u8 = 0x80;
    pub const GLOBAL: u8 = b'c';
    pub const MARK: u8 = b'(';
    pub const TUPLE: u8 = b't';
    pub const TUPLE1: u8 = 0x85;
    pub const TUPLE2: u8 = 0x86;
    pub const TUPLE3: u8 = 0x87;
    pub const EMPTY_TUPLE: u8 = b')';
    pub const EMPTY_LIST: u8 = b']';
    pub const EMPTY_DICT: u8 = b'}';
    pub const APPEND: u8 = b'a';
    pub const APPENDS: u8 = b'e';
    pub const SETITEM: u8 = b's';
    pub const SETITEMS: u8 = b'u';
    pub const BINUNICODE: u8 = b'X';
    pub const SHORT_BINUNICODE: u8 = 0x8c;
    pub const BININT: u8 = b'J';
    pub const BININT1: u8 = b'K';
    pub const BININT2: u8 = b'M';
    pub const LONG1: u8 = 0x8a;
    pub const BINFLOAT: u8 = b'G';
    pub const NEWTRUE: u8 = 0x88;
    pub const NEWFALSE: u8 = 0x89;
    pub const NONE: u8 = b'N';
    pub const BINPERSID: u8 = b'Q';
    pub const REDUCE: u8 = b'R';
    pub const BUILD: u8 = b'b';
    pub const BINPUT: u8 = b'q';
    pub const LONG_BINPUT: u8 = b'r';
    pub const BINGET: u8 = b'h';
    pub const LONG_BINGET: u8 = b'j';
    pub const MEMOIZE: u8 = 0x94;
    pub const FRAME: u8 = 0x95;
    pub const STOP: u8 = b'.';
    pub const POP: u8 = b'0';
    pub const POP_MARK: u8 = b'1';
    pub const DUP: u8 = b'2';
    pub const BINSTRING: u8 = b'T';
    pub const SHORT_BINSTRING: u8 = b'U';
    pub const BINBYTES: u8 = b'B';
    pub const SHORT_BINBYTES: u8 = b'C';
    pub const BINUNICODE8: u8 = 0x8d;
    pub const BINBYTES8: u8 = 0x8e;
    pub const LONG4: u8 = 0x8b;
    pub const NEWOBJ: u8 = 0x81;
    pub const EMPTY_SET: u8 = 0x8f;
    pub const ADDITEMS: u8 = 0x90;
    pub const FROZENSET: u8 = 0x91;
    pub const STACK_GLOBAL: u8 = 0x93;
}

/// The first 14 bytes of a legacy `torch.save` file: its first pickle, the magic number
/// 0x1950a86a20f9469cfc6c (protocol 2, `LONG1` of 10 bytes).
pub const LEGACY_MAGIC: [u8; 14] = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

fn put_int(out: &mut Vec<u8>, v: i64) {
    if (0..256).contains(&v) {
        out.extend([op::BININT1, v as u8]);
    } else if (i32::MIN as i64..=i32::MAX as i64).contains(&v) {
        out.push(op::BININT);
        out.extend((v as i32).to_le_bytes());
    } else {
        out.extend([op::LONG1, 8]);
        out.extend(v.to_le_bytes());
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.push(op::BINUNICODE);
    out.extend((s.len() as u32).to_le_bytes());
    out.extend(s.as_bytes());
}

fn put_global(out: &mut Vec<u8>, module: &str, name: &str) {
    out.push(op::GLOBAL);
    out.extend(module.as_bytes());
    out.push(b'\n');
    out.extend(name.as_bytes());
    out.push(b'\n');
}

fn put_ints_tuple(out: &mut Vec<u8>, v: &[i64]) {
    out.push(op::MARK);
    for &x in v {
        put_int(out, x);
    }
    out.push(op::TUPLE);
}

/// A tensor's bytes (contiguous, on the CPU) and the pickle that rebuilds it.
struct Storage {
    bytes: Vec<u8>,
}

/// Appends to `pkl` the `_rebuild_tensor_v2` call of `tensor`, whose storage is the archive's
/// entry `data/<key>`, and returns that storage's bytes.
fn put_tensor(pkl: &mut Vec<u8>, tensor: &Tensor, key: usize, path: &Path) -> Result<Storage> {
    let t = tensor.f_detach()?.f_to_device(tch::Device::Cpu)?.f_contiguous()?;
    let kind = t.kind();
    let (storage, elem) =
        storage_of(kind).ok_or_else(|| bad(path, format!("a {kind:?} tensor has no torch.save storage type here")))?;
    let size = t.size();
    let numel: i64 = size.iter().product();
    let mut stride = vec![1i64; size.len()];
    for i in (0..size.len().saturating_sub(1)).rev() {
        stride[i] = stride[i + 1] * size[i + 1].max(1);
    }
    put_global(pkl, "torch._utils", "_rebuild_tensor_v2");
    pkl.push(op::MARK);
    pkl.push(op::MARK);
    put_str(pkl, "storage");
    put_global(pkl, "torch", storage);
    put_str(pkl, &key.to_string());
    put_str(pkl, "cpu");
    put_int(pkl, numel);
    pkl.push(op::TUPLE);
    pkl.push(op::BINPERSID);
    put_int(pkl, 0);
    put_ints_tuple(pkl, &size);
    put_ints_tuple(pkl, &stride);
    pkl.push(op::NEWFALSE);
    put_global(pkl, "collections", "OrderedDict");
    pkl.push(op::EMPTY_TUPLE);
    pkl.push(op::REDUCE);
    pkl.push(op::TUPLE);
    pkl.push(op::REDUCE);
    let mut bytes = vec![0u8; numel as usize * elem];
    t.f_copy_data_u8(&mut bytes, numel as usize)?;
    Ok(Storage { bytes })
}

/// Writes the archive of pickle `pkl` and its storages (`data/0`, `data/1`, …), atomically.
fn write_archive(path: &Path, pkl: &[u8], storages: &[Storage]) -> Result<()> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let stored = zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let io = |e: zip::result::ZipError| bad(path, format!("writing the archive: {e}"));
    let mut entries: Vec<(String, &[u8])> = vec![("data.pkl".into(), pkl), ("byteorder".into(), b"little")];
    entries.extend(storages.iter().enumerate().map(|(i, s)| (format!("data/{i}"), s.bytes.as_slice())));
    entries.push(("version".into(), b"3\n"));
    for (name, bytes) in entries {
        zip.start_file_aligned(format!("{ARCHIVE}/{name}"), stored, ALIGN).map_err(io)?;
        zip.write_all(bytes).map_err(|e| Error::io(path, e))?;
    }
    let bytes = zip.finish().map_err(io)?.into_inner();
    infoat_registry::blobs::write_atomic(path, &bytes)?;
    Ok(())
}

/// Writes `tensor` as `torch.save(tensor, path)` would, so that `torch.load(path)` —
/// `weights_only=True` included — returns it.
pub fn save_tensor(tensor: &Tensor, path: &Path) -> Result<()> {
    let mut pkl = vec![op::PROTO, 2];
    let storage = put_tensor(&mut pkl, tensor, 0, path)?;
    pkl.push(op::STOP);
    write_archive(path, &pkl, &[storage])
}

/// Writes `entries` as `torch.save(state_dict, path)` would (an `OrderedDict` of name →
/// tensor, in the given order), so that `model.load_state_dict(torch.load(path))` reads it.
pub fn save_state_dict(entries: &[(String, Tensor)], path: &Path) -> Result<()> {
    let mut pkl = vec![op::PROTO, 2];
    put_global(&mut pkl, "collections", "OrderedDict");
    pkl.push(op::EMPTY_TUPLE);
    pkl.push(op::REDUCE);
    pkl.push(op::MARK);
    let mut storages = Vec::with_capacity(entries.len());
    for (i, (name, t)) in entries.iter().enumerate() {
        put_str(&mut pkl, name);
        storages.push(put_tensor(&mut pkl, t, i, path)?);
    }
    pkl.push(op::SETITEMS);
    pkl.push(op::STOP);
    write_archive(path, &pkl, &storages)
}

/// A value of the restricted unpickler.
#[derive(Debug)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(String),
    /// A persistent storage reference: (storage type, key, numel).
    Storage(String, String, i64),
    Tensor(Tensor),
    /// A tensor of a legacy file, whose storage bytes follow the pickle: rebuilt once they are
    /// read ([`resolve`]).
    Pending(Pending),
    /// Anything a state dict file holds that is not data the reader understands (an object of
    /// another class, bytes, a huge integer): kept by a name, never used.
    Opaque(String),
    Mark,
}

/// A legacy file's tensor before its storage is read.
#[derive(Debug, Clone)]
struct Pending {
    kind: Kind,
    key: String,
    offset: i64,
    size: Vec<i64>,
    stride: Vec<i64>,
}

impl Value {
    fn int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    fn ints(&self) -> Option<Vec<i64>> {
        match self {
            Value::Tuple(v) | Value::List(v) => v.iter().map(Value::int).collect(),
            _ => None,
        }
    }
}

/// The globals a file may name (anything else is refused, or opaque in a lenient read).
const ALLOWED: &[&str] =
    &["torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter", "collections.OrderedDict"];

/// Where a tensor's storage bytes come from.
enum Storages<'a> {
    /// A zip archive's `data/<key>` entries, read on demand.
    Entries(&'a dyn Fn(&str) -> Result<Vec<u8>>),
    /// After the pickle (legacy format): tensors stay [`Value::Pending`]; each storage's type is
    /// recorded here for [`read_legacy`].
    Deferred(BTreeMap<String, String>),
}

struct Unpickler<'a> {
    pkl: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    memo: BTreeMap<u32, usize>,
    memo_values: Vec<Value>,
    path: &'a Path,
    storages: Storages<'a>,
    /// Unknown globals become opaque values instead of an error.
    lenient: bool,
}

impl Unpickler<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.pkl.len())
            .ok_or_else(|| bad(self.path, "data.pkl ends early"))?;
        let s = &self.pkl[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn line(&mut self) -> Result<String> {
        let rest = &self.pkl[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or_else(|| bad(self.path, "data.pkl: unterminated GLOBAL"))?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    fn pop(&mut self) -> Result<Value> {
        self.stack.pop().ok_or_else(|| bad(self.path, "data.pkl: stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let at = self
            .stack
            .iter()
            .rposition(|v| matches!(v, Value::Mark))
            .ok_or_else(|| bad(self.path, "data.pkl: no MARK"))?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items)
    }

    /// Memoised values are re-read by reference: tensors and storages are rebuilt, not shared
    /// (a file that refers to one twice gets two equal tensors).
    fn memo_get(&mut self, i: u32) -> Result<Value> {
        let at = *self.memo.get(&i).ok_or_else(|| bad(self.path, format!("data.pkl: memo {i} unset")))?;
        clone_value(&self.memo_values[at]).ok_or_else(|| bad(self.path, "data.pkl: a memoised value cannot be reused"))
    }

    fn memo_put(&mut self, i: u32) -> Result<()> {
        let top = self.stack.last().ok_or_else(|| bad(self.path, "data.pkl: PUT on an empty stack"))?;
        if let Some(v) = clone_value(top) {
            self.memo.insert(i, self.memo_values.len());
            self.memo_values.push(v);
        }
        Ok(())
    }

    fn reduce(&mut self, func: Value, args: Value) -> Result<Value> {
        let name = match func {
            Value::Global(name) => name,
            Value::Opaque(name) if self.lenient => return Ok(Value::Opaque(name)),
            _ => return Err(bad(self.path, "data.pkl: REDUCE on a non-callable")),
        };
        let Value::Tuple(args) = args else { return Err(bad(self.path, "data.pkl: REDUCE without an argument tuple")) };
        match name.as_str() {
            "collections.OrderedDict" => Ok(Value::Dict(Vec::new())),
            "torch._utils._rebuild_tensor_v2" => self.rebuild_tensor(args),
            // nn.Parameter(data, requires_grad, hooks): the data.
            "torch._utils._rebuild_parameter" => match args.into_iter().next() {
                Some(t @ (Value::Tensor(_) | Value::Pending(_))) => Ok(t),
                _ => Err(bad(self.path, "data.pkl: _rebuild_parameter without a tensor")),
            },
            other => Err(bad(self.path, format!("data.pkl calls {other}, which a tensor file never needs (refused)"))),
        }
    }

    /// The value of a global named `full`: a storage type, an allowed function, or (lenient)
    /// an opaque name.
    fn global(&mut self, full: String) -> Result<Value> {
        if let Some(stype) = full.strip_prefix("torch.").filter(|s| s.ends_with("Storage")) {
            Ok(Value::Str(format!("storage:{stype}")))
        } else if ALLOWED.contains(&full.as_str()) {
            Ok(Value::Global(full))
        } else if self.lenient {
            Ok(Value::Opaque(full))
        } else {
            Err(bad(self.path, format!("data.pkl names {full}, which a tensor file never needs (refused)")))
        }
    }

    fn push_opaque(&mut self, what: &str) {
        self.stack.push(Value::Opaque(what.to_string()));
    }

    fn rebuild_tensor(&mut self, args: Vec<Value>) -> Result<Value> {
        let shape_err = || bad(self.path, "data.pkl: _rebuild_tensor_v2 with unexpected arguments");
        let mut it = args.into_iter();
        let (Some(Value::Storage(stype, key, numel)), Some(offset), Some(size), Some(stride)) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            return Err(shape_err());
        };
        let (offset, size, stride) = (
            offset.int().ok_or_else(shape_err)?,
            size.ints().ok_or_else(shape_err)?,
            stride.ints().ok_or_else(shape_err)?,
        );
        let kind = kind_of_storage(&stype)
            .ok_or_else(|| bad(self.path, format!("storage type torch.{stype} is not supported")))?;
        let (_, elem) = storage_of(kind).expect("known kind");
        let entries = match &mut self.storages {
            Storages::Entries(entries) => *entries,
            Storages::Deferred(types) => {
                types.insert(key.clone(), stype);
                return Ok(Value::Pending(Pending { kind, key, offset, size, stride }));
            }
        };
        let bytes = entries(&format!("data/{key}"))?;
        if bytes.len() != numel as usize * elem {
            return Err(bad(
                self.path,
                format!("storage data/{key}: {} bytes, expected {numel} x {elem}", bytes.len()),
            ));
        }
        let storage = Tensor::f_from_data_size(&bytes, &[numel], kind)?;
        Ok(Value::Tensor(view_of(&storage, offset, &size, &stride, self.path)?))
    }

    /// Runs the pickle from the current position to its STOP; the position is then just after.
    fn run(&mut self) -> Result<Value> {
        loop {
            let code = self.u8()?;
            match code {
                op::PROTO => {
                    self.u8()?;
                }
                op::FRAME => {
                    self.take(8)?;
                }
                op::STOP => return self.pop(),
                op::MARK => self.stack.push(Value::Mark),
                op::GLOBAL => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let v = self.global(format!("{module}.{name}"))?;
                    self.stack.push(v);
                }
                op::STACK_GLOBAL => {
                    let (Value::Str(name), Value::Str(module)) = (self.pop()?, self.pop()?) else {
                        return Err(bad(self.path, "data.pkl: STACK_GLOBAL without two strings"));
                    };
                    let v = self.global(format!("{module}.{name}"))?;
                    self.stack.push(v);
                }
                op::NEWOBJ => {
                    let _args = self.pop()?;
                    match self.pop()? {
                        Value::Opaque(name) if self.lenient => self.stack.push(Value::Opaque(name)),
                        _ => {
                            return Err(bad(
                                self.path,
                                "data.pkl builds an object, which a tensor file never needs (refused)",
                            ))
                        }
                    }
                }
                op::POP => {
                    self.pop()?;
                }
                op::POP_MARK => {
                    self.pop_mark()?;
                }
                op::DUP => {
                    let top = self.stack.last().and_then(clone_value);
                    let top = top.ok_or_else(|| bad(self.path, "data.pkl: DUP of nothing"))?;
                    self.stack.push(top);
                }
                op::BINSTRING | op::SHORT_BINSTRING => {
                    let n = if code == op::BINSTRING { self.u32()? as usize } else { usize::from(self.u8()?) };
                    // Python 2 byte strings, read as Latin-1 as torch.load's default encoding does.
                    let s = self.take(n)?.iter().map(|&b| char::from(b)).collect();
                    self.stack.push(Value::Str(s));
                }
                op::BINUNICODE8 => {
                    let n = usize::try_from(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
                        .map_err(|_| bad(self.path, "data.pkl: a string longer than memory"))?;
                    let s = String::from_utf8_lossy(self.take(n)?).into_owned();
                    self.stack.push(Value::Str(s));
                }
                op::SHORT_BINBYTES | op::BINBYTES | op::BINBYTES8 => {
                    let n = match code {
                        op::SHORT_BINBYTES => usize::from(self.u8()?),
                        op::BINBYTES => self.u32()? as usize,
                        _ => usize::try_from(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
                            .map_err(|_| bad(self.path, "data.pkl: bytes longer than memory"))?,
                    };
                    self.take(n)?;
                    self.push_opaque("bytes");
                }
                op::LONG4 => {
                    let n = self.u32()? as usize;
                    self.take(n)?;
                    self.push_opaque("int");
                }
                op::EMPTY_SET => self.stack.push(Value::List(Vec::new())),
                op::ADDITEMS => {
                    let items = self.pop_mark()?;
                    match self.stack.last_mut() {
                        Some(Value::List(l)) => l.extend(items),
                        _ => return Err(bad(self.path, "data.pkl: ADDITEMS to a non-set")),
                    }
                }
                op::FROZENSET => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(items));
                }
                op::EMPTY_TUPLE => self.stack.push(Value::Tuple(Vec::new())),
                op::TUPLE => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(items));
                }
                op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                    let n = usize::from(code - op::TUPLE1 + 1);
                    if self.stack.len() < n {
                        return Err(bad(self.path, "data.pkl: stack underflow"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.stack.push(Value::Tuple(items));
                }
                op::EMPTY_LIST => self.stack.push(Value::List(Vec::new())),
                op::EMPTY_DICT => self.stack.push(Value::Dict(Vec::new())),
                op::APPEND => {
                    let v = self.pop()?;
                    match self.stack.last_mut() {
                        Some(Value::List(l)) => l.push(v),
                        _ => return Err(bad(self.path, "data.pkl: APPEND to a non-list")),
                    }
                }
                op::APPENDS => {
                    let items = self.pop_mark()?;
                    match self.stack.last_mut() {
                        Some(Value::List(l)) => l.extend(items),
                        _ => return Err(bad(self.path, "data.pkl: APPENDS to a non-list")),
                    }
                }
                op::SETITEM | op::SETITEMS => {
                    let items = if code == op::SETITEM {
                        let v = self.pop()?;
                        let k = self.pop()?;
                        vec![k, v]
                    } else {
                        self.pop_mark()?
                    };
                    if items.len() % 2 != 0 {
                        return Err(bad(self.path, "data.pkl: SETITEMS with an odd count"));
                    }
                    let Some(Value::Dict(d)) = self.stack.last_mut() else {
                        return Err(bad(self.path, "data.pkl: SETITEM on a non-dict"));
                    };
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        d.push((k, v));
                    }
                }
                op::BINUNICODE => {
                    let n = self.u32()? as usize;
                    let s = String::from_utf8_lossy(self.take(n)?).into_owned();
                    self.stack.push(Value::Str(s));
                }
                op::SHORT_BINUNICODE => {
                    let n = usize::from(self.u8()?);
                    let s = String::from_utf8_lossy(self.take(n)?).into_owned();
                    self.stack.push(Value::Str(s));
                }
                op::BININT => {
                    let v = i32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes"));
                    self.stack.push(Value::Int(i64::from(v)));
                }
                op::BININT1 => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(i64::from(v)));
                }
                op::BININT2 => {
                    let v = u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes"));
                    self.stack.push(Value::Int(i64::from(v)));
                }
                op::LONG1 => {
                    let n = usize::from(self.u8()?);
                    if n > 8 {
                        self.take(n)?;
                        self.push_opaque("int");
                        continue;
                    }
                    let b = self.take(n)?;
                    let mut buf = if b.last().is_some_and(|x| x & 0x80 != 0) { [0xffu8; 8] } else { [0u8; 8] };
                    buf[..n].copy_from_slice(b);
                    self.stack.push(Value::Int(i64::from_le_bytes(buf)));
                }
                op::BINFLOAT => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes"));
                    self.stack.push(Value::Float(v));
                }
                op::NEWTRUE => self.stack.push(Value::Bool(true)),
                op::NEWFALSE => self.stack.push(Value::Bool(false)),
                op::NONE => self.stack.push(Value::None),
                op::BINPERSID => {
                    let pid = self.pop()?;
                    let Value::Tuple(parts) = pid else {
                        return Err(bad(self.path, "data.pkl: a persistent id that is no tuple"));
                    };
                    match parts.as_slice() {
                        // The zip format's 5 elements; the legacy format adds a view (None for
                        // a whole storage, which is all torch.save has written since 0.4).
                        [Value::Str(tag), Value::Str(stype), Value::Str(key), _location, Value::Int(numel), rest @ ..]
                            if tag == "storage"
                                && stype.starts_with("storage:")
                                && matches!(rest, [] | [Value::None]) =>
                        {
                            let stype = stype.trim_start_matches("storage:").to_string();
                            self.stack.push(Value::Storage(stype, key.clone(), *numel));
                        }
                        _ => return Err(bad(self.path, "data.pkl: a persistent id that is no tensor storage")),
                    }
                }
                op::REDUCE => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = self.reduce(func, args)?;
                    self.stack.push(v);
                }
                op::BUILD => {
                    // State for an OrderedDict (backward hooks) or a tensor's metadata: ignored.
                    self.pop()?;
                }
                op::BINPUT => {
                    let i = u32::from(self.u8()?);
                    self.memo_put(i)?;
                }
                op::LONG_BINPUT => {
                    let i = self.u32()?;
                    self.memo_put(i)?;
                }
                op::MEMOIZE => {
                    let i = self.memo.len() as u32;
                    self.memo_put(i)?;
                }
                op::BINGET => {
                    let i = u32::from(self.u8()?);
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                op::LONG_BINGET => {
                    let i = self.u32()?;
                    let v = self.memo_get(i)?;
                    self.stack.push(v);
                }
                other => {
                    return Err(bad(
                        self.path,
                        format!("data.pkl uses pickle opcode 0x{other:02x}, which this reader does not support"),
                    ))
                }
            }
        }
    }
}

/// A copy of a value for the memo (tensors are shallow-cloned; marks are not memoised).
fn clone_value(v: &Value) -> Option<Value> {
    Some(match v {
        Value::None => Value::None,
        Value::Bool(b) => Value::Bool(*b),
        Value::Int(i) => Value::Int(*i),
        Value::Float(f) => Value::Float(*f),
        Value::Str(s) => Value::Str(s.clone()),
        Value::Global(g) => Value::Global(g.clone()),
        Value::Storage(a, b, n) => Value::Storage(a.clone(), b.clone(), *n),
        Value::Tensor(t) => Value::Tensor(t.shallow_clone()),
        Value::Pending(p) => Value::Pending(p.clone()),
        Value::Opaque(name) => Value::Opaque(name.clone()),
        Value::Tuple(items) => Value::Tuple(items.iter().map(clone_value).collect::<Option<_>>()?),
        Value::List(items) => Value::List(items.iter().map(clone_value).collect::<Option<_>>()?),
        Value::Dict(items) => {
            Value::Dict(items.iter().map(|(k, v)| Some((clone_value(k)?, clone_value(v)?))).collect::<Option<_>>()?)
        }
        Value::Mark => return None,
    })
}

/// The view a tensor is of its storage, checked against the storage's extent, as a contiguous
/// tensor of its own.
fn view_of(storage: &Tensor, offset: i64, size: &[i64], stride: &[i64], path: &Path) -> Result<Tensor> {
    let numel = storage.numel() as i64;
    let extent: i64 = size.iter().zip(stride).map(|(s, st)| (s - 1).max(0) * st).sum::<i64>() + 1;
    if size.iter().product::<i64>() > 0 && (offset < 0 || offset + extent > numel) {
        return Err(bad(path, format!("a tensor of size {size:?} reaches past its storage of {numel}")));
    }
    Ok(storage.f_as_strided(size, stride, Some(offset))?.f_contiguous()?)
}

fn unpickler<'a>(pkl: &'a [u8], pos: usize, path: &'a Path, storages: Storages<'a>, lenient: bool) -> Unpickler<'a> {
    Unpickler { pkl, pos, stack: Vec::new(), memo: BTreeMap::new(), memo_values: Vec::new(), path, storages, lenient }
}

/// Reads the object of a `torch.save` file, zip or legacy; `lenient` keeps unknown globals as
/// opaque values (module docs).
fn load_value(path: &Path, lenient: bool) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.starts_with(&LEGACY_MAGIC) {
        return read_legacy(&bytes, path, lenient);
    }
    let not_zip = |e: zip::result::ZipError| {
        bad(path, format!("not a torch.save file (neither a zip archive nor the legacy format: {e})"))
    };
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(not_zip)?;
    let pkl_name = zip
        .file_names()
        .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .map(str::to_string)
        .ok_or_else(|| bad(path, "no <name>/data.pkl in the archive: not a torch.save file"))?;
    let prefix = pkl_name.trim_end_matches("data.pkl").to_string();
    let mut read = |name: &str| -> Result<Vec<u8>> {
        let mut f = zip.by_name(name).map_err(|e| bad(path, format!("entry {name}: {e}")))?;
        let mut v = Vec::new();
        f.read_to_end(&mut v).map_err(|e| Error::io(path, e))?;
        Ok(v)
    };
    let pkl = read(&pkl_name)?;
    if let Ok(order) = read(&format!("{prefix}byteorder")) {
        if order != b"little" {
            return Err(bad(
                path,
                format!("byteorder {:?}: only little-endian files are supported", String::from_utf8_lossy(&order)),
            ));
        }
    }
    let entries = std::cell::RefCell::new(read);
    let fetch = |name: &str| (entries.borrow_mut())(&format!("{prefix}{name}"));
    unpickler(&pkl, 0, path, Storages::Entries(&fetch), lenient).run()
}

/// Reads a legacy-format file (module docs): the header pickles checked, the object read with
/// its tensors pending, then the storages that follow, then the tensors rebuilt from them.
fn read_legacy(bytes: &[u8], path: &Path, lenient: bool) -> Result<Value> {
    let mut pos = 0;
    // Magic number (checked by the caller), protocol version, system info.
    legacy_pickle(bytes, path, &mut pos, true)?;
    let (protocol, _) = legacy_pickle(bytes, path, &mut pos, true)?;
    if protocol.int() != Some(1001) {
        return Err(bad(path, format!("legacy torch.save protocol {protocol:?}, expected 1001")));
    }
    let (info, _) = legacy_pickle(bytes, path, &mut pos, true)?;
    if let Value::Dict(items) = &info {
        let little = items.iter().find(|(k, _)| matches!(k, Value::Str(s) if s == "little_endian"));
        if matches!(little, Some((_, Value::Bool(false)))) {
            return Err(bad(path, "a big-endian legacy file: only little-endian files are supported"));
        }
    }
    let (object, types) = legacy_pickle(bytes, path, &mut pos, lenient)?;
    let (keys, _) = legacy_pickle(bytes, path, &mut pos, false)?;
    let Value::List(keys) = keys else { return Err(bad(path, "legacy file: no list of storage keys")) };
    let mut storages = BTreeMap::new();
    for key in keys {
        let Value::Str(key) = key else { return Err(bad(path, "legacy file: a storage key that is no string")) };
        let short = || bad(path, format!("legacy file ends inside storage {key}: truncated"));
        let numel = bytes.get(pos..pos + 8).ok_or_else(short)?;
        let numel = i64::from_le_bytes(numel.try_into().expect("8 bytes"));
        pos += 8;
        let stype = types.get(&key).ok_or_else(|| bad(path, format!("legacy file: storage {key} of no tensor")))?;
        let kind =
            kind_of_storage(stype).ok_or_else(|| bad(path, format!("storage type torch.{stype} is not supported")))?;
        let (_, elem) = storage_of(kind).expect("known kind");
        let len = usize::try_from(numel).ok().and_then(|n| n.checked_mul(elem)).ok_or_else(short)?;
        let data = bytes.get(pos..pos + len).ok_or_else(short)?;
        pos += len;
        storages.insert(key, Tensor::f_from_data_size(data, &[numel], kind)?);
    }
    resolve(object, &storages, path)
}

/// The next pickle of a legacy file, from `pos` (moved past it), with the storage types its
/// tensors name.
fn legacy_pickle(
    bytes: &[u8],
    path: &Path,
    pos: &mut usize,
    lenient: bool,
) -> Result<(Value, BTreeMap<String, String>)> {
    let mut u = unpickler(bytes, *pos, path, Storages::Deferred(BTreeMap::new()), lenient);
    let v = u.run()?;
    *pos = u.pos;
    let types = match u.storages {
        Storages::Deferred(types) => types,
        Storages::Entries(_) => BTreeMap::new(),
    };
    Ok((v, types))
}

/// Replaces every pending tensor of `v` by its view of the storages read.
fn resolve(v: Value, storages: &BTreeMap<String, Tensor>, path: &Path) -> Result<Value> {
    let all = |items: Vec<Value>| items.into_iter().map(|x| resolve(x, storages, path)).collect::<Result<Vec<_>>>();
    Ok(match v {
        Value::Pending(p) => {
            let storage =
                storages.get(&p.key).ok_or_else(|| bad(path, format!("legacy file: storage {} missing", p.key)))?;
            if storage.kind() != p.kind {
                return Err(bad(path, format!("legacy file: storage {} has another type than its tensor", p.key)));
            }
            Value::Tensor(view_of(storage, p.offset, &p.size, &p.stride, path)?)
        }
        Value::Tuple(items) => Value::Tuple(all(items)?),
        Value::List(items) => Value::List(all(items)?),
        Value::Dict(items) => Value::Dict(
            items
                .into_iter()
                .map(|(k, x)| Ok((resolve(k, storages, path)?, resolve(x, storages, path)?)))
                .collect::<Result<_>>()?,
        ),
        other => other,
    })
}

/// Reads a file written by `torch.save(tensor)` (or [`save_tensor`]).
pub fn load_tensor(path: &Path) -> Result<Tensor> {
    match load_value(path, false)? {
        Value::Tensor(t) => Ok(t),
        other => Err(bad(path, format!("expected one tensor (torch.save(tensor)), found {}", describe(&other)))),
    }
}

/// Reads a file written by `torch.save(state_dict)` (zip or legacy format): name → tensor, in
/// file order. A dict wrapped as `{"state_dict": …}` or `{"model": …}` is unwrapped; entries
/// that are no tensors, and objects the reader does not know, are skipped (module docs).
pub fn load_state_dict(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let mut v = load_value(path, true)?;
    loop {
        let Value::Dict(items) = v else {
            return Err(bad(path, format!("expected a dict of tensors (a state dict), found {}", describe(&v))));
        };
        let wrapped = items.iter().position(|(k, val)| {
            matches!(k, Value::Str(s) if s == "state_dict" || s == "model") && matches!(val, Value::Dict(_))
        });
        if let Some(i) = wrapped {
            v = items.into_iter().nth(i).expect("found").1;
            continue;
        }
        let mut out = Vec::new();
        for (k, val) in items {
            match (k, val) {
                (Value::Str(name), Value::Tensor(t)) => out.push((name, t)),
                (Value::Str(_), _) => {} // non-tensor entries (epoch counters, configs) are skipped
                (k, _) => return Err(bad(path, format!("a state dict key that is no string: {}", describe(&k)))),
            }
        }
        return Ok(out);
    }
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::None => "None",
        Value::Bool(_) => "a bool",
        Value::Int(_) => "an int",
        Value::Float(_) => "a float",
        Value::Str(_) => "a string",
        Value::Tuple(_) => "a tuple",
        Value::List(_) => "a list",
        Value::Dict(_) => "a dict",
        Value::Global(_) => "a class",
        Value::Storage(..) => "a storage",
        Value::Tensor(_) | Value::Pending(_) => "a tensor",
        Value::Opaque(_) => "an object",
        Value::Mark => "a mark",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_tensor_reads_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tensor::rand([3, 1, 4, 5], (Kind::Float, tch::Device::Cpu));
        let path = dir.path().join("adv.pt");
        save_tensor(&t, &path).unwrap();
        let back = load_tensor(&path).unwrap();
        assert_eq!(back.size(), [3, 1, 4, 5]);
        assert!(back.equal(&t));
        let ids = Tensor::from_slice(&[5i64, -7, 1 << 40]);
        save_tensor(&ids, &path).unwrap();
        assert_eq!(Vec::<i64>::try_from(load_tensor(&path).unwrap()).unwrap(), [5, -7, 1 << 40]);
    }

    #[test]
    fn bad_files_are_named_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pt");
        std::fs::write(&path, b"not a zip").unwrap();
        assert!(load_tensor(&path).unwrap_err().to_string().contains("not a torch.save file"));
        // A pickle that names os.system is refused before anything runs.
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        zip.start_file("a/data.pkl", zip::write::FileOptions::default()).unwrap();
        zip.write_all(b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsq\x00\x85R.").unwrap();
        std::fs::write(&path, zip.finish().unwrap().into_inner()).unwrap();
        let e = load_tensor(&path).unwrap_err().to_string();
        assert!(e.contains("os.system") && e.contains("refused"), "{e}");
    }

    /// A state dict saved beside other objects (an `argparse.Namespace`, a call of `os.system`,
    /// bytes, a 10-byte integer) loads its tensors; the other objects stay opaque names and
    /// nothing is called. An adversarial-image file naming the same globals is refused.
    #[test]
    fn state_dicts_beside_other_objects_load_their_tensors_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ckpt.pth");
        let w = Tensor::arange(6, (Kind::Float, tch::Device::Cpu)).view([2, 3]);
        let mut pkl = vec![op::PROTO, 2, op::EMPTY_DICT, op::MARK];
        put_str(&mut pkl, "state_dict");
        put_global(&mut pkl, "collections", "OrderedDict");
        pkl.extend([op::EMPTY_TUPLE, op::REDUCE, op::MARK]);
        put_str(&mut pkl, "module.fc.weight");
        let storage = put_tensor(&mut pkl, &w, 0, &path).unwrap();
        pkl.push(op::SETITEMS);
        put_str(&mut pkl, "args");
        put_global(&mut pkl, "argparse", "Namespace");
        pkl.extend([op::EMPTY_TUPLE, op::NEWOBJ, op::EMPTY_DICT]);
        put_str(&mut pkl, "lr");
        pkl.push(op::BINFLOAT);
        pkl.extend(0.1f64.to_be_bytes());
        pkl.extend([op::SETITEM, op::BUILD]);
        put_str(&mut pkl, "evil");
        put_global(&mut pkl, "os", "system");
        put_str(&mut pkl, "touch pwned");
        pkl.extend([op::TUPLE1, op::REDUCE]);
        put_str(&mut pkl, "blob");
        pkl.extend([op::SHORT_BINBYTES, 3, 1, 2, 3]);
        put_str(&mut pkl, "magic");
        pkl.extend([op::LONG1, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        pkl.extend([op::SETITEMS, op::STOP]);
        write_archive(&path, &pkl, &[storage]).unwrap();
        let sd = load_state_dict(&path).unwrap();
        assert_eq!(sd.len(), 1);
        assert_eq!(sd[0].0, "module.fc.weight");
        assert!(sd[0].1.equal(&w));
        assert!(!dir.path().join("pwned").exists() && !std::path::Path::new("pwned").exists());
        let e = load_tensor(&path).unwrap_err().to_string();
        assert!(e.contains("refused"), "{e}");
    }
}
