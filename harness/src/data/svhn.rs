//! SVHN format 2 (cropped digits) MATLAB files (SPEC §5; datasets.md §2, "SVHN format 2").
//!
//! `train_32x32.mat` and `test_32x32.mat` are MATLAB Level-5 files (usually zlib-compressed)
//! read with the `matfile` crate. `X` is `uint8` `[32, 32, 3, N]` in column-major order (linear
//! index `r + 32 c + 1024 ch + 3072 n`), so each colour plane is stored transposed and is
//! turned into our row-major CHW layout here. `y` is `[N, 1]` with values 1..=10, where 10
//! means the digit 0 (label = `y % 10`); its storage may be any numeric type.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use matfile::{MatFile, NumericData};

use crate::{Error, Result};

use super::{DataSource, Dataset, ImageSet, Split};

/// Side of an SVHN image.
const SIDE: usize = 32;
/// Length of the fixed MAT-file header (text, subsystem offset, version, endian indicator).
const MAT_HEADER_LEN: usize = 128;
/// MAT-file data type of a compressed element.
const MI_COMPRESSED: u32 = 15;

/// Reads SVHN's `train_32x32.mat` and `test_32x32.mat` from one directory.
#[derive(Debug, Clone)]
pub struct SvhnMat {
    dir: PathBuf,
}

impl SvhnMat {
    /// A reader of the SVHN format-2 `.mat` files in `dir`.
    pub fn new(dir: PathBuf) -> Self {
        SvhnMat { dir }
    }
}

impl DataSource for SvhnMat {
    fn dataset(&self) -> Dataset {
        Dataset::Svhn
    }

    fn load(&self, split: Split) -> Result<ImageSet> {
        let (file, part) = match split {
            Split::Train => ("train_32x32.mat", "training"),
            Split::Test => ("test_32x32.mat", "test"),
        };
        let path = self.dir.join(file);
        if !path.is_file() {
            return Err(Error::MissingData {
                path,
                what: format!("SVHN format-2 {part} set ({file})"),
                hint: Dataset::Svhn.obtain_hint(),
            });
        }
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        read_svhn(&path, &bytes)
    }
}

/// Parses the bytes of an SVHN `.mat` file read from `path`.
fn read_svhn(path: &Path, bytes: &[u8]) -> Result<ImageSet> {
    let bytes = tidy_elements(path, bytes)?;
    let mat = MatFile::parse(&*bytes)
        .map_err(|e| Error::format(path, "a MATLAB Level-5 MAT-file", format!("unreadable content ({e}: {e:?})")))?;
    let (Some(x), Some(y)) = (mat.find_by_name("X"), mat.find_by_name("y")) else {
        let names: Vec<String> = mat.arrays().iter().map(|a| format!("{} {:?}", a.name(), a.size())).collect();
        return Err(Error::format(
            path,
            "numeric variables X and y",
            if names.is_empty() {
                "no readable numeric variable".to_owned()
            } else {
                format!("only {}", names.join(", "))
            },
        ));
    };

    // X: [32, 32, 3, N] (MATLAB drops a trailing singleton, so [32, 32, 3] is one image).
    let n = match x.size().as_slice() {
        [SIDE, SIDE, 3, n] => *n,
        [SIDE, SIDE, 3] => 1,
        other => return Err(Error::format(path, "X of size [32, 32, 3, N]", format!("X of size {other:?}"))),
    };
    let pixels = match x.data() {
        NumericData::UInt8 { real, imag: None } => real,
        other => {
            return Err(Error::format(path, "X of class uint8 (real)", format!("X of class {}", class_name(other))))
        }
    };
    let numel = 3 * SIDE * SIDE;
    if pixels.len() != n * numel {
        return Err(Error::format(
            path,
            format!("{} values in X of size {:?}", n * numel, x.size()),
            format!("{} values", pixels.len()),
        ));
    }
    if n == 0 {
        return Err(Error::format(path, "at least one image in X", "0 images"));
    }

    // y: [N, 1] (or [1, N]), integral values 1..=10.
    let y_size = y.size().as_slice();
    if !matches!(y_size, [a, 1] | [1, a] if *a == n) {
        return Err(Error::format(
            path,
            format!("y of size [{n}, 1] (one label per image of X)"),
            format!("y of size {y_size:?}"),
        ));
    }
    let values = real_values(y.data()).ok_or_else(|| {
        Error::format(path, "real labels y", format!("y of class {} with an imaginary part", class_name(y.data())))
    })?;
    let mut labels = Vec::with_capacity(n);
    for (i, &v) in values.iter().enumerate() {
        if v.fract() != 0.0 || !(1.0..=10.0).contains(&v) {
            return Err(Error::format(path, "labels y in 1..=10 (10 means digit 0)", format!("{v} at index {i}")));
        }
        labels.push(v as u8 % 10);
    }

    // Column-major planes (r + 32 c) to row-major (32 r + c).
    let mut images = vec![0u8; pixels.len()];
    for (src, dst) in pixels.chunks_exact(SIDE * SIDE).zip(images.chunks_exact_mut(SIDE * SIDE)) {
        for (c, column) in src.chunks_exact(SIDE).enumerate() {
            for (r, &v) in column.iter().enumerate() {
                dst[r * SIDE + c] = v;
            }
        }
    }
    let set = ImageSet { images, labels, shape: Dataset::Svhn.image_shape(), num_classes: Dataset::Svhn.num_classes() };
    set.check(path)?;
    Ok(set)
}

