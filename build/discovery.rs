//! Where a `--features trtllm` build finds TensorRT-LLM, CUDA's headers,
//! TensorRT and MPI, and what the binary must link so that it starts without
//! `LD_LIBRARY_PATH`.
//!
//! Nothing here touches the machine: what discovery looks at arrives as
//! [`Inputs`] (the variables, the Python packages, the loader cache, and the
//! root under which the default locations are searched) and the dynamic
//! sections of the libraries come from a reader given to [`link_plan`]. So
//! `tests/build_discovery.rs` runs it on directory trees laid out as NVIDIA's
//! release container and a pip install lay them out, and build.rs fills the
//! inputs from the real machine. Standard library only: build.rs and a test
//! crate both include this file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The headers the bridge includes, relative to an include directory.
pub const HEADERS: [&str; 2] = [
    "tensorrt_llm/executor/executor.h",
    "tensorrt_llm/plugins/api/tllmPlugin.h",
];
pub const LIBRARY: &str = "libtensorrt_llm.so";
pub const PLUGINS: &str = "libnvinfer_plugin_tensorrt_llm.so";
/// The sonames libtensorrt_llm.so needs from TensorRT and MPI.
pub const TENSORRT: &str = "libnvinfer.so.10";
pub const MPI: &str = "libmpi.so.40";
/// CUDA headers TensorRT-LLM's headers include.
pub const CUDA_HEADERS: [&str; 2] = ["cuda_fp16.h", "cuda_bf16.h"];

/// The directory variables discovery reads.
pub const VARIABLES: [&str; 8] = [
    "TRTLLM_ROOT",
    "TRTLLM_INCLUDE_DIR",
    "TRTLLM_LIB_DIR",
    "CUDA_HOME",
    "CUDA_PATH",
    "TENSORRT_ROOT",
    "MPI_HOME",
    "OMPI_HOME",
];

/// Where NVIDIA's TensorRT-LLM release container (docker/Dockerfile.multi in
/// NVIDIA/TensorRT-LLM) puts TensorRT-LLM: `include/` is the git tag's
/// `cpp/include`, `lib/` links to the installed wheel's `tensorrt_llm/libs`.
pub const CONTAINER_ROOT: &str = "/app/tensorrt_llm";
/// TensorRT in that container (docker/common/install_tensorrt.sh).
pub const CONTAINER_TENSORRT: &str = "/usr/local/tensorrt/lib";
/// HPC-X's Open MPI, in the container's base image.
pub const CONTAINER_MPI: &str = "/opt/hpcx/ompi/lib";
pub const DEFAULT_CUDA: &str = "/usr/local/cuda";

/// Directories the dynamic loader searches without being told (besides its
/// cache): a library found there needs no runpath.
const LOADER_DIRS: [&str; 8] = [
    "/lib",
    "/usr/lib",
    "/lib64",
    "/usr/lib64",
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
];

/// Everything discovery looks at.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The variables of [`VARIABLES`] that are set and not empty.
    pub vars: BTreeMap<String, PathBuf>,
    /// `LD_LIBRARY_PATH`'s directories at build time.
    pub ld_library_path: Vec<PathBuf>,
    /// Python package directories (`tensorrt_llm`, `tensorrt_libs`), as
    /// `importlib.util.find_spec` locates them.
    pub packages: BTreeMap<String, PathBuf>,
    /// `ldconfig -p`: (soname, path).
    pub loader_cache: Vec<(String, PathBuf)>,
    /// Prefix of the default absolute locations: `/` on a real machine.
    pub sysroot: PathBuf,
}

impl Inputs {
    fn var(&self, name: &str) -> Option<&Path> {
        self.vars.get(name).map(PathBuf::as_path)
    }

    /// An absolute default location under [`Inputs::sysroot`].
    pub fn sys(&self, path: &str) -> PathBuf {
        self.sysroot.join(path.trim_start_matches('/'))
    }

