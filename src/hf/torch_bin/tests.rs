//! Unit tests: the stack machine on hand-built pickles, and whole archives built in
//! memory with the zip crate's writer (stored entries only, as torch writes them).

use std::io::{Cursor, Write};

use super::pickle::{MAX_STACK, MAX_TUPLE_DEPTH, unpickle};
use super::*;

/// Pickle byte-string builder, emitting the opcodes the way torch.save does.
#[derive(Clone)]
struct Pk(Vec<u8>);

const NEWFALSE: u8 = 0x89;
const NEWTRUE: u8 = 0x88;

impl Pk {
    fn new() -> Self {
        Pk(vec![0x80, 2])
    }
    fn op(mut self, b: u8) -> Self {
        self.0.push(b);
        self
    }
    fn raw(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    fn global(self, module: &str, name: &str) -> Self {
        self.op(b'c')
            .raw(module.as_bytes())
            .op(b'\n')
            .raw(name.as_bytes())
            .op(b'\n')
    }
    fn str(self, s: &str) -> Self {
        let len = u32::try_from(s.len()).unwrap().to_le_bytes();
        self.op(b'X').raw(&len).raw(s.as_bytes())
    }
    fn int(self, v: u64) -> Self {
        if let Ok(v) = u8::try_from(v) {
            self.op(b'K').op(v)
        } else if let Ok(v) = u16::try_from(v) {
            self.op(b'M').raw(&v.to_le_bytes())
        } else if let Ok(v) = i32::try_from(v) {
            self.op(b'J').raw(&v.to_le_bytes())
        } else {
            self.op(0x8a).op(8).raw(&v.to_le_bytes())
        }
    }
    fn ints(self, vs: &[u64]) -> Self {
        vs.iter().fold(self.op(b'('), |p, &v| p.int(v)).op(b't')
    }
    fn put(self, i: u8) -> Self {
        self.op(b'q').op(i)
    }
    fn get(self, i: u8) -> Self {
        self.op(b'h').op(i)
    }
    fn empty_ordered_dict(self) -> Self {
        self.global("collections", "OrderedDict").op(b')').op(b'R')
    }
    /// `('storage', torch.<class>, key, 'cpu', numel)` + BINPERSID.
    fn storage(self, class: &str, key: &str, numel: u64) -> Self {
        self.op(b'(')
            .str("storage")
            .global("torch", class)
            .str(key)
            .str("cpu")
            .int(numel)
            .op(b't')
            .op(b'Q')
    }
    /// `_rebuild_tensor_v2(storage, offset, shape, stride, False, OrderedDict())`.
    fn tensor(self, t: &Spec) -> Self {
        self.global("torch._utils", "_rebuild_tensor_v2")
            .op(b'(')
            .storage(t.class, t.key, t.numel)
            .int(t.offset)
            .ints(&t.shape)
            .ints(&t.stride)
            .op(NEWFALSE)
            .empty_ordered_dict()
            .op(b't')
            .op(b'R')
    }
    fn stop(self) -> Vec<u8> {
        self.op(b'.').0
    }
}

struct Spec {
    class: &'static str,
    key: &'static str,
    numel: u64,
    offset: u64,
    shape: Vec<u64>,
    stride: Vec<u64>,
}

fn spec(class: &'static str, key: &'static str, numel: u64, offset: u64, shape: &[u64]) -> Spec {
    // Row-major strides.
    let mut stride = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        stride[i] = stride[i + 1] * shape[i + 1];
    }
    Spec {
        class,
        key,
        numel,
        offset,
        shape: shape.to_vec(),
        stride,
    }
}

/// `OrderedDict([(name, tensor), ...])` as torch.save pickles a state dict, with `_metadata`.
fn state_dict(entries: &[(&str, Spec)]) -> Vec<u8> {
    let mut p = Pk::new().empty_ordered_dict().put(1).op(b'(');
    for (name, t) in entries {
        p = p.str(name).tensor(t);
    }
    p.op(b'u')
        .op(b'}')
        .str("_metadata")
        .empty_ordered_dict()
        .str("")
        .op(b'}')
        .str("version")
        .int(1)
        .op(b's')
        .op(b's')
        .op(b's')
        .op(b'b')
        .stop()
}

