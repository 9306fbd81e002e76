//! Build script. The default build needs nothing outside Cargo. With
//! `--features trtllm` it builds the TensorRT-LLM Executor bridge: cxx's
//! generated code for `src/executor/ffi.rs` plus `cpp/executor_bridge.cpp`,
//! compiled against TensorRT-LLM's headers and linked to its libraries.
//!
//! How it decides (feature `trtllm` only; the rules are `build/discovery.rs`,
//! tested by `tests/build_discovery.rs`; `cpp/README.md` lists every place):
//! 1. It looks for TensorRT-LLM's headers and libraries (the `TRTLLM_*`
//!    variables, the `tensorrt_llm` Python package, NVIDIA's release container
//!    under /app/tensorrt_llm, `LD_LIBRARY_PATH`), CUDA's headers, TensorRT and
//!    an MPI runtime.
//! 2. All found: the headers' version (`tensorrt_llm/executor/version.h`) must
//!    be the library's (`tensorrt_llm/version.py`), or the build fails. It
//!    matches the library's C++ ABI (`nm -D`: `__cxx11` symbols or not),
//!    compiles the bridge and links the two libraries. What they need and
//!    neither their own runpath nor the system loader provides (`readelf -d`,
//!    followed down), the binary lists itself, with those directories in its
//!    runpath: the loader never searches a binary's runpath for a library's
//!    dependencies, so this is how the binary starts without `LD_LIBRARY_PATH`.
//! 3. Not all found, and TensorRT-LLM was asked for (a `TRTLLM_ROOT`,
//!    `TRTLLM_INCLUDE_DIR` or `TRTLLM_LIB_DIR` variable,
//!    `TRTLLM_MINITRON_REQUIRE_CPP=1`) or part of it was found: the build fails
//!    here with one message listing what was looked for where.
//! 4. Found nowhere and not asked for, or `TRTLLM_MINITRON_SKIP_CPP=1`:
//!    nothing of TensorRT-LLM's is compiled, a cargo warning says so, cxx's
//!    header is still generated (for `scripts/check-cpp`) and its glue is
//!    compiled with the throwing stand-ins of `cpp/bridge_unavailable.cpp`.
//!    Cargo runs a build script once for `check` and `build` alike and does not
//!    tell it which, so instead of failing here the script hands the linker a
//!    linker script whose `ASSERT` fails with the same message: `cargo check
//!    --features trtllm` (which links nothing) passes on machines without
//!    TensorRT-LLM, and `cargo build --features trtllm` fails at its link step
//!    saying what is missing and what to set.

#[cfg(feature = "trtllm")]
#[path = "build/discovery.rs"]
mod discovery;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build");
    println!("cargo:rerun-if-changed=cpp");
    println!("cargo:rerun-if-changed=src/executor/ffi.rs");
    #[cfg(feature = "trtllm")]
    bridge::main();
}

#[cfg(feature = "trtllm")]
mod bridge {
    use std::env;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use super::discovery::{self, Dynamic, Found, Inputs};

    /// Variables read here besides discovery's directory variables.
    const OTHER_ENV: [&str; 5] = [
        "TRTLLM_MINITRON_PYTHON",
        "TRTLLM_MINITRON_SKIP_CPP",
        "TRTLLM_MINITRON_REQUIRE_CPP",
        "LD_LIBRARY_PATH",
        "PYTHONPATH",
    ];

    fn var(name: &str) -> Option<PathBuf> {
        env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
    }

    fn flag(name: &str) -> bool {
        env::var(name).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
    }

