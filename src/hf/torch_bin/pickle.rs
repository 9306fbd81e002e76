//! A restricted unpickler for the `data.pkl` that `torch.save` writes for a state dict.
//!
//! Python's unpickler imports and calls whatever the stream names, so a checkpoint from
//! the internet could run code. This one is a small stack machine over only the opcodes
//! torch emits (protocol 2 by default, protocol 4 when `pickle_protocol=4` is passed);
//! it imports nothing and calls nothing. GLOBAL resolves an allowlist of names to inert
//! markers, and REDUCE "applies" only those markers, after checking their arguments.
//! Everything is bounded (stack, marks, memo, tuple nesting, dimensions) and every read
//! is checked, so a hostile or truncated stream gives an error, never a panic.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use super::TorchBinError;
use crate::DType;

/// Most values on the stack at once. A state dict's SETITEMS batch holds at most
/// 2 * 1000 values (pickle batches dict items by 1000), so this is far above real use.
pub(crate) const MAX_STACK: usize = 1 << 20;
/// Most MARKs open at once. torch nests at most 3 (SETITEMS, args tuple, persistent id).
pub(crate) const MAX_MARKS: usize = 1 << 10;
/// Most memo entries. An 8B model's state dict uses a few thousand.
pub(crate) const MAX_MEMO: usize = 1 << 22;
/// Deepest tuple nesting. Tuples are reference-counted trees, and dropping a deep one
/// recurses, so this keeps a hostile stream from overflowing the native stack.
pub(crate) const MAX_TUPLE_DEPTH: u32 = 32;
/// Most tensor dimensions accepted (PyTorch itself caps tensors at 64 dims).
pub(crate) const MAX_DIMS: usize = 64;

/// The pickle name of every opcode byte, so that refusals can name what they refuse.
pub(crate) fn opcode_name(code: u8) -> Option<&'static str> {
    Some(match code {
        b'(' => "MARK",
        b')' => "EMPTY_TUPLE",
        b'.' => "STOP",
        b'0' => "POP",
        b'1' => "POP_MARK",
        b'2' => "DUP",
        b'B' => "BINBYTES",
        b'C' => "SHORT_BINBYTES",
        b'F' => "FLOAT",
        b'G' => "BINFLOAT",
        b'I' => "INT",
        b'J' => "BININT",
        b'K' => "BININT1",
        b'L' => "LONG",
        b'M' => "BININT2",
        b'N' => "NONE",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        b'R' => "REDUCE",
        b'S' => "STRING",
        b'T' => "BINSTRING",
        b'U' => "SHORT_BINSTRING",
        b'V' => "UNICODE",
        b'X' => "BINUNICODE",
        b']' => "EMPTY_LIST",
        b'a' => "APPEND",
        b'b' => "BUILD",
        b'c' => "GLOBAL",
        b'd' => "DICT",
        b'e' => "APPENDS",
        b'g' => "GET",
        b'h' => "BINGET",
        b'i' => "INST",
        b'j' => "LONG_BINGET",
        b'l' => "LIST",
        b'o' => "OBJ",
        b'p' => "PUT",
        b'q' => "BINPUT",
        b'r' => "LONG_BINPUT",
        b's' => "SETITEM",
        b't' => "TUPLE",
        b'u' => "SETITEMS",
        b'}' => "EMPTY_DICT",
        0x80 => "PROTO",
        0x81 => "NEWOBJ",
        0x82 => "EXT1",
        0x83 => "EXT2",
        0x84 => "EXT4",
        0x85 => "TUPLE1",
        0x86 => "TUPLE2",
        0x87 => "TUPLE3",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        0x8a => "LONG1",
        0x8b => "LONG4",
        0x8c => "SHORT_BINUNICODE",
        0x8d => "BINUNICODE8",
        0x8e => "BINBYTES8",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x92 => "NEWOBJ_EX",
        0x93 => "STACK_GLOBAL",
        0x94 => "MEMOIZE",
        0x95 => "FRAME",
        0x96 => "BYTEARRAY8",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => return None,
    })
}