/// Walks the top-level data elements of a little-endian MAT-file, reports one that runs past
/// the end of the file and drops zero padding after compressed elements.
///
/// `matfile` stops silently at a truncated element (dropping it and all after it), which would
/// otherwise surface as a vaguer "missing variable" error. It also expects compressed elements
/// to be unpadded, as MATLAB and scipy write them, whereas some writers pad them to 8 bytes
/// like every other element; such padding is removed here (copying the file only then).
/// Big-endian files are returned as they are.
fn tidy_elements<'a>(path: &Path, bytes: &'a [u8]) -> Result<Cow<'a, [u8]>> {
    if bytes.len() < MAT_HEADER_LEN {
        return Err(Error::format(
            path,
            format!("a MATLAB Level-5 MAT-file (a {MAT_HEADER_LEN}-byte header at least)"),
            format!("{} bytes", bytes.len()),
        ));
    }
    if &bytes[126..128] != b"IM" {
        // Big-endian (or not a MAT-file at all): leave it to the parser.
        return Ok(Cow::Borrowed(bytes));
    }
    let word = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    // Byte ranges of the elements, each with the padding the parser expects.
    let mut spans: Vec<std::ops::Range<usize>> = Vec::new();
    let mut at = MAT_HEADER_LEN;
    while at < bytes.len() {
        // A little-endian tag never starts with a zero byte (its type is 1..=18 or it is a
        // small element), so zeros up to the next 8-byte boundary are padding.
        let aligned = at.next_multiple_of(8).min(bytes.len());
        if bytes[at..aligned].iter().all(|&b| b == 0) {
            at = aligned;
            if at == bytes.len() {
                break;
            }
        }
        if bytes.len() - at < 8 {
            return Err(Error::format(
                path,
                format!("an 8-byte data element tag at byte {at}"),
                format!("{} bytes (truncated)", bytes.len() - at),
            ));
        }
        let tag = word(at);
        let (kind, len) = if tag >> 16 != 0 {
            // Small data element: the length sits in the upper half and the data in the tag.
            (tag & 0xffff, 0)
        } else {
            (tag, word(at + 4) as usize)
        };
        let available = bytes.len() - at - 8;
        if len > available {
            return Err(Error::format(
                path,
                format!("{len} bytes of data element {} (type {kind}) at byte {at}", spans.len()),
                format!("{available} bytes left in a {}-byte file (truncated)", bytes.len()),
            ));
        }
        let mut end = at + 8 + len;
        if kind != MI_COMPRESSED {
            end = end.next_multiple_of(8).min(bytes.len());
        }
        spans.push(at..end);
        at = end;
    }
    let contiguous =
        spans.iter().try_fold(MAT_HEADER_LEN, |expected, s| (s.start == expected).then_some(s.end)).is_some();
    if contiguous {
        return Ok(Cow::Borrowed(bytes));
    }
    let mut tidy = bytes[..MAT_HEADER_LEN].to_vec();
    for span in spans {
        tidy.extend_from_slice(&bytes[span]);
    }
    Ok(Cow::Owned(tidy))
}