    /// A Python package's directory, found without importing it (importing
    /// tensorrt_llm prints a banner and initialises CUDA and MPI).
    fn python_package(name: &str) -> Option<PathBuf> {
        let python = var("TRTLLM_MINITRON_PYTHON").unwrap_or_else(|| PathBuf::from("python3"));
        let code = format!(
            "import importlib.util as u\ns = u.find_spec('{name}')\n\
             print(s.submodule_search_locations[0] if s and s.submodule_search_locations else '')"
        );
        let out = Command::new(python).args(["-c", &code]).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !text.is_empty()).then(|| PathBuf::from(text))
    }

    /// `ldconfig -p`: the libraries the dynamic loader's cache knows.
    fn loader_cache() -> Vec<(String, PathBuf)> {
        let out = ["ldconfig", "/sbin/ldconfig", "/usr/sbin/ldconfig"]
            .iter()
            .find_map(|c| {
                Command::new(c)
                    .arg("-p")
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
            });
        let Some(out) = out else {
            return Vec::new();
        };
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let (name, path) = l.trim_start().split_once(" => ")?;
                let name = name.split_whitespace().next()?;
                Some((name.to_string(), PathBuf::from(path.trim())))
            })
            .collect()
    }

    /// A shared library's dynamic section, from `readelf -d`.
    fn read_dynamic(lib: &Path) -> Option<Dynamic> {
        let out = Command::new("readelf")
            .arg("-d")
            .arg(lib)
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        Some(discovery::parse_readelf(&String::from_utf8_lossy(&out.stdout)))
    }

    /// `LD_LIBRARY_PATH` as the user set it. Cargo puts its own directories in
    /// front for build scripts (the target directory's profile and `deps`
    /// directories, the toolchain's libraries), which hold nothing of
    /// TensorRT-LLM's.
    fn user_ld_library_path(out_dir: &Path) -> Vec<PathBuf> {
        let profile = out_dir.ancestors().nth(3).map(Path::to_path_buf);
        let rustc = var("RUSTC").unwrap_or_else(|| PathBuf::from("rustc"));
        let sysroot = Command::new(rustc)
            .args(["--print", "sysroot"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
        env::var_os("LD_LIBRARY_PATH")
            .map(|v| env::split_paths(&v).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter(|p| !p.as_os_str().is_empty())
            .filter(|p| !profile.as_ref().is_some_and(|d| p.starts_with(d)))
            .filter(|p| !sysroot.as_ref().is_some_and(|d| p.starts_with(d)))
            .collect()
    }

    fn inputs(out_dir: &Path) -> Inputs {
        Inputs {
            vars: discovery::VARIABLES
                .iter()
                .filter_map(|n| var(n).map(|v| (n.to_string(), v)))
                .collect(),
            ld_library_path: user_ld_library_path(out_dir),
            packages: ["tensorrt_llm", "tensorrt_libs"]
                .iter()
                .filter_map(|n| python_package(n).map(|p| (n.to_string(), p)))
                .collect(),
            loader_cache: loader_cache(),
            sysroot: PathBuf::from("/"),
        }
    }

    /// `Some(true)` when libtensorrt_llm.so uses the C++11 ABI.
    fn cxx11_abi(lib: &Path) -> Option<bool> {
        let out = Command::new("nm")
            .args(["-D", "--defined-only"])
            .arg(lib)
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        Some(String::from_utf8_lossy(&out.stdout).contains("__cxx11"))
    }

    /// Ends the build with one message, without a panic's backtrace.
    fn fail(why: &str) -> ! {
        eprintln!("error: trtllm-minitron: {why}");
        std::process::exit(1);
    }

    pub fn main() {
        for name in discovery::VARIABLES.iter().chain(&OTHER_ENV) {
            println!("cargo:rerun-if-env-changed={name}");
        }
        let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
        if flag("TRTLLM_MINITRON_SKIP_CPP") {
            skip_cpp(
                &out_dir,
                "TRTLLM_MINITRON_SKIP_CPP=1: the TensorRT-LLM bridge (cpp/) was not compiled, so this build \
                 cannot link",
            );
            return;
        }
        let inputs = inputs(&out_dir);
        let found = match discovery::locate(&inputs) {
            Ok(found) => found,
            Err(not_found) => {
                let asked = ["TRTLLM_ROOT", "TRTLLM_INCLUDE_DIR", "TRTLLM_LIB_DIR"]
                    .iter()
                    .any(|n| inputs.vars.contains_key(*n))
                    || flag("TRTLLM_MINITRON_REQUIRE_CPP");
                if asked || not_found.partial {
                    fail(&not_found.message());
                }
                skip_cpp(&out_dir, &not_found.message());
                return;
            }
        };
        let library = discovery::library_version(&found, &inputs);
        let headers = discovery::headers_version(&found.include);
        match discovery::check_versions(&found.include, headers.as_deref(), library.as_ref()) {
            Err(why) => fail(&why),
            Ok(Some(warning)) => println!("cargo:warning=trtllm-minitron: {warning}"),
            Ok(None) => {}
        }
        compile_bridge(&found);
        link(&found, &inputs);
        // Tells the tests which library this build links (tests/trtllm_fake.rs
        // runs only against the fake one).
        println!(
            "cargo:rustc-env=TRTLLM_MINITRON_LINKED_LIB_DIR={}",
            found.lib.display()
        );
    }

    fn compile_bridge(found: &Found) {
        let abi = match cxx11_abi(&found.lib.join(discovery::LIBRARY)) {
            Some(true) => "1",
            Some(false) => "0",
            None => {
                println!(
                    "cargo:warning=trtllm-minitron: cannot run `nm -D` on libtensorrt_llm.so to read its C++ ABI; \
                     assuming _GLIBCXX_USE_CXX11_ABI=1"
                );
                "1"
            }
        };
        cxx_build::bridge("src/executor/ffi.rs")
            .file("cpp/executor_bridge.cpp")
            .std("c++17")
            .include(&found.include)
            .include(&found.cuda_include)
            .define("_GLIBCXX_USE_CXX11_ABI", abi)
            .define("ENABLE_BF16", None)
            .flag_if_supported("-Wno-unused-parameter")
            .compile("trtllm_minitron_bridge");
    }

    fn link(found: &Found, inputs: &Inputs) {
        let plan = discovery::link_plan(found, inputs, &read_dynamic);
        for lib in &plan.unreadable {
            println!(
                "cargo:warning=trtllm-minitron: cannot run `readelf -d` on {}; assuming it needs {}",
                lib.display(),
                discovery::ASSUMED_NEEDED.join(" and ")
            );
        }
        if !plan.missing.is_empty() {
            println!(
                "cargo:warning=trtllm-minitron: the TensorRT-LLM libraries need {}, found in none of {} nor by \
                 the system loader: the binary will not start unless LD_LIBRARY_PATH names their directory",
                plan.missing.join(", "),
                found
                    .dependency_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        for d in &plan.link_dirs {
            println!("cargo:rustc-link-search=native={}", d.display());
        }
        println!("cargo:rustc-link-lib=dylib=tensorrt_llm");
        println!("cargo:rustc-link-lib=dylib=nvinfer_plugin_tensorrt_llm");
        // --no-as-needed keeps the direct dependencies, of which the binary
        // calls nothing.
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        for (name, dir) in &plan.direct {
            println!("cargo:rustc-link-arg=-L{}", dir.display());
            println!("cargo:rustc-link-arg=-l:{name}");
        }
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
        for d in &plan.runpath {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", d.display());
        }
        for d in &plan.rpath_link {
            println!("cargo:rustc-link-arg=-Wl,-rpath-link,{}", d.display());
        }
    }

    /// No C++: generate cxx's header for scripts/check-cpp, warn, and make any
    /// link of this package fail with `why`.
    fn skip_cpp(out_dir: &Path, why: &str) {
        // Generates $OUT_DIR/cxxbridge/include/trtllm-minitron/src/executor/ffi.rs.h (and its
        // .cc) for scripts/check-cpp, and compiles the glue with throwing stand-ins for the
        // C++ side (cpp/bridge_unavailable.cpp, no TensorRT-LLM needed) so that a link has no
        // undefined symbols and stops at the ASSERT below with its one message.
        let stubs = cxx_build::bridge("src/executor/ffi.rs")
            .file("cpp/bridge_unavailable.cpp")
            .std("c++17")
            .cargo_warnings(false)
            .try_compile("trtllm_minitron_bridge");
        if let Err(e) = stubs {
            println!(
                "cargo:warning=trtllm-minitron: could not compile the bridge's stand-ins either ({e}); \
                 a link will also report undefined trtllm_minitron$cxxbridge symbols"
            );
        }
        println!(
            "cargo:warning=trtllm-minitron: TensorRT-LLM bridge not compiled (cargo check works; \
             linking a binary will fail): {why}"
        );
        let script = out_dir.join("trtllm-bridge-missing.ld");
        let text = format!("trtllm-minitron: {why}").replace('"', "'");
        std::fs::write(&script, format!("ASSERT(0, \"{text}\")\n")).expect("write the linker script");
        println!("cargo:rustc-link-arg={}", script.display());
    }
}