    /// The site-packages directories holding the Python packages found.
    fn site_packages(&self) -> Vec<PathBuf> {
        unique(
            self.packages
                .values()
                .filter_map(|p| p.parent().map(Path::to_path_buf))
                .collect(),
        )
    }

    /// `SITE/nvidia/*/SUB` of the NVIDIA wheels (`nvidia/cu13/lib` for CUDA 13,
    /// `nvidia/cuda_runtime/lib`, `nvidia/cublas/lib`, ... for CUDA 12).
    fn wheel_dirs(&self, sub: &str) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        for site in self.site_packages() {
            if let Ok(entries) = std::fs::read_dir(site.join("nvidia")) {
                let mut found: Vec<PathBuf> = entries.flatten().map(|e| e.path().join(sub)).collect();
                found.sort();
                dirs.extend(found.into_iter().filter(|d| d.is_dir()));
            }
        }
        dirs
    }

    /// Directories the loader cache knows holding `soname`.
    fn cached(&self, soname: &str) -> Vec<PathBuf> {
        self.loader_cache
            .iter()
            .filter(|(name, _)| name == soname)
            .filter_map(|(_, path)| path.parent().map(Path::to_path_buf))
            .collect()
    }

    /// Found by the loader without a runpath: in its cache or a directory it
    /// always searches.
    fn system_has(&self, soname: &str) -> bool {
        self.loader_cache.iter().any(|(name, _)| name == soname)
            || LOADER_DIRS.iter().any(|d| self.sys(d).join(soname).is_file())
    }

    fn is_loader_dir(&self, dir: &Path) -> bool {
        LOADER_DIRS.iter().any(|d| self.sys(d) == dir)
    }
}

fn unique(dirs: Vec<PathBuf>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for d in dirs {
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

/// A directory looked in, and why.
#[derive(Debug, Clone, PartialEq)]
struct Candidate {
    source: String,
    dir: PathBuf,
}

fn candidate(source: &str, dir: impl Into<PathBuf>) -> Candidate {
    Candidate {
        source: source.to_string(),
        dir: dir.into(),
    }
}

/// What was found.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub include: PathBuf,
    pub lib: PathBuf,
    pub plugin_lib: PathBuf,
    pub cuda_include: PathBuf,
    /// Where the libraries' dependencies are looked for, most preferred first:
    /// TensorRT's and MPI's directories found here, CUDA's library
    /// directories, `LD_LIBRARY_PATH`, the NVIDIA wheels' `lib` directories.
    pub dependency_dirs: Vec<PathBuf>,
}

/// Why discovery failed: what was not found, with every place tried.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NotFound {
    pub missing: Vec<String>,
    /// Part of TensorRT-LLM (its headers or a library) was found: this
    /// machine has an installation, but an incomplete or misdirected one.
    pub partial: bool,
}

impl NotFound {
    /// One message: each thing missing, where it was looked for, and what to set.
    pub fn message(&self) -> String {
        format!(
            "--features trtllm needs TensorRT-LLM 1.2 (headers of its git tag, the libraries of its wheel \
             or build), CUDA's headers, TensorRT and an MPI runtime. Not found: {}. Set TRTLLM_ROOT (NVIDIA's \
             release container: /app/tensorrt_llm, looked in by default) or TRTLLM_INCLUDE_DIR and \
             TRTLLM_LIB_DIR, and CUDA_HOME, TENSORRT_ROOT, MPI_HOME as needed (cpp/README.md, \"Building\")",
            self.missing.join("; ")
        )
    }
}

/// Records what was looked for where.
#[derive(Default)]
struct Search {
    missing: Vec<String>,
}

