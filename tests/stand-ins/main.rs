//! STAND-INS for the programs `trtllm-minitron build` runs, for machines
//! without a GPU or TensorRT-LLM (the test machines, and anyone trying the
//! build flow: `scripts/try-build-without-gpu`). One program; what it stands
//! in for is the name it is run by:
//!
//! - `trtllm-build`: TensorRT-LLM 1.2's engine builder (`trtllm_build.rs`):
//!   checks its command line and the checkpoint as the real one does, and
//!   writes an engine-SHAPED directory whose rank files are placeholders.
//!   It builds no engine.
//! - `nvidia-smi`: GPUs from `STANDIN_GPUS` (`nvidia_smi.rs`).
//! - `python3`: the interpreter beside a pip-installed `trtllm-build`, as far
//!   as trtllm-minitron's version probe needs one (`python.rs`).
//!
//! Only `std`: it compiles with `rustc` alone (`rustc --edition 2024
//! tests/stand-ins/main.rs`), so neither the tests nor a user need Python,
//! Cargo dependencies or anything else to run them. The tests build it with
//! `tests/common/stand_ins.rs`.

mod argparse;
mod json;
mod nvidia_smi;
mod packages;
mod python;
mod trtllm_build;

fn main() {
    let mut argv = std::env::args();
    let program = argv.next().unwrap_or_default();
    let args: Vec<String> = argv.collect();
    let name = std::path::Path::new(&program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let status = match name.as_str() {
        "trtllm-build" => trtllm_build::main(&args),
        "nvidia-smi" => nvidia_smi::main(&args),
        "python3" | "python" => python::main(&args),
        _ => {
            eprintln!(
                "stand-in: run me as trtllm-build, nvidia-smi or python3 (a link or copy by that name), not as {name:?}"
            );
            2
        }
    };
    std::process::exit(status);
}
