//! Build script. The default build needs nothing outside Cargo. With
//! `--features trtllm` it builds the TensorRT-LLM Executor bridge: cxx's
//! generated code for `src/executor/ffi.rs` plus `cpp/executor_bridge.cpp`,
//! compiled against TensorRT-LLM's headers and linked to its libraries.
//!
//! How it decides (feature `trtllm` only):
//! 1. It looks for TensorRT-LLM headers (`tensorrt_llm/executor/executor.h`)
//!    and libraries (`libtensorrt_llm.so`, `libnvinfer_plugin_tensorrt_llm.so`)
//!    in `TRTLLM_INCLUDE_DIR` / `TRTLLM_LIB_DIR`, under `TRTLLM_ROOT`, and in
//!    the installed `tensorrt_llm` Python package (`TRTLLM_MINITRON_PYTHON`,
//!    else `python3`); CUDA headers and cudart under `CUDA_HOME` / `CUDA_PATH` /
//!    /usr/local/cuda; TensorRT's `libnvinfer.so.10` (`TENSORRT_ROOT`, the
//!    `tensorrt_libs` Python package, the system); an MPI runtime
//!    `libmpi.so.40` (`MPI_HOME`, HPC-X, Open MPI's usual places, the system).
//! 2. All found: it matches the library's C++ ABI (`nm -D libtensorrt_llm.so`
//!    has `__cxx11` symbols or not: `-D_GLIBCXX_USE_CXX11_ABI=1/0`), compiles
//!    the bridge and links the two libraries. What they need from other
//!    directories (`readelf -d`: TensorRT, MPI, cudart, ...) the binary needs
//!    directly, with those directories in its runpath: the loader would not
//!    search the binary's runpath for a library's dependencies, so the binary
//!    starts without `LD_LIBRARY_PATH`.
//! 3. Not all found, and TensorRT-LLM was asked for explicitly (`TRTLLM_ROOT`,
//!    `TRTLLM_INCLUDE_DIR`, `TRTLLM_LIB_DIR` or `TRTLLM_MINITRON_REQUIRE_CPP=1`):
//!    the build fails here with one message listing what was looked for where.
//! 4. Not found otherwise, or `TRTLLM_MINITRON_SKIP_CPP=1`: nothing of
//!    TensorRT-LLM's is compiled, a cargo warning says so, cxx's header is still
//!    generated (for `scripts/check-cpp`) and its glue is compiled with the
//!    throwing stand-ins of `cpp/bridge_unavailable.cpp` (no undefined symbols). Cargo runs a build script once for `check` and
//!    `build` alike and does not tell it which, so instead of failing here the
//!    script hands the linker a linker script whose `ASSERT` fails with the same
//!    message: `cargo check --features trtllm` (which links nothing) passes, and
//!    a `cargo build --features trtllm` fails at link time saying why.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
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

    const ENV: [&str; 11] = [
        "TRTLLM_ROOT",
        "TRTLLM_INCLUDE_DIR",
        "TRTLLM_LIB_DIR",
        "TRTLLM_MINITRON_PYTHON",
        "TRTLLM_MINITRON_SKIP_CPP",
        "TRTLLM_MINITRON_REQUIRE_CPP",
        "CUDA_HOME",
        "CUDA_PATH",
        "TENSORRT_ROOT",
        "MPI_HOME",
        "OMPI_HOME",
    ];

    fn var(name: &str) -> Option<PathBuf> {
        env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
    }

    fn flag(name: &str) -> bool {
        env::var(name).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
    }

    /// Records what was looked for where, for the failure message.
    #[derive(Default)]
    struct Search {
        lines: Vec<String>,
    }

    impl Search {
        /// The first candidate directory holding every one of `files`.
        fn find(&mut self, what: &str, files: &[&str], candidates: &[(String, PathBuf)]) -> Option<PathBuf> {
            for (_, dir) in candidates {
                if files.iter().all(|f| dir.join(f).is_file()) {
                    return Some(dir.clone());
                }
            }
            let tried: Vec<String> = candidates
                .iter()
                .map(|(source, dir)| format!("{} ({source})", dir.display()))
                .collect();
            self.lines.push(format!(
                "{what}: {} not found in {}",
                files.join(" + "),
                if tried.is_empty() {
                    "nowhere (no TRTLLM_* variable set, no tensorrt_llm package)".to_string()
                } else {
                    tried.join(", ")
                }
            ));
            None
        }
    }

    /// The `tensorrt_llm` package directory, found without importing it.
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

    /// `ldconfig -p`: the libraries the dynamic loader's cache knows, as
    /// (file name, path).
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

    /// Directories `ldconfig -p` knows holding `file`.
    fn ldconfig(file: &str) -> Vec<PathBuf> {
        loader_cache()
            .into_iter()
            .filter(|(name, _)| name == file)
            .filter_map(|(_, path)| path.parent().map(Path::to_path_buf))
            .collect()
    }

    /// The DT_NEEDED entries of a shared library (`readelf -d`), or `None` when
    /// they cannot be read.
    fn needed(lib: &Path) -> Option<Vec<String>> {
        let out = Command::new("readelf")
            .arg("-d")
            .arg(lib)
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        Some(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains("(NEEDED)"))
                .filter_map(|l| Some(l.split_once('[')?.1.split_once(']')?.0.to_string()))
                .collect(),
        )
    }

    /// What the binary must list as its own NEEDED entries so that it starts
    /// without `LD_LIBRARY_PATH`: the libraries `libs` need that are neither
    /// beside them nor known to the system loader, each with the directory
    /// among `dirs` that holds it. The loader does not search an executable's
    /// runpath for a library's dependencies, and libtensorrt_llm.so's own
    /// runpath is `$ORIGIN` only; a library the executable itself needs is
    /// loaded first (from its runpath) and then satisfies the others by soname.
    /// Also returns the ones found nowhere.
    fn direct_dependencies(libs: &[PathBuf], dirs: &[PathBuf]) -> (Vec<(String, PathBuf)>, Vec<String>) {
        let system: Vec<String> = loader_cache().into_iter().map(|(name, _)| name).collect();
        let default_dirs = ["/lib", "/usr/lib", "/lib64", "/usr/lib64"];
        let mut found: Vec<(String, PathBuf)> = Vec::new();
        let mut missing = Vec::new();
        for lib in libs {
            let names = needed(lib).unwrap_or_else(|| {
                println!(
                    "cargo:warning=trtllm-minitron: cannot run `readelf -d` on {}; assuming it needs \
                     libnvinfer.so.10, libmpi.so.40 and libcudart.so",
                    lib.display()
                );
                vec![
                    "libnvinfer.so.10".into(),
                    "libmpi.so.40".into(),
                    "libcudart.so".into(),
                ]
            });
            let origin = lib.parent().unwrap_or(Path::new("."));
            for name in names {
                let resolved = origin.join(&name).is_file()
                    || system.contains(&name)
                    || default_dirs.iter().any(|d| Path::new(d).join(&name).is_file())
                    || found.iter().any(|(n, _)| *n == name);
                if resolved {
                    continue;
                }
                match dirs.iter().find(|d| d.join(&name).is_file()) {
                    Some(dir) => found.push((name, dir.clone())),
                    None if !missing.contains(&name) => missing.push(name),
                    None => {}
                }
            }
        }
        (found, missing)
    }

    /// `LD_LIBRARY_PATH`'s directories, and the `lib` directories of the NVIDIA
    /// Python wheels beside the `tensorrt_llm` package (cuBLAS, NCCL, ...): where
    /// a library's dependencies may be found at build time.
    fn extra_library_dirs() -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = env::var_os("LD_LIBRARY_PATH")
            .map(|v| {
                env::split_paths(&v)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(site) = python_package("tensorrt_llm").and_then(|p| p.parent().map(Path::to_path_buf))
            && let Ok(entries) = std::fs::read_dir(site.join("nvidia"))
        {
            let mut wheels: Vec<PathBuf> = entries.flatten().map(|e| e.path().join("lib")).collect();
            wheels.sort();
            dirs.extend(wheels.into_iter().filter(|d| d.is_dir()));
        }
        dirs
    }

    fn candidates(list: &[(&str, Option<PathBuf>)]) -> Vec<(String, PathBuf)> {
        list.iter()
            .filter_map(|(s, d)| d.clone().map(|d| (s.to_string(), d)))
            .collect()
    }

    struct Found {
        include: PathBuf,
        lib: PathBuf,
        plugin_lib: PathBuf,
        cuda_include: PathBuf,
        cuda_lib: PathBuf,
        runtime_dirs: Vec<PathBuf>,
    }

    fn locate(search: &mut Search) -> Option<Found> {
        let root = var("TRTLLM_ROOT");
        let under = |rel: &str| root.as_ref().map(|r| r.join(rel));
        let package = python_package("tensorrt_llm");
        if package.is_none() {
            search.lines.push(
                "the tensorrt_llm Python package: not installed for TRTLLM_MINITRON_PYTHON / python3".into(),
            );
        }
        let in_package = |rel: &str| package.as_ref().map(|p| p.join(rel));

        let include = search.find(
            "TensorRT-LLM headers",
            &[
                "tensorrt_llm/executor/executor.h",
                "tensorrt_llm/plugins/api/tllmPlugin.h",
            ],
            &candidates(&[
                ("TRTLLM_INCLUDE_DIR", var("TRTLLM_INCLUDE_DIR")),
                ("TRTLLM_ROOT", under("include")),
                ("TRTLLM_ROOT", under("cpp/include")),
                ("tensorrt_llm package", in_package("include")),
            ]),
        );
        let lib_dirs = candidates(&[
            ("TRTLLM_LIB_DIR", var("TRTLLM_LIB_DIR")),
            ("TRTLLM_ROOT", under("lib")),
            ("TRTLLM_ROOT", under("lib64")),
            ("TRTLLM_ROOT", under("tensorrt_llm/libs")),
            ("TRTLLM_ROOT", under("cpp/build/tensorrt_llm")),
            ("tensorrt_llm package", in_package("libs")),
        ]);
        let lib = search.find("TensorRT-LLM library", &["libtensorrt_llm.so"], &lib_dirs);
        let mut plugin_dirs = lib_dirs.clone();
        plugin_dirs.extend(candidates(&[(
            "TRTLLM_ROOT",
            under("cpp/build/tensorrt_llm/plugins"),
        )]));
        let plugin_lib = search.find(
            "TensorRT-LLM plugins",
            &["libnvinfer_plugin_tensorrt_llm.so"],
            &plugin_dirs,
        );

        let cuda = var("CUDA_HOME")
            .map(|d| ("CUDA_HOME".to_string(), d))
            .or_else(|| var("CUDA_PATH").map(|d| ("CUDA_PATH".to_string(), d)))
            .unwrap_or_else(|| ("default".to_string(), PathBuf::from("/usr/local/cuda")));
        let cuda_include = search.find(
            "CUDA headers",
            &["cuda_fp16.h", "cuda_bf16.h"],
            &[(cuda.0.clone(), cuda.1.join("include"))],
        );
        let cuda_lib = search.find(
            "CUDA runtime",
            &["libcudart.so"],
            &[
                (cuda.0.clone(), cuda.1.join("lib64")),
                (cuda.0.clone(), cuda.1.join("lib")),
                (cuda.0.clone(), cuda.1.join("targets/x86_64-linux/lib")),
            ],
        );

        let mut trt = candidates(&[
            ("TENSORRT_ROOT", var("TENSORRT_ROOT").map(|d| d.join("lib"))),
            ("tensorrt_libs package", python_package("tensorrt_libs")),
            ("system", Some(PathBuf::from("/usr/lib/x86_64-linux-gnu"))),
            ("system", Some(PathBuf::from("/usr/lib/aarch64-linux-gnu"))),
        ]);
        trt.extend(
            ldconfig("libnvinfer.so.10")
                .into_iter()
                .map(|d| ("ldconfig".to_string(), d)),
        );
        let tensorrt = search.find("TensorRT", &["libnvinfer.so.10"], &trt);

        let mut mpi = candidates(&[
            ("MPI_HOME", var("MPI_HOME").map(|d| d.join("lib"))),
            ("OMPI_HOME", var("OMPI_HOME").map(|d| d.join("lib"))),
            ("HPC-X", Some(PathBuf::from("/opt/hpcx/ompi/lib"))),
            ("Open MPI", Some(PathBuf::from("/usr/local/mpi/lib"))),
            (
                "Open MPI",
                Some(PathBuf::from("/usr/lib/x86_64-linux-gnu/openmpi/lib")),
            ),
            ("system", Some(PathBuf::from("/usr/lib/x86_64-linux-gnu"))),
        ]);
        mpi.extend(
            ldconfig("libmpi.so.40")
                .into_iter()
                .map(|d| ("ldconfig".to_string(), d)),
        );
        let mpi = search.find("MPI runtime", &["libmpi.so.40"], &mpi);

        Some(Found {
            include: include?,
            lib: lib?,
            plugin_lib: plugin_lib?,
            cuda_include: cuda_include?,
            cuda_lib: cuda_lib?,
            runtime_dirs: vec![tensorrt?, mpi?],
        })
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

    fn message(search: &Search) -> String {
        format!(
            "trtllm-minitron: --features trtllm needs TensorRT-LLM 1.2.x (headers from its git tag, \
             libraries from its wheel or build), CUDA, TensorRT and an MPI runtime; missing: {}. \
             Set TRTLLM_INCLUDE_DIR and TRTLLM_LIB_DIR (or TRTLLM_ROOT), CUDA_HOME, TENSORRT_ROOT, MPI_HOME \
             (see cpp/README.md)",
            search.lines.join("; ")
        )
    }

    pub fn main() {
        for name in ENV {
            println!("cargo:rerun-if-env-changed={name}");
        }
        let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
        let mut search = Search::default();
        let skip = flag("TRTLLM_MINITRON_SKIP_CPP");
        let found = if skip { None } else { locate(&mut search) };
        let Some(found) = found else {
            let why = if skip {
                "trtllm-minitron: TRTLLM_MINITRON_SKIP_CPP=1: the TensorRT-LLM bridge (cpp/) was not compiled, \
                 so this build cannot link"
                    .to_string()
            } else {
                message(&search)
            };
            let explicit = ["TRTLLM_ROOT", "TRTLLM_INCLUDE_DIR", "TRTLLM_LIB_DIR"]
                .iter()
                .any(|n| var(n).is_some())
                || flag("TRTLLM_MINITRON_REQUIRE_CPP");
            if explicit && !skip {
                // One message, without a panic's backtrace.
                eprintln!("error: {why}");
                std::process::exit(1);
            }
            skip_cpp(&out_dir, &why);
            return;
        };

        let abi = match cxx11_abi(&found.lib.join("libtensorrt_llm.so")) {
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

        let unique = |dirs: Vec<PathBuf>| {
            let mut out: Vec<PathBuf> = Vec::new();
            for d in dirs {
                if !out.contains(&d) {
                    out.push(d);
                }
            }
            out
        };
        let link_dirs = unique(vec![found.lib.clone(), found.plugin_lib.clone()]);
        let mut search = link_dirs.clone();
        search.push(found.cuda_lib.clone());
        search.extend(found.runtime_dirs.iter().cloned());
        search.extend(extra_library_dirs());
        let search = unique(search);
        let (dependencies, missing) = direct_dependencies(
            &[
                found.lib.join("libtensorrt_llm.so"),
                found.plugin_lib.join("libnvinfer_plugin_tensorrt_llm.so"),
            ],
            &search,
        );
        if !missing.is_empty() {
            println!(
                "cargo:warning=trtllm-minitron: the TensorRT-LLM libraries need {}, found in none of {}: \
                 the binary will not start unless the dynamic loader finds them (LD_LIBRARY_PATH)",
                missing.join(", "),
                search
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        for d in &link_dirs {
            println!("cargo:rustc-link-search=native={}", d.display());
        }
        println!("cargo:rustc-link-lib=dylib=tensorrt_llm");
        println!("cargo:rustc-link-lib=dylib=nvinfer_plugin_tensorrt_llm");
        // Their dependencies from other directories become the binary's own
        // NEEDED entries (see direct_dependencies); --no-as-needed keeps them,
        // as the binary calls none of them.
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        for (name, dir) in &dependencies {
            println!("cargo:rustc-link-arg=-L{}", dir.display());
            println!("cargo:rustc-link-arg=-l:{name}");
        }
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
        // The runpath covers the binary's own NEEDED entries; -rpath-link lets the
        // linker resolve the libraries' dependencies wherever they were found.
        let mut runpath = link_dirs.clone();
        runpath.push(found.cuda_lib.clone());
        runpath.extend(found.runtime_dirs.iter().cloned());
        runpath.extend(dependencies.iter().map(|(_, d)| d.clone()));
        for d in &unique(runpath) {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", d.display());
        }
        for d in &search {
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
        let text = why.replace('"', "'");
        std::fs::write(&script, format!("ASSERT(0, \"{text}\")\n")).expect("write the linker script");
        println!("cargo:rustc-link-arg={}", script.display());
    }
}