impl Search {
    /// The first candidate directory holding every one of `files`.
    fn find(&mut self, what: &str, files: &[&str], candidates: &[Candidate]) -> Option<PathBuf> {
        if let Some(c) = candidates
            .iter()
            .find(|c| files.iter().all(|f| c.dir.join(f).is_file()))
        {
            return Some(c.dir.clone());
        }
        // Consecutive places of one source share its name: "/lib, /usr/lib (system)".
        let mut tried: Vec<String> = Vec::new();
        for (i, c) in candidates.iter().enumerate() {
            let last_of_source = candidates.get(i + 1).is_none_or(|next| next.source != c.source);
            tried.push(if last_of_source {
                format!("{} ({})", c.dir.display(), c.source)
            } else {
                c.dir.display().to_string()
            });
        }
        self.missing.push(format!(
            "{what} ({}) in none of: {}",
            files.join(", "),
            if tried.is_empty() {
                "(no place to look)".to_string()
            } else {
                tried.join(", ")
            }
        ));
        None
    }
}

/// Where the loader itself would look for `soname`, last resorts for TensorRT
/// and MPI: `LD_LIBRARY_PATH`, its own directories, its cache.
fn loader_places(inputs: &Inputs, soname: &str) -> Vec<Candidate> {
    let mut places: Vec<Candidate> = inputs
        .ld_library_path
        .iter()
        .map(|d| candidate("LD_LIBRARY_PATH", d))
        .collect();
    places.extend(LOADER_DIRS.iter().map(|d| candidate("system", inputs.sys(d))));
    places.extend(
        inputs
            .cached(soname)
            .into_iter()
            .map(|d| candidate("ldconfig", d)),
    );
    places
}