/// The legacy `torch.<X>Storage` classes torch.save names in persistent ids
/// (`torch.storage._dtype_to_storage_type_map`). Only three have a dtype we handle;
/// the others are recognised so that the error names the tensor and its dtype
/// instead of calling the class a forbidden global.
const LEGACY_STORAGES: &[&str] = &[
    "DoubleStorage",
    "FloatStorage",
    "HalfStorage",
    "LongStorage",
    "IntStorage",
    "ShortStorage",
    "CharStorage",
    "ByteStorage",
    "BoolStorage",
    "BFloat16Storage",
    "ComplexDoubleStorage",
    "ComplexFloatStorage",
    "QInt8Storage",
    "QInt32Storage",
    "QUInt8Storage",
    "QUInt4x2Storage",
    "QUInt2x4Storage",
];

/// Element type of a storage, as named by its storage class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StorageClass {
    Known(DType),
    /// A real torch storage class whose dtype this tool does not convert, e.g. `LongStorage`.
    Unsupported(&'static str),
}

impl StorageClass {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            StorageClass::Known(DType::F16) => "HalfStorage",
            StorageClass::Known(DType::BF16) => "BFloat16Storage",
            StorageClass::Known(DType::F32) => "FloatStorage",
            StorageClass::Unsupported(name) => name,
        }
    }
}

/// An allowlisted global. These are inert markers: nothing is imported or called.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    Storage(StorageClass),
}

fn resolve_global(module: &str, name: &str) -> Option<Global> {
    match (module, name) {
        ("collections", "OrderedDict") => Some(Global::OrderedDict),
        ("torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensorV2),
        ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
        ("torch", "HalfStorage") => Some(Global::Storage(StorageClass::Known(DType::F16))),
        ("torch", "BFloat16Storage") => Some(Global::Storage(StorageClass::Known(DType::BF16))),
        ("torch", "FloatStorage") => Some(Global::Storage(StorageClass::Known(DType::F32))),
        ("torch", other) => LEGACY_STORAGES
            .iter()
            .find(|s| **s == other)
            .map(|s| Global::Storage(StorageClass::Unsupported(s))),
        _ => None,
    }
}

/// A storage named by a persistent id: zip entry `<prefix>/data/<key>`, `numel` elements.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Storage {
    pub(crate) class: StorageClass,
    pub(crate) key: Rc<str>,
    pub(crate) numel: usize,
}

/// What `_rebuild_tensor_v2` would build: a strided view of a storage.
/// Layout is checked later, where the tensor's state-dict key is known for the error.
#[derive(Debug)]
pub(crate) struct Tensor {
    pub(crate) storage: Rc<Storage>,
    pub(crate) offset: usize,
    pub(crate) shape: Vec<usize>,
    pub(crate) stride: Vec<usize>,
}

#[derive(Debug)]
struct Tuple {
    items: Vec<Value>,
    depth: u32,
}

/// A value on the stack or in the memo. Dicts and lists are indices into arenas,
/// so that mutating one through the memo is seen everywhere (Python's reference
/// semantics) and so that dropping them never recurses.
#[derive(Debug, Clone)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Str(Rc<str>),
    Tuple(Rc<Tuple>),
    List(usize),
    Dict(usize),
    Global(Global),
    Storage(Rc<Storage>),
    Tensor(Rc<Tensor>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(true) => "True",
            Value::Bool(false) => "False",
            Value::Int(_) => "an int",
            Value::Str(_) => "a str",
            Value::Tuple(_) => "a tuple",
            Value::List(_) => "a list",
            Value::Dict(_) => "a dict",
            Value::Global(_) => "a global",
            Value::Storage(_) => "a storage",
            Value::Tensor(_) => "a tensor",
        }
    }
}

