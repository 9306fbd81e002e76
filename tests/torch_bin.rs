//! Reads the torch.save fixtures of `scripts/make-pickle-fixtures.py` with the
//! restricted reader and checks them against what torch itself wrote in good.json.

use std::path::PathBuf;

use half::{bf16, f16};
use serde::Deserialize;
use trtllm_minitron::DType;
use trtllm_minitron::hf::torch_bin::{TorchBinError, TorchTensor, read_torch_bin};

#[derive(Deserialize)]
struct Expected {
    torch_version: String,
    tensors: Vec<ExpectedTensor>,
}

#[derive(Deserialize)]
struct ExpectedTensor {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    values: Vec<f64>,
    bits: Vec<u32>,
}

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pickle")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The tensor's elements as (value, IEEE bit pattern) pairs.
fn decode(file: &[u8], t: &TorchTensor) -> Vec<(f32, u32)> {
    let bytes = &file[t.data.clone()];
    assert_eq!(bytes.len(), t.numel() * t.dtype.size(), "{}", t.name);
    match t.dtype {
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|b| {
                let x = f16::from_le_bytes([b[0], b[1]]);
                (x.to_f32(), u32::from(x.to_bits()))
            })
            .collect(),
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|b| {
                let x = bf16::from_le_bytes([b[0], b[1]]);
                (x.to_f32(), u32::from(x.to_bits()))
            })
            .collect(),
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|b| {
                let x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                (x, x.to_bits())
            })
            .collect(),
    }
}

fn check_good(bin: &str) {
    let expected: Expected = serde_json::from_slice(&fixture("good.json")).unwrap();
    assert!(!expected.torch_version.is_empty());
    let file = fixture(bin);
    let got = read_torch_bin(&file).unwrap_or_else(|e| panic!("{bin}: {e}"));
    let names: Vec<_> = got.iter().map(|t| t.name.as_str()).collect();
    let want: Vec<_> = expected.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, want, "{bin}: names and order");
    for (t, e) in got.iter().zip(&expected.tensors) {
        assert_eq!(t.dtype, e.dtype, "{bin}: {}", e.name);
        assert_eq!(t.shape, e.shape, "{bin}: {}", e.name);
        assert!(t.data.end <= file.len());
        let (values, bits): (Vec<f32>, Vec<u32>) = decode(&file, t).into_iter().unzip();
        assert_eq!(bits, e.bits, "{bin}: {} (bits)", e.name);
        // Every element is exactly an f32, and serde_json's parse of Python's repr is
        // within an f64 ulp of it, so rounding to f32 gives it back exactly.
        let want: Vec<f32> = e.values.iter().map(|&v| v as f32).collect();
        assert_eq!(values, want, "{bin}: {}", e.name);
    }

    // The view shares its base's storage, 6 elements (2 rows of 3 floats) in.
    let find = |n: &str| got.iter().find(|t| t.name == n).unwrap();
    let base = find("model.layers.0.mlp.up_proj.weight");
    let tail = find("model.layers.0.mlp.up_proj.tail");
    assert_eq!(tail.data.start, base.data.start + 6 * 4);
    assert_eq!(tail.data.end, base.data.end);
}

#[test]
fn good_protocol2() {
    check_good("good.bin");
}

#[test]
fn good_protocol4() {
    check_good("good-p4.bin");
}

#[test]
fn evil_global_is_refused() {
    let err = read_torch_bin(&fixture("evil-global.bin")).unwrap_err();
    assert!(
        matches!(&err, TorchBinError::ForbiddenGlobal { module, name, .. }
            if module == "posix" && name == "system"),
        "{err:?}"
    );
    assert!(err.to_string().contains("`posix.system`"), "{err}");
}

#[test]
fn evil_opcode_is_refused() {
    let err = read_torch_bin(&fixture("evil-opcode.bin")).unwrap_err();
    assert!(
        matches!(&err, TorchBinError::ForbiddenOpcode { opcode, .. } if opcode == "INST"),
        "{err:?}"
    );
    assert!(err.to_string().contains("opcode INST"), "{err}");
}

#[test]
fn int64_tensor_is_unsupported_dtype() {
    let err = read_torch_bin(&fixture("long-storage.bin")).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, TorchBinError::UnsupportedDtype { tensor, storage }
            if tensor == "ids" && storage == "LongStorage"),
        "{err:?}"
    );
    assert!(
        msg.contains("`ids`") && msg.contains("torch.LongStorage"),
        "{msg}"
    );
}

#[test]
fn deflated_storage_is_refused() {
    let err = read_torch_bin(&fixture("deflated.bin")).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, TorchBinError::ZipEntry { .. }), "{err:?}");
    assert!(
        msg.contains("`deflated/data/0`") && msg.contains("compressed"),
        "{msg}"
    );
}