/// Finds everything, or says what is missing where.
pub fn locate(inputs: &Inputs) -> Result<Found, NotFound> {
    let mut search = Search::default();
    let root = inputs.var("TRTLLM_ROOT");
    let container = inputs.sys(CONTAINER_ROOT);
    let package = inputs.packages.get("tensorrt_llm");

    let mut include_dirs = Vec::new();
    if let Some(d) = inputs.var("TRTLLM_INCLUDE_DIR") {
        include_dirs.push(candidate("TRTLLM_INCLUDE_DIR", d));
    }
    if let Some(r) = root {
        include_dirs.push(candidate("TRTLLM_ROOT", r.join("include")));
        include_dirs.push(candidate("TRTLLM_ROOT", r.join("cpp/include")));
    }
    if let Some(p) = package {
        include_dirs.push(candidate("tensorrt_llm package", p.join("include")));
    }
    include_dirs.push(candidate("release container", container.join("include")));
    let include = search.find("TensorRT-LLM headers", &HEADERS, &include_dirs);

    // The plugin library sits beside libtensorrt_llm.so, except in a source
    // build (cpp/build/tensorrt_llm/plugins); each place is tried in the same
    // order for both, so that they come from the same installation.
    let lib_dirs = |plugins: bool| {
        let mut dirs = Vec::new();
        if let Some(d) = inputs.var("TRTLLM_LIB_DIR") {
            dirs.push(candidate("TRTLLM_LIB_DIR", d));
        }
        if let Some(r) = root {
            for sub in ["lib", "lib64", "tensorrt_llm/libs", "cpp/build/tensorrt_llm"] {
                dirs.push(candidate("TRTLLM_ROOT", r.join(sub)));
            }
            if plugins {
                dirs.push(candidate("TRTLLM_ROOT", r.join("cpp/build/tensorrt_llm/plugins")));
            }
        }
        if let Some(p) = package {
            dirs.push(candidate("tensorrt_llm package", p.join("libs")));
        }
        dirs.push(candidate("release container", container.join("lib")));
        for d in &inputs.ld_library_path {
            dirs.push(candidate("LD_LIBRARY_PATH", d));
        }
        dirs
    };
    let lib = search.find("the TensorRT-LLM library", &[LIBRARY], &lib_dirs(false));
    let plugin_lib = search.find("the TensorRT-LLM plugins", &[PLUGINS], &lib_dirs(true));
    let partial = include.is_some() || lib.is_some() || plugin_lib.is_some();

    // CUDA: its headers only. The bridge calls nothing of CUDA's; the CUDA
    // runtime libtensorrt_llm.so needs (a versioned soname such as
    // libcudart.so.13) is one of its dependencies, found below like the others.
    let mut cuda_roots = Vec::new();
    for name in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(d) = inputs.var(name) {
            cuda_roots.push(candidate(name, d));
        }
    }
    cuda_roots.push(candidate("default", inputs.sys(DEFAULT_CUDA)));
    let mut cuda_include_dirs: Vec<Candidate> = cuda_roots
        .iter()
        .map(|c| candidate(&c.source, c.dir.join("include")))
        .collect();
    for d in inputs.wheel_dirs("include") {
        cuda_include_dirs.push(candidate("NVIDIA wheel", d));
    }
    let cuda_include = search.find("CUDA headers", &CUDA_HEADERS, &cuda_include_dirs);
    let mut cuda_lib_dirs = Vec::new();
    for c in &cuda_roots {
        for sub in [
            "lib64",
            "lib",
            "targets/x86_64-linux/lib",
            "targets/sbsa-linux/lib",
        ] {
            cuda_lib_dirs.push(c.dir.join(sub));
        }
    }

    let mut tensorrt_dirs = Vec::new();
    if let Some(d) = inputs.var("TENSORRT_ROOT") {
        tensorrt_dirs.push(candidate("TENSORRT_ROOT", d.join("lib")));
    }
    if let Some(p) = inputs.packages.get("tensorrt_libs") {
        tensorrt_dirs.push(candidate("tensorrt_libs package", p));
    }
    tensorrt_dirs.push(candidate("release container", inputs.sys(CONTAINER_TENSORRT)));
    tensorrt_dirs.extend(loader_places(inputs, TENSORRT));
    let tensorrt = search.find("TensorRT", &[TENSORRT], &tensorrt_dirs);

    let mut mpi_dirs = Vec::new();
    for name in ["MPI_HOME", "OMPI_HOME"] {
        if let Some(d) = inputs.var(name) {
            mpi_dirs.push(candidate(name, d.join("lib")));
        }
    }
    mpi_dirs.push(candidate("HPC-X (release container)", inputs.sys(CONTAINER_MPI)));
    mpi_dirs.push(candidate("Open MPI", inputs.sys("/usr/local/mpi/lib")));
    mpi_dirs.push(candidate(
        "Open MPI",
        inputs.sys("/usr/lib/x86_64-linux-gnu/openmpi/lib"),
    ));
    mpi_dirs.extend(loader_places(inputs, MPI));
    let mpi = search.find("an MPI runtime", &[MPI], &mpi_dirs);

    match (include, lib, plugin_lib, cuda_include, tensorrt, mpi) {
        (Some(include), Some(lib), Some(plugin_lib), Some(cuda_include), Some(tensorrt), Some(mpi)) => {
            let mut dependency_dirs = vec![tensorrt, mpi];
            dependency_dirs.extend(cuda_lib_dirs.into_iter().filter(|d| d.is_dir()));
            dependency_dirs.extend(inputs.ld_library_path.iter().cloned());
            dependency_dirs.extend(inputs.wheel_dirs("lib"));
            if let Some(p) = inputs.packages.get("tensorrt_libs") {
                dependency_dirs.push(p.clone());
            }
            Ok(Found {
                include,
                lib,
                plugin_lib,
                cuda_include,
                dependency_dirs: unique(dependency_dirs),
            })
        }
        _ => Err(NotFound {
            missing: search.missing,
            partial,
        }),
    }
}

/// What a shared library's dynamic section says (`readelf -d`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dynamic {
    /// DT_NEEDED sonames.
    pub needed: Vec<String>,
    /// DT_RUNPATH, else DT_RPATH, entries as written (`$ORIGIN` unexpanded).
    pub search_path: Vec<String>,
}

/// Parses `readelf -d` output.
pub fn parse_readelf(text: &str) -> Dynamic {
    let bracketed = |l: &str| Some(l.split_once('[')?.1.rsplit_once(']')?.0.to_string());
    let mut out = Dynamic::default();
    let mut rpath = Vec::new();
    for line in text.lines() {
        if line.contains("(NEEDED)") {
            out.needed.extend(bracketed(line));
        } else if line.contains("(RUNPATH)") {
            out.search_path = bracketed(line).map(|p| split_path(&p)).unwrap_or_default();
        } else if line.contains("(RPATH)") {
            rpath = bracketed(line).map(|p| split_path(&p)).unwrap_or_default();
        }
    }
    if out.search_path.is_empty() {
        out.search_path = rpath;
    }
    out
}