#[derive(Debug, Default)]
struct Dict {
    ordered: bool,
    items: Vec<(Rc<str>, Value)>,
    keys: HashSet<Rc<str>>,
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    /// Opcode being run and its byte offset, for error messages.
    op: &'static str,
    at: usize,
    stack: Vec<Value>,
    /// Stack lengths at each open MARK; nothing may pop below the innermost one.
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    dicts: Vec<Dict>,
    lists: Vec<Vec<Value>>,
    /// Storages seen so far by key: several tensors may share one, but the key must
    /// always name the same class and size (torch.load would silently use the first).
    storages: HashMap<Rc<str>, Rc<Storage>>,
}

type Res<T> = Result<T, TorchBinError>;

/// Runs `data.pkl` and returns the state dict's `(key, tensor)` pairs in file order.
pub(crate) fn unpickle(data: &[u8]) -> Res<Vec<(String, Rc<Tensor>)>> {
    let mut m = Machine {
        data,
        pos: 0,
        op: "",
        at: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        dicts: Vec::new(),
        lists: Vec::new(),
        storages: HashMap::new(),
    };
    let top = m.run()?;
    m.state_dict(top)
}

impl<'a> Machine<'a> {
    fn err(&self, problem: impl Into<String>) -> TorchBinError {
        TorchBinError::Pickle {
            opcode: self.op,
            offset: self.at,
            problem: problem.into(),
        }
    }