/// The name of the MATLAB class of `data`.
fn class_name(data: &NumericData) -> &'static str {
    match data {
        NumericData::Int8 { .. } => "int8",
        NumericData::UInt8 { .. } => "uint8",
        NumericData::Int16 { .. } => "int16",
        NumericData::UInt16 { .. } => "uint16",
        NumericData::Int32 { .. } => "int32",
        NumericData::UInt32 { .. } => "uint32",
        NumericData::Int64 { .. } => "int64",
        NumericData::UInt64 { .. } => "uint64",
        NumericData::Single { .. } => "single",
        NumericData::Double { .. } => "double",
    }
}

/// The values of a real numeric array as `f64`; `None` when it has an imaginary part. (64-bit
/// integers beyond 2^53 round, which is harmless for the range check of labels.)
fn real_values(data: &NumericData) -> Option<Vec<f64>> {
    fn conv<T: Copy>(real: &[T], imag: &Option<Vec<T>>, f: impl Fn(T) -> f64) -> Option<Vec<f64>> {
        imag.is_none().then(|| real.iter().map(|&v| f(v)).collect())
    }
    match data {
        NumericData::Int8 { real, imag } => conv(real, imag, f64::from),
        NumericData::UInt8 { real, imag } => conv(real, imag, f64::from),
        NumericData::Int16 { real, imag } => conv(real, imag, f64::from),
        NumericData::UInt16 { real, imag } => conv(real, imag, f64::from),
        NumericData::Int32 { real, imag } => conv(real, imag, f64::from),
        NumericData::UInt32 { real, imag } => conv(real, imag, f64::from),
        NumericData::Int64 { real, imag } => conv(real, imag, |v| v as f64),
        NumericData::UInt64 { real, imag } => conv(real, imag, |v| v as f64),
        NumericData::Single { real, imag } => conv(real, imag, f64::from),
        NumericData::Double { real, imag } => conv(real, imag, |v| v),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const COMPRESSED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/data/svhn");
    const UNCOMPRESSED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/data/svhn-uncompressed");

    /// The fixture's pixel formula at (n, ch, r, c).
    fn pixel(n: usize, ch: usize, r: usize, c: usize) -> u8 {
        ((r * 7 + c * 3 + ch * 50 + n * 11) % 256) as u8
    }

    // A minimal MAT-file writer for malformed inputs (same layout as make_fixtures.py).
    const MI_INT8: u32 = 1;
    const MI_UINT8: u32 = 2;
    const MI_INT32: u32 = 5;
    const MI_UINT32: u32 = 6;
    const MI_DOUBLE: u32 = 9;
    const MI_MATRIX: u32 = 14;
    const MX_DOUBLE: u32 = 6;
    const MX_UINT8: u32 = 9;

    fn element(kind: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = kind.to_le_bytes().to_vec();
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(payload);
        out.resize(out.len().next_multiple_of(8), 0);
        out
    }

    fn matrix(name: &str, class: u32, dims: &[i32], kind: u32, data: &[u8]) -> Vec<u8> {
        let flags: Vec<u8> = [class, 0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let dims: Vec<u8> = dims.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut body = element(MI_UINT32, &flags);
        body.extend(element(MI_INT32, &dims));
        body.extend(element(MI_INT8, name.as_bytes()));
        body.extend(element(kind, data));
        element(MI_MATRIX, &body)
    }

    fn mat_file(elements: &[Vec<u8>], compressed: bool) -> Vec<u8> {
        let mut out = b"MATLAB 5.0 MAT-file, infoat svhn tests".to_vec();
        out.resize(116, b' ');
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&0x0100u16.to_le_bytes());
        out.extend_from_slice(b"IM");
        for e in elements {
            if compressed {
                let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                z.write_all(e).unwrap();
                let z = z.finish().unwrap();
                out.extend_from_slice(&MI_COMPRESSED.to_le_bytes());
                out.extend_from_slice(&(z.len() as u32).to_le_bytes());
                out.extend_from_slice(&z);
            } else {
                out.extend_from_slice(e);
            }
        }
        out
    }

    /// X in the fixture's formula for `n` images, column-major `[32, 32, 3, n]`.
    fn x_bytes(n: usize) -> Vec<u8> {
        let mut x = Vec::with_capacity(n * 3072);
        for k in 0..n {
            for ch in 0..3 {
                for c in 0..32 {
                    for r in 0..32 {
                        x.push(pixel(k, ch, r, c));
                    }
                }
            }
        }
        x
    }

    fn x_matrix(n: usize) -> Vec<u8> {
        matrix("X", MX_UINT8, &[32, 32, 3, n as i32], MI_UINT8, &x_bytes(n))
    }

    fn y_double(labels: &[f64]) -> Vec<u8> {
        let data: Vec<u8> = labels.iter().flat_map(|v| v.to_le_bytes()).collect();
        matrix("y", MX_DOUBLE, &[labels.len() as i32, 1], MI_DOUBLE, &data)
    }

    fn parse(bytes: &[u8]) -> Result<ImageSet> {
        read_svhn(Path::new("/data/svhn/test_32x32.mat"), bytes)
    }

    /// Asserts an `Error::Format` naming the file and containing every one of `parts`.
    fn assert_format(result: Result<ImageSet>, parts: &[&str]) {
        let err = result.unwrap_err();
        let msg = err.to_string();
        match &err {
            Error::Format { path, .. } => assert!(path.ends_with("test_32x32.mat"), "{msg}"),
            other => panic!("expected Error::Format, got {other:?}"),
        }
        assert!(msg.contains("test_32x32.mat"), "{msg}");
        for p in parts {
            assert!(msg.contains(p), "{msg:?} lacks {p:?}");
        }
    }

    fn check_fixture_set(set: &ImageSet) {
        assert_eq!(set.len(), 4);
        assert_eq!(set.labels, [1, 0, 5, 3]);
        assert_eq!(set.shape, Dataset::Svhn.image_shape());
        assert_eq!(set.num_classes, 10);
        for n in 0..4 {
            let img = set.image(n);
            for ch in 0..3 {
                for r in 0..32 {
                    for c in 0..32 {
                        assert_eq!(img[ch * 1024 + r * 32 + c], pixel(n, ch, r, c), "({n},{ch},{r},{c})");
                    }
                }
            }
        }
    }

    #[test]
    fn compressed_fixture_loads() {
        let set = SvhnMat::new(COMPRESSED.into()).load(Split::Test).unwrap();
        check_fixture_set(&set);
    }

    #[test]
    fn uncompressed_fixture_loads_identically() {
        let a = SvhnMat::new(UNCOMPRESSED.into()).load(Split::Test).unwrap();
        check_fixture_set(&a);
        let b = SvhnMat::new(COMPRESSED.into()).load(Split::Test).unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
    }

    #[test]
    fn labels_stored_as_double_or_int_are_accepted() {
        let set = parse(&mat_file(&[x_matrix(3), y_double(&[10.0, 2.0, 9.0])], true)).unwrap();
        assert_eq!(set.labels, [0, 2, 9]);
        let y = matrix("y", MX_UINT8, &[3, 1], MI_UINT8, &[4, 10, 1]);
        let set = parse(&mat_file(&[x_matrix(3), y], false)).unwrap();
        assert_eq!(set.labels, [4, 0, 1]);
        // A row vector is fine too.
        let data: Vec<u8> = [7.0f64, 8.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let y = matrix("y", MX_DOUBLE, &[1, 2], MI_DOUBLE, &data);
        assert_eq!(parse(&mat_file(&[x_matrix(2), y], false)).unwrap().labels, [7, 8]);
    }

    #[test]
    fn missing_file_is_missing_data() {
        let dir = tempfile::tempdir().unwrap();
        let err = SvhnMat::new(dir.path().to_path_buf()).load(Split::Train).unwrap_err();
        match &err {
            Error::MissingData { path, what, hint } => {
                assert!(path.ends_with("train_32x32.mat"), "{err}");
                assert!(what.contains("train_32x32.mat"), "{err}");
                assert_eq!(hint, &Dataset::Svhn.obtain_hint());
            }
            other => panic!("expected Error::MissingData, got {other:?}"),
        }
    }

    #[test]
    fn truncated_files_are_format_errors() {
        for dir in [COMPRESSED, UNCOMPRESSED] {
            let bytes = std::fs::read(Path::new(dir).join("test_32x32.mat")).unwrap();
            // (Cut more than the up to 7 bytes of zero padding a writer may append.)
            for cut in [bytes.len() - 9, bytes.len() - 40, bytes.len() / 2, 200] {
                assert_format(parse(&bytes[..cut]), &["truncated"]);
            }
            assert_format(parse(&bytes[..100]), &["MAT-file", "100 bytes"]);
        }
    }

    #[test]
    fn truncated_file_on_disk_is_a_format_error() {
        let bytes = std::fs::read(Path::new(COMPRESSED).join("test_32x32.mat")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("test_32x32.mat"), &bytes[..bytes.len() * 2 / 3]).unwrap();
        let result = SvhnMat::new(dir.path().to_path_buf()).load(Split::Test);
        assert_format(result, &["truncated"]);
    }

    #[test]
    fn corrupt_files_are_format_errors() {
        // Garbage inside the zlib stream.
        let mut bytes = std::fs::read(Path::new(COMPRESSED).join("test_32x32.mat")).unwrap();
        for b in &mut bytes[140..400] {
            *b ^= 0xa5;
        }
        assert!(matches!(parse(&bytes), Err(Error::Format { .. })));
        // Not a MAT-file at all.
        assert_format(parse(&[b'x'; 300]), &["MAT-file"]);
        // A file holding only y.
        assert_format(parse(&mat_file(&[y_double(&[1.0])], true)), &["variables X and y", "only y"]);
    }

    #[test]
    fn wrong_dims_are_format_errors() {
        let x = matrix("X", MX_UINT8, &[28, 28, 3, 2], MI_UINT8, &vec![0; 28 * 28 * 3 * 2]);
        assert_format(
            parse(&mat_file(&[x, y_double(&[1.0, 2.0])], true)),
            &["X of size [32, 32, 3, N]", "found X of size [28, 28, 3, 2]"],
        );
        let x = matrix("X", MX_UINT8, &[3072, 2], MI_UINT8, &vec![0; 3072 * 2]);
        assert_format(parse(&mat_file(&[x, y_double(&[1.0, 2.0])], false)), &["[32, 32, 3, N]", "[3072, 2]"]);
    }

    #[test]
    fn label_count_mismatch_is_a_format_error() {
        assert_format(
            parse(&mat_file(&[x_matrix(3), y_double(&[1.0, 2.0])], true)),
            &["y of size [3, 1]", "found y of size [2, 1]"],
        );
    }

    #[test]
    fn labels_out_of_range_are_format_errors() {
        for (labels, bad) in [
            ([1.0, 0.0, 3.0], "0 at index 1"),
            ([1.0, 2.0, 11.0], "11 at index 2"),
            ([2.5, 2.0, 1.0], "2.5 at index 0"),
        ] {
            assert_format(parse(&mat_file(&[x_matrix(3), y_double(&labels)], true)), &["labels y in 1..=10", bad]);
        }
        let y = matrix("y", MX_UINT8, &[2, 1], MI_UINT8, &[11, 1]);
        assert_format(parse(&mat_file(&[x_matrix(2), y], false)), &["11 at index 0"]);
    }

    #[test]
    fn x_of_another_class_is_a_format_error() {
        let data: Vec<u8> = x_bytes(1).iter().flat_map(|&v| f64::from(v).to_le_bytes()).collect();
        let x = matrix("X", MX_DOUBLE, &[32, 32, 3, 1], MI_DOUBLE, &data);
        assert_format(parse(&mat_file(&[x, y_double(&[1.0])], true)), &["X of class uint8", "X of class double"]);
    }
}
