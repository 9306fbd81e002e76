//! Build script. The default build needs nothing outside Cargo: TensorRT-LLM is
//! only linked with `--features trtllm` (the Executor bridge in `cpp/`, which a
//! later change adds). Until then this script only declares its inputs so Cargo
//! does not rerun it needlessly.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=cpp");
}
