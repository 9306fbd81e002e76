//! The dependency direction docs/architecture.md draws, checked: each module
//! under `src/` imports (`crate::...`) only modules listed before it, and no
//! command imports another command.

use std::path::Path;

/// Bottom first: a module may use only those listed before it.
const LAYERS: &[&str] = &[
    // foundation
    "error",
    "dtype",
    "cancel",
    "progress",
    "staging",
    "json_file",
    "cli_values",
    // format readers
    "safetensors_file",
    "tokenizer",
    "hf",
    // TensorRT-LLM files, and the generation interface
    "trtllm",
    "generation",
    // the engines of the tool
    "convert",
    "runtime",
    "executor",
    "engine_build",
    // what a --model argument names, opened on a backend
    "target",
    // on top
    "commands",
];

/// `crate::NAME` paths in Rust source, comments left out.
fn crate_paths(source: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("");
        for (at, _) in code.match_indices("crate::") {
            // `trtllm_minitron::` (integration-style paths) and `$crate::` are not ours.
            if code[..at].ends_with('_') || code[..at].ends_with('$') {
                continue;
            }
            let rest = &code[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let sub: String = rest[name.len()..]
                .strip_prefix("::")
                .unwrap_or("")
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.push(if name == "commands" {
                format!("commands::{sub}")
            } else {
                name
            });
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn modules_only_import_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let position = |name: &str| LAYERS.iter().position(|l| *l == name);
    let mut wrong = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "main" || module == "lib" {
            continue;
        }
        let command = (module == "commands")
            .then(|| rel.components().nth(1))
            .flatten()
            .map(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_string()
            });
        let Some(mine) = position(&module) else {
            wrong.push(format!("{}: module {module} is not in LAYERS", rel.display()));
            continue;
        };
        for used in crate_paths(&std::fs::read_to_string(file).unwrap()) {
            if let Some(other) = used.strip_prefix("commands::") {
                match command.as_deref() {
                    None => wrong.push(format!("{}: {module} uses the command {other}", rel.display())),
                    Some(c) if c != other && c != "mod" => wrong.push(format!(
                        "{}: the command {c} uses the command {other}",
                        rel.display()
                    )),
                    Some(_) => {}
                }
                continue;
            }
            // Re-exports at the crate root.
            if used == "DType" || used == "Error" || used == "Result" || used == module {
                continue;
            }
            match position(&used) {
                Some(theirs) if theirs < mine => {}
                _ => wrong.push(format!("{}: {module} uses {used}", rel.display())),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_check_sees_imports() {
    assert_eq!(
        crate_paths(
            "use crate::trtllm::config::DirConfig; // crate::commands::x\nlet p = crate::commands::run::args;"
        ),
        ["trtllm", "commands::run"]
    );
}
