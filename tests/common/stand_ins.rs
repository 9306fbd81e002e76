//! The stand-in programs of `tests/stand-ins/` (trtllm-build, nvidia-smi,
//! python3), compiled for the tests with the `rustc` of the toolchain that
//! builds them: they use only `std`, so nothing but Rust is needed (no
//! Python). Compiled once per source version into Cargo's temporary
//! directory for integration tests, and reused.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The names the one stand-in program answers to.
pub const PROGRAMS: [&str; 3] = ["trtllm-build", "nvidia-smi", "python3"];

fn sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stand-ins")
}

/// The `rustc` beside the `cargo` that builds the tests, else the one on PATH.
fn rustc() -> PathBuf {
    let beside = Path::new(env!("CARGO")).with_file_name("rustc");
    if beside.is_file() {
        beside
    } else {
        PathBuf::from("rustc")
    }
}

/// The compiled stand-in program (built on first use).
pub fn binary() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(compile)
}

fn compile() -> PathBuf {
    let mut files: Vec<PathBuf> = std::fs::read_dir(sources())
        .expect("tests/stand-ins is in the repository")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for f in &files {
        f.file_name().hash(&mut hasher);
        std::fs::read(f).unwrap().hash(&mut hasher);
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("stand-ins");
    std::fs::create_dir_all(&dir).unwrap();
    let binary = dir.join(format!("stand-in-{:016x}", hasher.finish()));
    if binary.is_file() {
        return binary;
    }
    // Each compile in its own directory (rustc writes intermediate files beside
    // its output), then renamed into place: test processes may race here.
    let work = tempfile::tempdir_in(&dir).unwrap();
    let out = work.path().join("stand-in");
    let status = std::process::Command::new(rustc())
        .args([
            "--edition",
            "2024",
            "--crate-name",
            "stand_in",
            "-C",
            "debuginfo=0",
            "-o",
        ])
        .arg(&out)
        .arg(sources().join("main.rs"))
        .status()
        .expect("rustc runs");
    assert!(status.success(), "compiling tests/stand-ins/main.rs failed");
    std::fs::rename(&out, &binary).unwrap();
    binary
}

/// Puts `trtllm-build`, `nvidia-smi` and `python3` stand-ins into `bin`.
pub fn install(bin: &Path) {
    std::fs::create_dir_all(bin).unwrap();
    for name in PROGRAMS {
        install_as(bin, name);
    }
}

/// One stand-in into `dir` under `name` (what it stands in for).
pub fn install_as(dir: &Path, name: &str) -> PathBuf {
    let link = dir.join(name);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(binary(), &link).unwrap();
    link
}