fn split_path(p: &str) -> Vec<String> {
    p.split(':')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// How the binary links TensorRT-LLM.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LinkPlan {
    /// `-L` for libtensorrt_llm.so and the plugin library.
    pub link_dirs: Vec<PathBuf>,
    /// Libraries the binary lists as its own NEEDED entries (soname,
    /// directory): dependencies of TensorRT-LLM's libraries that neither their
    /// own runpath nor the system loader finds.
    pub direct: Vec<(String, PathBuf)>,
    /// The binary's runpath: the link directories and the direct ones'.
    pub runpath: Vec<PathBuf>,
    /// `-rpath-link`: where the linker resolves the libraries' dependencies.
    pub rpath_link: Vec<PathBuf>,
    /// Dependencies found nowhere (the binary will need `LD_LIBRARY_PATH`).
    pub missing: Vec<String>,
    /// Libraries whose dynamic section could not be read.
    pub unreadable: Vec<PathBuf>,
}

/// What libtensorrt_llm.so is assumed to need when `readelf` cannot say.
pub const ASSUMED_NEEDED: [&str; 2] = [TENSORRT, MPI];

/// Works out what the binary must list itself so that the loader finds every
/// library TensorRT-LLM's need. The loader looks for a library's dependencies
/// in that library's own runpath (libtensorrt_llm.so has only `$ORIGIN`), then
/// its cache and default directories: never in the executable's runpath. A
/// library the executable lists itself is loaded first, from the executable's
/// runpath, and then satisfies the others by soname.
///
/// Each dependency, from libtensorrt_llm.so and the plugin library down through
/// what they load: found through its dependant's own runpath, it is followed;
/// else found in one of `found.dependency_dirs` (other than the loader's own
/// directories), it becomes a direct dependency from there, even if the loader
/// cache knows a library of that name elsewhere (that one would be loaded
/// instead of the one discovery chose: another MPI, another TensorRT); else
/// the system loader's finds it; else it is missing.
pub fn link_plan(found: &Found, inputs: &Inputs, read: &dyn Fn(&Path) -> Option<Dynamic>) -> LinkPlan {
    let mut plan = LinkPlan {
        link_dirs: unique(vec![found.lib.clone(), found.plugin_lib.clone()]),
        ..LinkPlan::default()
    };
    let preferred: Vec<&PathBuf> = found
        .dependency_dirs
        .iter()
        .filter(|d| !inputs.is_loader_dir(d))
        .collect();
    let mut queue = vec![found.lib.join(LIBRARY), found.plugin_lib.join(PLUGINS)];
    let mut seen: Vec<PathBuf> = Vec::new();
    while let Some(lib) = queue.pop() {
        if seen.contains(&lib) {
            continue;
        }
        seen.push(lib.clone());
        let origin = lib.parent().unwrap_or(Path::new(".")).to_path_buf();
        let dynamic = read(&lib).unwrap_or_else(|| {
            plan.unreadable.push(lib.clone());
            Dynamic {
                needed: ASSUMED_NEEDED.iter().map(|s| s.to_string()).collect(),
                search_path: vec!["$ORIGIN".into()],
            }
        });
        let own: Vec<PathBuf> = dynamic
            .search_path
            .iter()
            .map(|p| {
                PathBuf::from(
                    p.replace("${ORIGIN}", "$ORIGIN")
                        .replace("$ORIGIN", &origin.to_string_lossy()),
                )
            })
            .collect();
        for name in dynamic.needed {
            if let Some(dir) = own.iter().find(|d| d.join(&name).is_file()) {
                queue.push(dir.join(&name));
            } else if plan.direct.iter().any(|(n, _)| *n == name) {
                continue;
            } else if let Some(dir) = preferred.iter().find(|d| d.join(&name).is_file()) {
                queue.push(dir.join(&name));
                plan.direct.push((name, (*dir).clone()));
            } else if !inputs.system_has(&name) && !plan.missing.contains(&name) {
                plan.missing.push(name);
            }
        }
    }
    let mut runpath = plan.link_dirs.clone();
    runpath.extend(plan.direct.iter().map(|(_, d)| d.clone()));
    plan.runpath = unique(runpath);
    let mut rpath_link = plan.link_dirs.clone();
    rpath_link.extend(found.dependency_dirs.iter().cloned());
    plan.rpath_link = unique(rpath_link);
    plan
}

