//! build.rs's discovery of TensorRT-LLM (`build/discovery.rs`) on directory
//! trees laid out as the real installations are: NVIDIA's release container
//! (docker/Dockerfile.multi: /app/tensorrt_llm/{include,lib}, TensorRT in
//! /usr/local/tensorrt/lib, HPC-X MPI, CUDA in /usr/local/cuda) and a pip
//! install (the tensorrt_llm, tensorrt_libs and nvidia-* wheels, MPI from the
//! system). The files are empty: only their names and places matter here; the
//! libraries' dynamic sections are given as `readelf` would print them. The
//! same layouts are built, linked and run for real by `scripts/build-fake-trtllm`
//! and `tests/trtllm_fake.rs`.

#[allow(dead_code)]
#[path = "../build/discovery.rs"]
mod discovery;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use discovery::{Dynamic, Inputs, link_plan, locate, parse_readelf};

fn touch(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"").unwrap();
}

fn headers(include: &Path, version: Option<&str>) {
    for h in discovery::HEADERS {
        touch(&include.join(h));
    }
    if let Some(v) = version {
        std::fs::write(
            include.join("tensorrt_llm/executor/version.h"),
            format!(
                "#pragma once\n// THIS FILE IS AUTO GENERATED\nnamespace tensorrt_llm::executor\n{{\nstatic auto constexpr kTensorRtLlmVersion = \"{v}\";\n}}\n"
            ),
        )
        .unwrap();
    }
}

/// site-packages/tensorrt_llm with its libs/ and version.py.
fn package(site: &Path, version: &str) -> PathBuf {
    let package = site.join("tensorrt_llm");
    touch(&package.join("libs").join(discovery::LIBRARY));
    touch(&package.join("libs").join(discovery::PLUGINS));
    touch(&package.join("__init__.py"));
    std::fs::write(
        package.join("version.py"),
        format!("__version__ = \"{version}\"\n"),
    )
    .unwrap();
    package
}

fn cuda_headers(dir: &Path) {
    for h in discovery::CUDA_HEADERS {
        touch(&dir.join(h));
    }
}

/// `ldconfig -p` of a system with its own Open MPI (Debian's): libmpi.so.40 and libc.
fn system_cache(root: &Path) -> Vec<(String, PathBuf)> {
    touch(&root.join("usr/lib/x86_64-linux-gnu/libmpi.so.40"));
    ["libmpi.so.40", "libc.so.6"]
        .iter()
        .map(|name| (name.to_string(), root.join("usr/lib/x86_64-linux-gnu").join(name)))
        .collect()
}

/// NVIDIA's release container under `root`.
fn container(root: &Path) -> Inputs {
    let site = root.join("usr/local/lib/python3.12/dist-packages");
    let package = package(&site, "1.2.0");
    let app = root.join("app/tensorrt_llm");
    headers(&app.join("include"), Some("1.2.0"));
    std::os::unix::fs::symlink(package.join("libs"), app.join("lib")).unwrap();
    touch(&root.join("usr/local/tensorrt/lib/libnvinfer.so.10"));
    touch(&root.join("opt/hpcx/ompi/lib/libmpi.so.40"));
    touch(&root.join("opt/hpcx/ompi/lib/libopen-pal.so.40"));
    cuda_headers(&root.join("usr/local/cuda/include"));
    touch(&root.join("usr/local/cuda/lib64/libcudart.so.13"));
    // The system has an MPI of its own, which the loader cache knows.
    Inputs {
        loader_cache: system_cache(root),
        sysroot: root.to_path_buf(),
        ..Inputs::default()
    }
}

/// A pip install in `root/site-packages`; the headers of the git tag in
/// `root/TensorRT-LLM/cpp/include`; MPI from the system.
fn wheel(root: &Path) -> Inputs {
    let site = root.join("site-packages");
    let package = package(&site, "1.2.0");
    let include = root.join("TensorRT-LLM/cpp/include");
    headers(&include, Some("1.2.0"));
    touch(&site.join("tensorrt_libs/libnvinfer.so.10"));
    // CUDA 13's runtime wheel: only the versioned library.
    touch(&site.join("nvidia/cu13/lib/libcudart.so.13"));
    cuda_headers(&site.join("nvidia/cu13/include"));
    touch(&site.join("nvidia/cublas/lib/libcublas.so.13"));
    Inputs {
        vars: BTreeMap::from([("TRTLLM_INCLUDE_DIR".to_string(), include)]),
        packages: BTreeMap::from([
            ("tensorrt_llm".to_string(), package),
            ("tensorrt_libs".to_string(), site.join("tensorrt_libs")),
        ]),
        loader_cache: system_cache(root),
        sysroot: root.to_path_buf(),
        ..Inputs::default()
    }
}

fn dynamic(needed: &[&str], search_path: &[&str]) -> Dynamic {
    Dynamic {
        needed: needed.iter().map(|s| s.to_string()).collect(),
        search_path: search_path.iter().map(|s| s.to_string()).collect(),
    }
}