    fn take(&mut self, n: usize) -> Res<&'a [u8]> {
        let data = self.data;
        let slice = self
            .pos
            .checked_add(n)
            .and_then(|end| data.get(self.pos..end))
            .ok_or(TorchBinError::Truncated {
                opcode: self.op,
                offset: self.at,
                needed: n,
                available: data.len().saturating_sub(self.pos),
            })?;
        self.pos += n;
        Ok(slice)
    }

    fn take_array<const N: usize>(&mut self) -> Res<[u8; N]> {
        let bytes = self.take(N)?;
        bytes.try_into().map_err(|_| self.err("internal: short read"))
    }

    fn u8(&mut self) -> Res<u8> {
        Ok(u8::from_le_bytes(self.take_array()?))
    }

    fn u16(&mut self) -> Res<u16> {
        Ok(u16::from_le_bytes(self.take_array()?))
    }

    fn u32(&mut self) -> Res<u32> {
        Ok(u32::from_le_bytes(self.take_array()?))
    }

    fn u64(&mut self) -> Res<u64> {
        Ok(u64::from_le_bytes(self.take_array()?))
    }

    fn len_u64(&mut self) -> Res<usize> {
        let n = self.u64()?;
        usize::try_from(n).map_err(|_| self.err(format!("length {n} does not fit in memory")))
    }

    /// A newline-terminated ASCII line (GLOBAL's module and name).
    fn line(&mut self) -> Res<&'a str> {
        let data = self.data;
        let rest = data.get(self.pos..).unwrap_or_default();
        let Some(len) = rest.iter().position(|&b| b == b'\n') else {
            return Err(TorchBinError::Truncated {
                opcode: self.op,
                offset: self.at,
                needed: rest.len().saturating_add(1),
                available: rest.len(),
            });
        };
        let line = self.take(len)?;
        self.take(1)?;
        std::str::from_utf8(line)
            .ok()
            .filter(|s| s.is_ascii())
            .ok_or_else(|| self.err("module or name is not ASCII"))
    }

    fn utf8(&mut self, len: usize) -> Res<Rc<str>> {
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(Rc::from)
            .map_err(|e| self.err(format!("string is not valid UTF-8: {e}")))
    }

    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn push(&mut self, v: Value) -> Res<()> {
        if self.stack.len() >= MAX_STACK {
            return Err(self.err(format!("stack deeper than {MAX_STACK} values")));
        }
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self) -> Res<Value> {
        if self.stack.len() <= self.floor() {
            return Err(self.err("stack underflow"));
        }
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }

    fn top(&self) -> Res<&Value> {
        if self.stack.len() <= self.floor() {
            return Err(self.err("stack underflow"));
        }
        self.stack.last().ok_or_else(|| self.err("stack underflow"))
    }

    /// Pops everything above the innermost MARK, and the MARK.
    fn pop_mark(&mut self) -> Res<Vec<Value>> {
        let mark = self.marks.pop().ok_or_else(|| self.err("no MARK on the stack"))?;
        if mark > self.stack.len() {
            return Err(self.err("MARK lies above the stack top"));
        }
        Ok(self.stack.split_off(mark))
    }

    fn tuple(&self, items: Vec<Value>) -> Res<Value> {
        let mut depth = 0;
        for item in &items {
            if let Value::Tuple(t) = item {
                depth = depth.max(t.depth);
            }
        }
        let depth = depth + 1;
        if depth > MAX_TUPLE_DEPTH {
            return Err(self.err(format!("tuples nested deeper than {MAX_TUPLE_DEPTH}")));
        }
        Ok(Value::Tuple(Rc::new(Tuple { items, depth })))
    }

    fn memo_put(&mut self, index: u32) -> Res<()> {
        let v = self.top()?.clone();
        if self.memo.len() >= MAX_MEMO && !self.memo.contains_key(&index) {
            return Err(self.err(format!("memo holds more than {MAX_MEMO} entries")));
        }
        self.memo.insert(index, v);
        Ok(())
    }

    fn memo_get(&mut self, index: u32) -> Res<()> {
        let v = self
            .memo
            .get(&index)
            .cloned()
            .ok_or_else(|| self.err(format!("memo index {index} was never set")))?;
        self.push(v)
    }

    fn global(&mut self, module: &str, name: &str) -> Res<()> {
        let g = resolve_global(module, name).ok_or_else(|| TorchBinError::ForbiddenGlobal {
            module: module.to_string(),
            name: name.to_string(),
            offset: self.at,
        })?;
        self.push(Value::Global(g))
    }

    fn dict_mut(&mut self, target: &Value) -> Res<&mut Dict> {
        let kind = target.kind();
        match target {
            Value::Dict(i) => {
                let i = *i;
                self.dicts.get_mut(i).ok_or_else(|| TorchBinError::Pickle {
                    opcode: self.op,
                    offset: self.at,
                    problem: "internal: dangling dict".into(),
                })
            }
            _ => Err(self.err(format!("target is {kind}, expected a dict"))),
        }
    }

    fn set_items(&mut self, pairs: Vec<Value>) -> Res<()> {
        if !pairs.len().is_multiple_of(2) {
            return Err(self.err(format!(
                "odd number of values ({}) for key/value pairs",
                pairs.len()
            )));
        }
        let target = self.top()?.clone();
        let (op, at) = (self.op, self.at);
        let dict = self.dict_mut(&target)?;
        let mut it = pairs.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            let Value::Str(k) = k else {
                return Err(TorchBinError::Pickle {
                    opcode: op,
                    offset: at,
                    problem: format!("dict key is {}, expected a str", k.kind()),
                });
            };
            if !dict.keys.insert(k.clone()) {
                return Err(TorchBinError::DuplicateKey {
                    key: k.to_string(),
                    offset: at,
                });
            }
            dict.items.push((k, v));
        }
        Ok(())
    }

    fn append(&mut self, items: Vec<Value>) -> Res<()> {
        let target = self.top()?;
        let Value::List(i) = *target else {
            return Err(self.err(format!("target is {}, expected a list", target.kind())));
        };
        let list = self.lists.get_mut(i).ok_or_else(|| TorchBinError::Pickle {
            opcode: self.op,
            offset: self.at,
            problem: "internal: dangling list".into(),
        })?;
        list.extend(items);
        Ok(())
    }

    fn new_dict(&mut self, ordered: bool) -> Res<()> {
        self.dicts.push(Dict {
            ordered,
            ..Dict::default()
        });
        self.push(Value::Dict(self.dicts.len() - 1))
    }

    fn is_empty_dict(&self, v: &Value) -> bool {
        matches!(v, Value::Dict(i) if self.dicts.get(*i).is_some_and(|d| d.items.is_empty()))
    }

    fn index(&self, v: &Value, what: &str) -> Res<usize> {
        match v {
            Value::Int(n) => usize::try_from(*n)
                .map_err(|_| self.err(format!("{what} is {n}, expected a non-negative int"))),
            other => Err(self.err(format!("{what} is {}, expected an int", other.kind()))),
        }
    }

    fn index_tuple(&self, v: &Value, what: &str) -> Res<Vec<usize>> {
        let Value::Tuple(t) = v else {
            return Err(self.err(format!("{what} is {}, expected a tuple of ints", v.kind())));
        };
        if t.items.len() > MAX_DIMS {
            return Err(self.err(format!(
                "{what} has {} dimensions, at most {MAX_DIMS} are supported",
                t.items.len()
            )));
        }
        t.items.iter().map(|x| self.index(x, what)).collect()
    }

    /// `('storage', <storage class>, '<key>', '<location>', numel)`.
    fn persistent_load(&mut self, pid: Value) -> Res<Value> {
        const EXPECTED: &str = "expected ('storage', torch.<X>Storage, key, location, numel)";
        let Value::Tuple(t) = &pid else {
            return Err(self.err(format!("persistent id is {}, {EXPECTED}", pid.kind())));
        };
        let [
            Value::Str(tag),
            Value::Global(Global::Storage(class)),
            Value::Str(key),
            Value::Str(_location),
            numel,
        ] = t.items.as_slice()
        else {
            return Err(self.err(format!("unexpected persistent id shape, {EXPECTED}")));
        };
        if &**tag != "storage" {
            return Err(self.err(format!("persistent id tag is {tag:?}, {EXPECTED}")));
        }
        let numel = self.index(numel, "storage numel")?;
        let storage = Storage {
            class: class.clone(),
            key: key.clone(),
            numel,
        };
        if let Some(seen) = self.storages.get(key) {
            if **seen != storage {
                return Err(self.err(format!(
                    "storage {key:?} is named as torch.{} of {} elements and as torch.{} of {} elements",
                    seen.class.name(),
                    seen.numel,
                    storage.class.name(),
                    storage.numel
                )));
            }
            return Ok(Value::Storage(seen.clone()));
        }
        let storage = Rc::new(storage);
        self.storages.insert(key.clone(), storage.clone());
        Ok(Value::Storage(storage))
    }

    /// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad,
    /// backward_hooks[, metadata])`; torch appends `metadata` only when it is non-empty.
    fn rebuild_tensor(&self, args: &[Value]) -> Res<Value> {
        let (storage, offset, size, stride, requires_grad, hooks, metadata) = match args {
            [a, b, c, d, e, f] => (a, b, c, d, e, f, None),
            [a, b, c, d, e, f, g] => (a, b, c, d, e, f, Some(g)),
            _ => {
                return Err(self.err(format!(
                    "_rebuild_tensor_v2 takes (storage, storage_offset, size, stride, \
                     requires_grad, backward_hooks[, metadata]), got {} arguments",
                    args.len()
                )));
            }
        };
        let Value::Storage(storage) = storage else {
            return Err(self.err(format!(
                "_rebuild_tensor_v2 storage is {}, expected a persistent storage",
                storage.kind()
            )));
        };
        let offset = self.index(offset, "storage_offset")?;
        let shape = self.index_tuple(size, "size")?;
        let stride = self.index_tuple(stride, "stride")?;
        if shape.len() != stride.len() {
            return Err(self.err(format!(
                "size has {} dimensions but stride has {}",
                shape.len(),
                stride.len()
            )));
        }
        if !matches!(requires_grad, Value::Bool(_)) {
            return Err(self.err(format!(
                "requires_grad is {}, expected a bool",
                requires_grad.kind()
            )));
        }
        if !self.is_empty_dict(hooks) {
            return Err(self.err("backward_hooks must be an empty OrderedDict"));
        }
        // Non-empty metadata carries tensor flags (e.g. conj/neg bits) that change what
        // the bytes mean, so only its absence is accepted.
        if let Some(meta) = metadata
            && !matches!(meta, Value::None)
            && !self.is_empty_dict(meta)
        {
            return Err(self.err("tensor metadata (conj/neg bits etc.) is not supported"));
        }
        Ok(Value::Tensor(Rc::new(Tensor {
            storage: storage.clone(),
            offset,
            shape,
            stride,
        })))
    }

    fn reduce(&mut self) -> Res<()> {
        let args = self.pop()?;
        let func = self.pop()?;
        let Value::Tuple(args) = args else {
            return Err(self.err(format!("arguments are {}, expected a tuple", args.kind())));
        };
        let Value::Global(g) = func else {
            return Err(self.err(format!("callable is {}, expected an allowed global", func.kind())));
        };
        match g {
            Global::OrderedDict => {
                if !args.items.is_empty() {
                    return Err(self.err("collections.OrderedDict must be called with no arguments"));
                }
                self.new_dict(true)
            }
            Global::RebuildTensorV2 => {
                let t = self.rebuild_tensor(&args.items)?;
                self.push(t)
            }
            Global::RebuildParameter => {
                // _rebuild_parameter(data, requires_grad, backward_hooks): a Parameter is
                // just its tensor for our purposes.
                let [Value::Tensor(t), Value::Bool(_), hooks] = args.items.as_slice() else {
                    return Err(
                        self.err("_rebuild_parameter takes (tensor, requires_grad: bool, backward_hooks)")
                    );
                };
                if !self.is_empty_dict(hooks) {
                    return Err(self.err("backward_hooks must be an empty OrderedDict"));
                }
                let t = t.clone();
                self.push(Value::Tensor(t))
            }
            Global::Storage(class) => Err(self.err(format!(
                "calling storage class torch.{} is not allowed",
                class.name()
            ))),
        }
    }

    /// BUILD only sets attributes on an OrderedDict: torch's state dicts carry
    /// `_metadata` (per-module versions) that way. The state is checked and dropped.
    fn build(&mut self) -> Res<()> {
        let state = self.pop()?;
        let inst = self.top()?;
        let ordered = match inst {
            Value::Dict(i) => self.dicts.get(*i).is_some_and(|d| d.ordered),
            _ => false,
        };
        if !ordered {
            return Err(self.err(format!(
                "BUILD target is {}, expected an OrderedDict",
                inst.kind()
            )));
        }
        if !matches!(state, Value::Dict(_)) {
            return Err(self.err(format!(
                "BUILD state is {}, expected a dict of attributes",
                state.kind()
            )));
        }
        Ok(())
    }

    fn run(&mut self) -> Res<Value> {
        loop {
            self.at = self.pos;
            let Some(&code) = self.data.get(self.pos) else {
                return Err(TorchBinError::NoStop(self.pos));
            };
            self.pos += 1;
            self.op = opcode_name(code).unwrap_or("?");
            match code {
                0x80 => {
                    // PROTO
                    let v = self.u8()?;
                    if v > 5 {
                        return Err(self.err(format!("pickle protocol {v} is unknown")));
                    }
                }
                0x95 => {
                    // FRAME: a length hint for buffered readers; the data is all here.
                    self.u64()?;
                }
                b'.' => {
                    // STOP
                    let v = self.pop()?;
                    if !self.stack.is_empty() || !self.marks.is_empty() {
                        return Err(self.err("values left on the stack"));
                    }
                    if self.pos != self.data.len() {
                        return Err(self.err(format!("{} bytes follow STOP", self.data.len() - self.pos)));
                    }
                    return Ok(v);
                }
                b'(' => {
                    if self.marks.len() >= MAX_MARKS {
                        return Err(self.err(format!("more than {MAX_MARKS} nested MARKs")));
                    }
                    self.marks.push(self.stack.len());
                }
                b'}' => self.new_dict(false)?,
                b']' => {
                    self.lists.push(Vec::new());
                    self.push(Value::List(self.lists.len() - 1))?;
                }
                b')' => {
                    let t = self.tuple(Vec::new())?;
                    self.push(t)?;
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let t = self.tuple(items)?;
                    self.push(t)?;
                }
                0x85..=0x87 => {
                    // TUPLE1..TUPLE3
                    let n = usize::from(code - 0x84);
                    if self.stack.len() < self.floor() + n {
                        return Err(self.err("stack underflow"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    let t = self.tuple(items)?;
                    self.push(t)?;
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let v = i32::from_le_bytes(self.take_array()?);
                    self.push(Value::Int(v.into()))?;
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v.into()))?;
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Value::Int(v.into()))?;
                }
                0x8a => {
                    // LONG1: little-endian two's complement, up to 255 bytes; we take 8.
                    let n = usize::from(self.u8()?);
                    let bytes = self.take(n)?;
                    if n > 8 {
                        return Err(self.err(format!("{n}-byte integer exceeds 64 bits")));
                    }
                    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
                    let mut buf = if negative { [0xff; 8] } else { [0; 8] };
                    for (dst, src) in buf.iter_mut().zip(bytes) {
                        *dst = *src;
                    }
                    self.push(Value::Int(i64::from_le_bytes(buf)))?;
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = self.utf8(n)?;
                    self.push(Value::Str(s))?;
                }
                0x8c => {
                    let n = usize::from(self.u8()?);
                    let s = self.utf8(n)?;
                    self.push(Value::Str(s))?;
                }
                0x8d => {
                    let n = self.len_u64()?;
                    let s = self.utf8(n)?;
                    self.push(Value::Str(s))?;
                }
                b'q' => {
                    let i = self.u8()?;
                    self.memo_put(i.into())?;
                }
                b'r' => {
                    let i = self.u32()?;
                    self.memo_put(i)?;
                }
                0x94 => {
                    // MEMOIZE: the next free index, as Python counts it.
                    let i = u32::try_from(self.memo.len()).map_err(|_| self.err("memo index overflows"))?;
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.u8()?;
                    self.memo_get(i.into())?;
                }
                b'j' => {
                    let i = self.u32()?;
                    self.memo_get(i)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(module, name)?;
                }
                0x93 => {
                    // STACK_GLOBAL (protocol 4): same allowlist as GLOBAL.
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (&module, &name) else {
                        return Err(self.err(format!(
                            "module and name are {} and {}, expected two strs",
                            module.kind(),
                            name.kind()
                        )));
                    };
                    self.global(module, name)?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let storage = self.persistent_load(pid)?;
                    self.push(storage)?;
                }
                b'R' => self.reduce()?,
                b'b' => self.build()?,
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                _ => {
                    return Err(TorchBinError::ForbiddenOpcode {
                        opcode: match opcode_name(code) {
                            Some(name) => name.to_string(),
                            None => format!("0x{code:02x} (not a pickle opcode)"),
                        },
                        offset: self.at,
                    });
                }
            }
        }
    }

    /// The unpickled object must be a dict (plain or OrderedDict) of tensors.
    fn state_dict(&self, top: Value) -> Res<Vec<(String, Rc<Tensor>)>> {
        let Value::Dict(i) = top else {
            return Err(TorchBinError::NotAStateDict(format!(
                "the pickled object is {}",
                top.kind()
            )));
        };
        let dict = self
            .dicts
            .get(i)
            .ok_or_else(|| TorchBinError::NotAStateDict("internal: dangling dict".into()))?;
        dict.items
            .iter()
            .map(|(k, v)| match v {
                Value::Tensor(t) => Ok((k.to_string(), t.clone())),
                other => Err(TorchBinError::NotAStateDict(format!(
                    "the value of key `{k}` is {}, not a tensor",
                    other.kind()
                ))),
            })
            .collect()
    }
}