/// A zip laid out like torch.save's: `<prefix>/data.pkl`, `<prefix>/byteorder`,
/// `<prefix>/data/<key>`, all stored.
fn archive(prefix: &str, pkl: &[u8], storages: &[(&str, Vec<u8>)], large: bool) -> Vec<u8> {
    let mut extra: Vec<(String, Vec<u8>)> = vec![(format!("{prefix}/byteorder"), b"little".to_vec())];
    for (key, bytes) in storages {
        extra.push((format!("{prefix}/data/{key}"), bytes.clone()));
    }
    let mut entries = vec![(format!("{prefix}/data.pkl"), pkl.to_vec())];
    entries.extend(extra);
    raw_zip(&entries, large)
}

fn raw_zip(entries: &[(String, Vec<u8>)], large: bool) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .large_file(large)
        .with_alignment(64);
    for (name, bytes) in entries {
        w.start_file(name.as_str(), opts).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn f32_bytes(vals: &[f32]) -> Vec<u8> {
    vals.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn err_of<T: std::fmt::Debug>(r: Result<T, TorchBinError>) -> String {
    r.expect_err("expected an error").to_string()
}

fn floats_at(file: &[u8], t: &TorchTensor) -> Vec<f32> {
    file[t.data.clone()]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn reads_state_dict_with_shared_storage() {
    let pkl = state_dict(&[
        ("w", spec("FloatStorage", "0", 6, 0, &[2, 3])),
        ("w.tail", spec("FloatStorage", "0", 6, 3, &[3])),
        ("h", spec("HalfStorage", "1", 2, 0, &[2])),
        ("b", spec("BFloat16Storage", "2", 1, 0, &[])),
    ]);
    let vals = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    let file = archive(
        "archive",
        &pkl,
        &[
            ("0", f32_bytes(&vals)),
            ("1", vec![0, 0x3c, 0, 0x40]),
            ("2", vec![0x80, 0x3f]),
        ],
        false,
    );
    let ts = read_torch_bin(&file).unwrap();
    let names: Vec<_> = ts.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["w", "w.tail", "h", "b"]);
    assert_eq!(ts[0].dtype, DType::F32);
    assert_eq!(ts[0].shape, [2, 3]);
    assert_eq!(floats_at(&file, &ts[0]), vals);
    assert_eq!(ts[1].shape, [3]);
    assert_eq!(floats_at(&file, &ts[1]), [4.0, 5.0, 6.0]);
    assert_eq!(ts[1].data.start, ts[0].data.start + 12);
    assert_eq!(ts[2].dtype, DType::F16);
    assert_eq!(&file[ts[2].data.clone()], [0, 0x3c, 0, 0x40]);
    assert_eq!(ts[3].dtype, DType::BF16);
    assert!(ts[3].shape.is_empty());
    assert_eq!(ts[3].numel(), 1);
    assert_eq!(&file[ts[3].data.clone()], [0x80, 0x3f]);
}

/// Rewrites a zip's end of central directory into the zip64 form that a > 4 GiB
/// file such as Minitron's 16.5 GB `pytorch_model.bin` has: a zip64 end record and
/// locator, and the classic record's fields set to their "see zip64" sentinels.
fn force_zip64_end(mut zip: Vec<u8>) -> Vec<u8> {
    let eocd = zip.len() - 22;
    assert_eq!(zip[eocd..eocd + 4], *b"PK\x05\x06");
    let field = |at: usize, n: usize| {
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(&zip[eocd + at..eocd + at + n]);
        u64::from_le_bytes(b)
    };
    let (count, cd_size, cd_offset) = (field(10, 2), field(12, 4), field(16, 4));
    zip.truncate(eocd);
    let zip64_eocd = zip.len() as u64;
    zip.extend_from_slice(b"PK\x06\x06");
    zip.extend_from_slice(&44u64.to_le_bytes());
    zip.extend_from_slice(&45u16.to_le_bytes());
    zip.extend_from_slice(&45u16.to_le_bytes());
    zip.extend_from_slice(&[0; 8]);
    for v in [count, count, cd_size, cd_offset] {
        zip.extend_from_slice(&v.to_le_bytes());
    }
    zip.extend_from_slice(b"PK\x06\x07");
    zip.extend_from_slice(&0u32.to_le_bytes());
    zip.extend_from_slice(&zip64_eocd.to_le_bytes());
    zip.extend_from_slice(&1u32.to_le_bytes());
    zip.extend_from_slice(b"PK\x05\x06");
    zip.extend_from_slice(&[0; 4]);
    zip.extend_from_slice(&[0xff; 12]);
    zip.extend_from_slice(&[0; 2]);
    zip
}

#[test]
fn zip64_and_any_prefix() {
    let pkl = state_dict(&[("w", spec("FloatStorage", "0", 2, 0, &[2]))]);
    // Zip64 extra fields on every entry, and a zip64 end of central directory.
    let file = force_zip64_end(archive(
        "pytorch_model",
        &pkl,
        &[("0", f32_bytes(&[7.0, 8.0]))],
        true,
    ));
    let ts = read_torch_bin(&file).unwrap();
    assert_eq!(ts[0].name, "w");
    assert_eq!(floats_at(&file, &ts[0]), [7.0, 8.0]);
}

#[test]
fn plain_dict_and_parameter() {
    // A plain dict (EMPTY_DICT) at top level, a Parameter value, memo reuse.
    let t = spec("FloatStorage", "0", 1, 0, &[1]);
    let pkl = Pk::new()
        .op(b'}')
        .put(0)
        .str("p")
        .global("torch._utils", "_rebuild_parameter")
        .op(b'(')
        .tensor(&t)
        .op(NEWTRUE)
        .empty_ordered_dict()
        .op(b't')
        .op(b'R')
        .put(1)
        .op(b's')
        .str("again")
        .get(1)
        .op(b's')
        .stop();
    let file = archive("a", &pkl, &[("0", f32_bytes(&[3.0]))], false);
    let ts = read_torch_bin(&file).unwrap();
    assert_eq!(ts.len(), 2);
    assert_eq!(ts[0].data, ts[1].data);
    assert_eq!(ts[1].name, "again");
}

#[test]
fn protocol4_opcodes() {
    // FRAME, MEMOIZE, SHORT_BINUNICODE and STACK_GLOBAL, as pickle_protocol=4 writes them.
    let short = |p: Pk, s: &str| p.op(0x8c).op(u8::try_from(s.len()).unwrap()).raw(s.as_bytes());
    let mut p = Pk(vec![0x80, 4, 0x95]).raw(&[0; 8]).op(b'}').op(0x94);
    p = short(p, "w").op(0x94);
    p = short(p, "torch._utils").op(0x94);
    p = short(p, "_rebuild_tensor_v2").op(0x94).op(0x93).op(0x94);
    let pkl = p
        .op(b'(')
        .storage("FloatStorage", "0", 1)
        .int(0)
        .ints(&[1])
        .ints(&[1])
        .op(NEWFALSE)
        .empty_ordered_dict()
        .op(b't')
        .op(b'R')
        .op(0x94)
        .op(b's')
        .stop();
    let ts = unpickle(&pkl).unwrap();
    assert_eq!(ts.len(), 1);
    assert_eq!(ts[0].0, "w");
    assert_eq!(ts[0].1.shape, [1]);
}

#[test]
fn stack_global_is_allowlisted() {
    let forbidden = Pk::new()
        .op(0x8c)
        .op(8)
        .raw(b"builtins")
        .op(0x8c)
        .op(4)
        .raw(b"eval")
        .op(0x93)
        .stop();
    let e = err_of(unpickle(&forbidden));
    assert!(e.contains("builtins.eval"), "{e}");

    let ok = Pk::new()
        .op(0x8c)
        .op(11)
        .raw(b"collections")
        .op(0x94)
        .op(0x8c)
        .op(11)
        .raw(b"OrderedDict")
        .op(0x94)
        .op(0x93)
        .op(b')')
        .op(b'R')
        .stop();
    assert!(unpickle(&ok).unwrap().is_empty());
}

#[test]
fn forbidden_globals() {
    for (module, name) in [
        ("posix", "system"),
        ("os", "system"),
        ("builtins", "eval"),
        ("__builtin__", "exec"),
        ("torch", "load"),
        ("torch._utils", "_rebuild_tensor"),
        ("torch._utils", "_rebuild_tensor_v3"),
        ("collections", "defaultdict"),
    ] {
        let pkl = Pk::new()
            .global(module, name)
            .str("echo pwned")
            .op(0x85)
            .op(b'R')
            .stop();
        let e = err_of(unpickle(&pkl));
        assert!(e.contains(&format!("`{module}.{name}`")), "{e}");
        assert!(e.contains("not allowed"), "{e}");
    }
}

#[test]
fn forbidden_opcodes() {
    for (bytes, name) in [
        (&b"(X\x01\x00\x00\x00xios\nsystem\n."[..], "INST"),
        (b"\x82\x01.", "EXT1"),
        (b"\x83\x01\x00.", "EXT2"),
        (b"\x84\x01\x00\x00\x00.", "EXT4"),
        (b"(N)o.", "OBJ"),
        (b"N)\x81.", "NEWOBJ"),
        (b"N)}\x92.", "NEWOBJ_EX"),
        (b"Pfoo\n.", "PERSID"),
        (b"S'x'\n.", "STRING"),
        (b"C\x01x.", "SHORT_BINBYTES"),
        (b"G\0\0\0\0\0\0\0\0.", "BINFLOAT"),
        (b"N0.", "POP"),
        (b"N2.", "DUP"),
        (b"g0\n.", "GET"),
        (b"\x8f.", "EMPTY_SET"),
        (b"\x97.", "NEXT_BUFFER"),
    ] {
        let pkl = Pk::new().raw(bytes).0;
        let e = err_of(unpickle(&pkl));
        assert!(e.contains(&format!("opcode {name} ")), "{name}: {e}");
    }
    let e = err_of(unpickle(b"\x80\x02\xff."));
    assert!(e.contains("0xff (not a pickle opcode)"), "{e}");
}

#[test]
fn truncated_streams_error_without_panic() {
    let pkl = state_dict(&[
        ("w", spec("FloatStorage", "0", 6, 0, &[2, 3])),
        ("big", spec("HalfStorage", "1", 100_000, 0, &[100_000])),
    ]);
    assert_eq!(unpickle(&pkl).unwrap().len(), 2);
    for n in 0..pkl.len() {
        assert!(unpickle(&pkl[..n]).is_err(), "prefix of {n} bytes was accepted");
    }
    let e = err_of(unpickle(&pkl[..pkl.len() - 1]));
    assert!(e.contains("without a STOP"), "{e}");
    let e = err_of(unpickle(b"\x80\x02X\x10\x00\x00\x00abc"));
    assert!(e.contains("truncated") && e.contains("BINUNICODE"), "{e}");
    let e = err_of(unpickle(b"\x80\x02cposix\nsys"));
    assert!(e.contains("truncated") && e.contains("GLOBAL"), "{e}");
}

#[test]
fn trailing_bytes_after_stop() {
    let e = err_of(unpickle(b"\x80\x02}.."));
    assert!(e.contains("follow STOP"), "{e}");
}

#[test]
fn bad_memo_index() {
    let e = err_of(unpickle(&Pk::new().op(b'}').get(7).stop()));
    assert!(
        e.contains("BINGET") && e.contains("memo index 7 was never set"),
        "{e}"
    );
    let e = err_of(unpickle(&Pk::new().op(b'}').op(b'j').raw(&[0, 1, 0, 0]).stop()));
    assert!(e.contains("LONG_BINGET") && e.contains("memo index 256"), "{e}");
    // BINPUT with nothing on the stack.
    let e = err_of(unpickle(&Pk::new().put(0).stop()));
    assert!(e.contains("BINPUT") && e.contains("underflow"), "{e}");
}

#[test]
fn stack_discipline() {
    // REDUCE on an empty stack, TUPLE without MARK, SETITEM across a MARK.
    let e = err_of(unpickle(&Pk::new().op(b'R').stop()));
    assert!(e.contains("REDUCE") && e.contains("underflow"), "{e}");
    let e = err_of(unpickle(&Pk::new().op(b't').stop()));
    assert!(e.contains("no MARK"), "{e}");
    let e = err_of(unpickle(
        &Pk::new().op(b'}').str("k").op(b'(').str("v").op(b's').stop(),
    ));
    assert!(e.contains("SETITEM") && e.contains("underflow"), "{e}");
    let e = err_of(unpickle(&Pk::new().op(b'}').op(b'(').stop()));
    assert!(e.contains("STOP"), "{e}");
    let e = err_of(unpickle(&Pk::new().op(b'}').op(b'N').stop()));
    assert!(e.contains("left on the stack"), "{e}");
    let e = err_of(unpickle(&Pk::new().op(b'}').op(b'(').str("k").op(b'u').stop()));
    assert!(e.contains("odd number"), "{e}");
    let e = err_of(unpickle(&Pk::new().op(b'}').op(b'N').op(b'N').op(b's').stop()));
    assert!(e.contains("dict key is None"), "{e}");
}

#[test]
fn bounded_stack_and_nesting() {
    let mut p = Pk::new().op(b'}').0;
    p.extend(std::iter::repeat_n(b'N', MAX_STACK + 1));
    let e = err_of(unpickle(&p));
    assert!(e.contains("stack deeper"), "{e}");

    // Deeply nested tuples must be refused before dropping them could overflow.
    let mut p = Pk::new().op(b'}').op(b')').0;
    p.extend(std::iter::repeat_n(0x85, 100_000));
    let e = err_of(unpickle(&p));
    assert!(
        e.contains(&format!("nested deeper than {MAX_TUPLE_DEPTH}")),
        "{e}"
    );

    let mut p = Pk::new().0;
    p.extend(std::iter::repeat_n(b'(', 100_000));
    let e = err_of(unpickle(&p));
    assert!(e.contains("nested MARKs"), "{e}");
}

#[test]
fn long1_integers() {
    // numel 2^32 as LONG1 parses (then fails the storage size check, not the parser).
    let t = spec("FloatStorage", "0", 1 << 32, 0, &[2]);
    let pkl = state_dict(&[("w", t)]);
    let ts = unpickle(&pkl).unwrap();
    assert_eq!(ts[0].1.storage.numel, 1 << 32);
    // A negative storage offset.
    let pkl = Pk::new()
        .global("torch._utils", "_rebuild_tensor_v2")
        .op(b'(')
        .storage("FloatStorage", "0", 1)
        .op(0x8a)
        .op(1)
        .op(0xff)
        .ints(&[1])
        .ints(&[1])
        .op(NEWFALSE)
        .empty_ordered_dict()
        .op(b't')
        .op(b'R')
        .stop();
    let e = err_of(unpickle(&pkl));
    assert!(e.contains("storage_offset is -1"), "{e}");
    let e = err_of(unpickle(&Pk::new().op(0x8a).op(9).raw(&[0; 9]).stop()));
    assert!(e.contains("exceeds 64 bits"), "{e}");
}

#[test]
fn not_a_state_dict() {
    let e = err_of(unpickle(&Pk::new().op(b']').stop()));
    assert!(e.contains("not a dict of tensors") && e.contains("a list"), "{e}");
    let e = err_of(unpickle(&Pk::new().op(b'}').str("step").int(3).op(b's').stop()));
    assert!(e.contains("key `step` is an int"), "{e}");
    let e = err_of(unpickle(
        &Pk::new().op(b'}').str("model").op(b'}').op(b's').stop(),
    ));
    assert!(e.contains("key `model` is a dict"), "{e}");
    // A bare tensor is not a state dict either.
    let e = err_of(unpickle(
        &Pk::new().tensor(&spec("FloatStorage", "0", 1, 0, &[1])).stop(),
    ));
    assert!(e.contains("a tensor"), "{e}");
}

#[test]
fn duplicate_keys() {
    let pkl = state_dict(&[
        ("w", spec("FloatStorage", "0", 1, 0, &[1])),
        ("w", spec("FloatStorage", "0", 1, 0, &[1])),
    ]);
    let e = err_of(unpickle(&pkl));
    assert!(e.contains("duplicate dict key `w`"), "{e}");
}

#[test]
fn storage_key_must_be_consistent() {
    let pkl = state_dict(&[
        ("a", spec("FloatStorage", "0", 4, 0, &[4])),
        ("b", spec("HalfStorage", "0", 4, 0, &[4])),
    ]);
    let e = err_of(unpickle(&pkl));
    assert!(e.contains("FloatStorage") && e.contains("HalfStorage"), "{e}");
}

#[test]
fn reduce_is_checked() {
    // Calling a storage class, a non-tuple argument, OrderedDict with arguments.
    let e = err_of(unpickle(
        &Pk::new().global("torch", "FloatStorage").op(b')').op(b'R').stop(),
    ));
    assert!(e.contains("torch.FloatStorage is not allowed"), "{e}");
    let e = err_of(unpickle(
        &Pk::new()
            .global("collections", "OrderedDict")
            .op(b'N')
            .op(b'R')
            .stop(),
    ));
    assert!(e.contains("arguments are None"), "{e}");
    let e = err_of(unpickle(
        &Pk::new()
            .global("collections", "OrderedDict")
            .op(b']')
            .op(0x85)
            .op(b'R')
            .stop(),
    ));
    assert!(e.contains("no arguments"), "{e}");
    let e = err_of(unpickle(&Pk::new().str("x").op(b')').op(b'R').stop()));
    assert!(e.contains("callable is a str"), "{e}");
    // _rebuild_tensor_v2 with 5 arguments, and with non-empty metadata.
    let e = err_of(unpickle(
        &Pk::new()
            .global("torch._utils", "_rebuild_tensor_v2")
            .op(b'(')
            .storage("FloatStorage", "0", 1)
            .int(0)
            .ints(&[1])
            .ints(&[1])
            .op(NEWFALSE)
            .op(b't')
            .op(b'R')
            .stop(),
    ));
    assert!(e.contains("got 5 arguments"), "{e}");
    let e = err_of(unpickle(
        &Pk::new()
            .global("torch._utils", "_rebuild_tensor_v2")
            .op(b'(')
            .storage("FloatStorage", "0", 1)
            .int(0)
            .ints(&[1])
            .ints(&[1])
            .op(NEWFALSE)
            .empty_ordered_dict()
            .op(b'}')
            .str("conj")
            .op(NEWTRUE)
            .op(b's')
            .op(b't')
            .op(b'R')
            .stop(),
    ));
    assert!(e.contains("metadata"), "{e}");
    // A persistent id of the wrong shape.
    let e = err_of(unpickle(&Pk::new().str("storage").op(b'Q').stop()));
    assert!(e.contains("BINPERSID"), "{e}");
}

#[test]
fn build_only_on_ordered_dict() {
    let e = err_of(unpickle(&Pk::new().op(b'}').op(b'}').op(b'b').stop()));
    assert!(
        e.contains("BUILD target is a dict, expected an OrderedDict"),
        "{e}"
    );
    let e = err_of(unpickle(&Pk::new().empty_ordered_dict().op(b'N').op(b'b').stop()));
    assert!(e.contains("BUILD state is None"), "{e}");
}

fn one_tensor_file(t: Spec, storage_bytes: usize) -> Vec<u8> {
    let key = t.key;
    let pkl = state_dict(&[("layer.weight", t)]);
    archive("archive", &pkl, &[(key, vec![0; storage_bytes])], false)
}

#[test]
fn non_contiguous_stride() {
    let mut t = spec("FloatStorage", "0", 6, 0, &[2, 3]);
    t.stride = vec![1, 2]; // a transpose
    let e = err_of(read_torch_bin(&one_tensor_file(t, 24)));
    assert!(
        e.contains("tensor `layer.weight` is not row-major contiguous"),
        "{e}"
    );
    assert!(e.contains("expected [3, 1]"), "{e}");

    // Size-1 dims may have any stride, empty tensors any strides (as in torch).
    let mut t = spec("FloatStorage", "0", 6, 0, &[1, 3, 1]);
    t.stride = vec![99, 1, 7];
    assert!(read_torch_bin(&one_tensor_file(t, 24)).is_ok());
    let mut t = spec("FloatStorage", "0", 0, 0, &[0, 3]);
    t.stride = vec![5, 5];
    let ts = read_torch_bin(&one_tensor_file(t, 0)).unwrap();
    assert!(ts[0].data.is_empty());
}

#[test]
fn out_of_range_storage() {
    // Tensor runs past the end of its storage.
    let e = err_of(read_torch_bin(&one_tensor_file(
        spec("FloatStorage", "0", 6, 4, &[3]),
        24,
    )));
    assert!(
        e.contains("tensor `layer.weight`") && e.contains("outside its storage"),
        "{e}"
    );
    // Storage claims more bytes than its zip entry has.
    let e = err_of(read_torch_bin(&one_tensor_file(
        spec("FloatStorage", "0", 6, 0, &[6]),
        20,
    )));
    assert!(
        e.contains("declares 6 elements (24 bytes)") && e.contains("20 bytes"),
        "{e}"
    );
    // Shape product overflow.
    let e = err_of(read_torch_bin(&one_tensor_file(
        spec("FloatStorage", "0", 6, 0, &[1 << 40, 1 << 40]),
        24,
    )));
    assert!(e.contains("overflows"), "{e}");
    // Storage numel * element size overflow.
    let e = err_of(read_torch_bin(&one_tensor_file(
        spec("FloatStorage", "0", u64::MAX >> 1, 0, &[1]),
        24,
    )));
    assert!(e.contains("overflows"), "{e}");
}

#[test]
fn unsupported_dtype_names_tensor() {
    let e = err_of(read_torch_bin(&one_tensor_file(
        spec("LongStorage", "0", 2, 0, &[2]),
        16,
    )));
    assert!(
        e.contains("tensor `layer.weight`") && e.contains("torch.LongStorage"),
        "{e}"
    );
}

#[test]
fn archive_checks() {
    let pkl = state_dict(&[("w", spec("FloatStorage", "0", 1, 0, &[1]))]);

    // Missing storage entry.
    let e = err_of(read_torch_bin(&archive("archive", &pkl, &[], false)));
    assert!(
        e.contains("`archive/data/0` is missing") && e.contains("tensor `w`"),
        "{e}"
    );

    // Big-endian byte order.
    let file = raw_zip(
        &[
            ("archive/data.pkl".into(), pkl.clone()),
            ("archive/byteorder".into(), b"big".to_vec()),
            ("archive/data/0".into(), vec![0; 4]),
        ],
        false,
    );
    let e = err_of(read_torch_bin(&file));
    assert!(e.contains("archive/byteorder") && e.contains("\"big\""), "{e}");

    // No byteorder entry (older torch): fine.
    let file = raw_zip(
        &[
            ("archive/data.pkl".into(), pkl.clone()),
            ("archive/data/0".into(), vec![0; 4]),
        ],
        false,
    );
    assert!(read_torch_bin(&file).is_ok());

    // No data.pkl, or two of them.
    let file = raw_zip(&[("archive/other".into(), vec![1])], false);
    assert!(matches!(read_torch_bin(&file), Err(TorchBinError::NoDataPkl)));
    let file = raw_zip(
        &[
            ("a/data.pkl".into(), pkl.clone()),
            ("b/data.pkl".into(), pkl.clone()),
        ],
        false,
    );
    let e = err_of(read_torch_bin(&file));
    assert!(e.contains("a/data.pkl") && e.contains("b/data.pkl"), "{e}");

    // Not a zip at all, and a truncated zip.
    assert!(matches!(read_torch_bin(b"not a zip"), Err(TorchBinError::Zip(_))));
    let good = archive("archive", &pkl, &[("0", vec![0; 4])], false);
    for n in [0, 10, good.len() / 2, good.len() - 1] {
        assert!(read_torch_bin(&good[..n]).is_err(), "{n}");
    }
}

#[test]
fn every_byte_flip_is_handled() {
    // Corrupting any single byte of a valid archive must give Ok or Err, never a panic.
    let pkl = state_dict(&[
        ("w", spec("FloatStorage", "0", 6, 0, &[2, 3])),
        ("v", spec("FloatStorage", "0", 6, 3, &[3])),
    ]);
    let good = archive("archive", &pkl, &[("0", vec![0; 24])], true);
    for i in 0..good.len() {
        for x in [0x01, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[i] ^= x;
            let _ = read_torch_bin(&bad);
        }
    }
}