/// The dynamic sections of the real libraries' kind: libtensorrt_llm.so needs
/// TensorRT, MPI, the CUDA runtime and libc with `$ORIGIN` as its runpath;
/// the plugin library needs it; HPC-X's libmpi needs its libopen-pal, beside
/// it, without a runpath.
fn readelf(lib: &Path) -> Option<Dynamic> {
    let name = lib.file_name()?.to_str()?;
    Some(match name {
        "libtensorrt_llm.so" => dynamic(
            &[
                "libnvinfer.so.10",
                "libmpi.so.40",
                "libcudart.so.13",
                "libcublas.so.13",
                "libc.so.6",
            ],
            &["$ORIGIN"],
        ),
        "libnvinfer_plugin_tensorrt_llm.so" => dynamic(&["libtensorrt_llm.so", "libc.so.6"], &["$ORIGIN"]),
        "libmpi.so.40" => dynamic(&["libopen-pal.so.40", "libc.so.6"], &[]),
        _ => dynamic(&["libc.so.6"], &[]),
    })
}

fn direct(plan: &discovery::LinkPlan) -> BTreeMap<String, PathBuf> {
    plan.direct.iter().cloned().collect()
}

#[test]
fn the_release_container_is_found_without_any_variable() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let inputs = container(root);
    let found = locate(&inputs).unwrap();
    assert_eq!(found.include, root.join("app/tensorrt_llm/include"));
    assert_eq!(found.lib, root.join("app/tensorrt_llm/lib"));
    assert_eq!(found.plugin_lib, found.lib);
    assert_eq!(found.cuda_include, root.join("usr/local/cuda/include"));
    assert_eq!(
        found.dependency_dirs[..2],
        [
            root.join("usr/local/tensorrt/lib"),
            root.join("opt/hpcx/ompi/lib")
        ]
    );

    let plan = link_plan(&found, &inputs, &readelf);
    let direct = direct(&plan);
    assert_eq!(direct["libnvinfer.so.10"], root.join("usr/local/tensorrt/lib"));
    // HPC-X, which discovery chose, although the loader cache knows another libmpi.so.40
    // (that one would be loaded otherwise).
    assert_eq!(direct["libmpi.so.40"], root.join("opt/hpcx/ompi/lib"));
    // What HPC-X's libmpi needs beside it (it has no runpath) is listed as well.
    assert_eq!(direct["libopen-pal.so.40"], root.join("opt/hpcx/ompi/lib"));
    assert_eq!(direct["libcudart.so.13"], root.join("usr/local/cuda/lib64"));
    assert!(!direct.contains_key("libc.so.6"));
    assert_eq!(plan.missing, vec!["libcublas.so.13".to_string()]);
    assert_eq!(plan.link_dirs, vec![found.lib.clone()]);
    for dir in [
        &found.lib,
        &root.join("usr/local/tensorrt/lib"),
        &root.join("opt/hpcx/ompi/lib"),
    ] {
        assert!(
            plan.runpath.contains(dir),
            "{} not in {:?}",
            dir.display(),
            plan.runpath
        );
    }
    assert!(!plan.runpath.contains(&root.join("usr/lib/x86_64-linux-gnu")));

    let library = discovery::library_version(&found, &inputs).unwrap();
    assert_eq!(library.0, "1.2.0");
    assert!(
        library.1.ends_with("tensorrt_llm/version.py"),
        "{}",
        library.1.display()
    );
    assert_eq!(
        discovery::headers_version(&found.include).as_deref(),
        Some("1.2.0")
    );
}

#[test]
fn tensorrt_on_ld_library_path_is_found() {
    // The container's own environment puts TensorRT on LD_LIBRARY_PATH.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut inputs = container(root);
    std::fs::remove_dir_all(root.join("usr/local/tensorrt")).unwrap();
    touch(&root.join("opt/tensorrt-10.13/lib/libnvinfer.so.10"));
    inputs.ld_library_path = vec![root.join("opt/tensorrt-10.13/lib")];
    let found = locate(&inputs).unwrap();
    assert_eq!(found.dependency_dirs[0], root.join("opt/tensorrt-10.13/lib"));
    let plan = link_plan(&found, &inputs, &readelf);
    assert_eq!(
        direct(&plan)["libnvinfer.so.10"],
        root.join("opt/tensorrt-10.13/lib")
    );
}