/// The version TensorRT-LLM's headers state: `kTensorRtLlmVersion` in
/// `tensorrt_llm/executor/version.h` (generated into the source tree from
/// `tensorrt_llm/version.py`). `None` when the file is not there.
pub fn headers_version(include: &Path) -> Option<String> {
    let text = std::fs::read_to_string(include.join("tensorrt_llm/executor/version.h")).ok()?;
    quoted_after(&text, "kTensorRtLlmVersion")
}

/// The installed library's version, from the Python package's `version.py`
/// (`__version__ = "1.2.0"`) beside its `libs/`: `(version, file)`.
pub fn library_version(found: &Found, inputs: &Inputs) -> Option<(String, PathBuf)> {
    let mut dirs = Vec::new();
    // The wheel's libs/ (the container's lib/ links to it): version.py is one up.
    if let Ok(real) = found.lib.canonicalize()
        && let Some(parent) = real.parent()
    {
        dirs.push(parent.to_path_buf());
    }
    if let Some(r) = inputs.var("TRTLLM_ROOT") {
        dirs.push(r.join("tensorrt_llm"));
    }
    if let Some(p) = inputs.packages.get("tensorrt_llm") {
        dirs.push(p.clone());
    }
    dirs.into_iter().find_map(|d| {
        let file = d.join("version.py");
        let text = std::fs::read_to_string(&file).ok()?;
        Some((quoted_after(&text, "__version__")?, file))
    })
}

/// The first string literal after `key` (on the same statement).
fn quoted_after(text: &str, key: &str) -> Option<String> {
    let rest = &text[text.find(key)? + key.len()..];
    let rest = rest.trim_start().strip_prefix('=')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let body = &rest[1..];
    Some(body[..body.find(quote)?].to_string())
}

/// Refuses headers and a library of different releases: the bridge passes
/// config classes by value (`ExecutorConfig` holds `KvCacheConfig`,
/// `SchedulerConfig`, ... whose members change between releases), so a
/// mismatch links without complaint and corrupts memory at run time. `Ok` with
/// a warning when a version cannot be read.
pub fn check_versions(
    include: &Path,
    headers: Option<&str>,
    library: Option<&(String, PathBuf)>,
) -> Result<Option<String>, String> {
    match (headers, library) {
        (Some(h), Some((l, file))) if h != l => Err(format!(
            "TensorRT-LLM's headers and library are different releases: {} says {h}, {} says {l}. \
             The bridge passes TensorRT-LLM's config classes by value, whose layout changes between \
             releases, so this would link and then fail at run time: take the headers from the git tag \
             of the installed version (v{l}, cpp/include)",
            include.join("tensorrt_llm/executor/version.h").display(),
            file.display()
        )),
        (Some(_), Some(_)) => Ok(None),
        (None, _) => Ok(Some(format!(
            "cannot check that the headers match the library: {} not found (headers older than \
             TensorRT-LLM 1.0, or an incomplete copy); they must come from the same release",
            include.join("tensorrt_llm/executor/version.h").display()
        ))),
        (Some(h), None) => Ok(Some(format!(
            "cannot check that the library is TensorRT-LLM {h} as the headers are: no tensorrt_llm/version.py \
             beside its libs/ or under TRTLLM_ROOT; they must come from the same release"
        ))),
    }
}