#[test]
fn a_pip_install_is_found_through_its_python_packages() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let inputs = wheel(root);
    let site = root.join("site-packages");
    let found = locate(&inputs).unwrap();
    assert_eq!(found.include, root.join("TensorRT-LLM/cpp/include"));
    assert_eq!(found.lib, site.join("tensorrt_llm/libs"));
    // CUDA's headers from the NVIDIA wheel, with no CUDA toolkit installed.
    assert_eq!(found.cuda_include, site.join("nvidia/cu13/include"));

    let plan = link_plan(&found, &inputs, &readelf);
    let direct = direct(&plan);
    assert_eq!(direct["libnvinfer.so.10"], site.join("tensorrt_libs"));
    // The versioned CUDA runtime the wheel ships (no libcudart.so needed).
    assert_eq!(direct["libcudart.so.13"], site.join("nvidia/cu13/lib"));
    assert_eq!(direct["libcublas.so.13"], site.join("nvidia/cublas/lib"));
    // The system's MPI: the loader finds it without a runpath.
    assert!(!direct.contains_key("libmpi.so.40"));
    assert!(plan.missing.is_empty(), "{:?}", plan.missing);
    assert!(!plan.runpath.contains(&root.join("usr/lib/x86_64-linux-gnu")));
    assert_eq!(
        discovery::library_version(&found, &inputs)
            .map(|v| v.0)
            .as_deref(),
        Some("1.2.0")
    );
}

#[test]
fn variables_come_before_the_default_places() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut inputs = container(root);
    let other = root.join("src/TensorRT-LLM");
    headers(&other.join("cpp/include"), Some("1.2.0"));
    touch(&other.join("cpp/build/tensorrt_llm").join(discovery::LIBRARY));
    touch(
        &other
            .join("cpp/build/tensorrt_llm/plugins")
            .join(discovery::PLUGINS),
    );
    inputs.vars.insert("TRTLLM_ROOT".into(), other.clone());
    let found = locate(&inputs).unwrap();
    assert_eq!(found.include, other.join("cpp/include"));
    assert_eq!(found.lib, other.join("cpp/build/tensorrt_llm"));
    assert_eq!(found.plugin_lib, other.join("cpp/build/tensorrt_llm/plugins"));
}

#[test]
fn nothing_found_says_where_it_looked_and_what_to_set() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = Inputs {
        sysroot: tmp.path().to_path_buf(),
        ..Inputs::default()
    };
    let err = locate(&inputs).unwrap_err();
    assert!(!err.partial);
    let message = err.message();
    for want in [
        "TensorRT-LLM headers (tensorrt_llm/executor/executor.h, tensorrt_llm/plugins/api/tllmPlugin.h) in none of",
        &tmp.path().join("app/tensorrt_llm/include").display().to_string(),
        "(release container)",
        "the TensorRT-LLM library (libtensorrt_llm.so)",
        "TensorRT (libnvinfer.so.10)",
        "an MPI runtime (libmpi.so.40)",
        "Set TRTLLM_ROOT (NVIDIA's release container: /app/tensorrt_llm",
        "TRTLLM_INCLUDE_DIR",
    ] {
        assert!(message.contains(want), "{want:?} not in {message}");
    }
    // Headers alone: an installation is there, but incomplete (the build fails outright).
    headers(&tmp.path().join("app/tensorrt_llm/include"), None);
    assert!(locate(&inputs).unwrap_err().partial);
}

#[test]
fn headers_and_library_of_different_releases_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let inputs = container(root);
    std::fs::write(
        root.join("usr/local/lib/python3.12/dist-packages/tensorrt_llm/version.py"),
        "__version__ = '1.2.0rc2'\n",
    )
    .unwrap();
    let found = locate(&inputs).unwrap();
    let headers = discovery::headers_version(&found.include);
    let library = discovery::library_version(&found, &inputs);
    let err = discovery::check_versions(&found.include, headers.as_deref(), library.as_ref()).unwrap_err();
    assert!(
        err.contains("says 1.2.0,") && err.contains("says 1.2.0rc2"),
        "{err}"
    );
    assert!(err.contains("v1.2.0rc2"), "{err}");
    // Headers without version.h: built with a warning, not refused.
    std::fs::remove_file(found.include.join("tensorrt_llm/executor/version.h")).unwrap();
    let headers = discovery::headers_version(&found.include);
    let warning = discovery::check_versions(&found.include, headers.as_deref(), library.as_ref()).unwrap();
    assert!(warning.unwrap().contains("cannot check"));
}

#[test]
fn readelf_output_is_read() {
    let text = "
Dynamic section at offset 0x29cd0 contains 31 entries:
  Tag        Type                         Name/Value
 0x0000000000000001 (NEEDED)             Shared library: [libnvinfer.so.10]
 0x0000000000000001 (NEEDED)             Shared library: [libmpi.so.40]
 0x000000000000000e (SONAME)             Library soname: [libtensorrt_llm.so]
 0x000000000000001d (RUNPATH)            Library runpath: [$ORIGIN:/opt/x/lib]
";
    let d = parse_readelf(text);
    assert_eq!(d.needed, vec!["libnvinfer.so.10", "libmpi.so.40"]);
    assert_eq!(d.search_path, vec!["$ORIGIN", "/opt/x/lib"]);
    let d = parse_readelf(" 0x000000000000000f (RPATH)              Library rpath: [/old/lib]\n");
    assert_eq!(d.search_path, vec!["/old/lib"]);
}
