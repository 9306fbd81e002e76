//! The profiles shipped in `engines/`: each parses, passes every check against
//! the model it names, and turns into the trtllm-build command it should; and
//! `engines/README.md` documents every key and every profile.

use std::path::{Path, PathBuf};

use trtllm_minitron::DType;
use trtllm_minitron::engine_build::flags::builder_args;
use trtllm_minitron::engine_build::profile::{self, LoadedProfile, Merged, ModelFacts, ProfileKeys};
use trtllm_minitron::hf::config::NemotronConfig;

fn engines() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("engines")
}

fn shipped() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(engines())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

/// Dimensions from the published config.json files of the two models.
fn minitron(hub_id: &str) -> ModelFacts {
    let (hidden, heads, ffn) = match hub_id {
        "nvidia/Minitron-8B-Base" => (4096, 48, 16384),
        "nvidia/Minitron-4B-Base" => (3072, 24, 9216),
        other => panic!("no dimensions for {other}"),
    };
    ModelFacts {
        config: NemotronConfig {
            vocab_size: 256000,
            hidden_size: hidden,
            intermediate_size: ffn,
            num_hidden_layers: 32,
            num_attention_heads: heads,
            num_key_value_heads: 8,
            head_dim: 128,
            max_position_embeddings: 4096,
            dtype: Some(DType::BF16),
            bos_token_id: Some(2),
            eos_token_id: Some(3),
            ..NemotronConfig::tiny()
        },
        dtype: DType::BF16,
        label: hub_id.into(),
        mapping: None,
    }
}

#[test]
fn the_shipped_profiles_are_the_ones_asked_for() {
    let names: Vec<String> = shipped()
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "demo-shakespeare",
            "minitron-4b-base-bf16-a100",
            "minitron-8b-base-bf16-a100",
            "minitron-8b-base-fp16-a100",
            "minitron-8b-bf16-tp2-a100",
        ]
    );
}

#[test]
fn every_shipped_profile_passes_its_checks() {
    for path in shipped() {
        let loaded = LoadedProfile::read(&path).unwrap_or_else(|e| panic!("{e}"));
        let spec = loaded.file.model.clone().unwrap();
        let facts = if spec.starts_with("nvidia/") {
            minitron(&spec)
        } else {
            // The demo: relative to the profile file.
            let dir = loaded.base_dir().join(&spec);
            assert!(
                dir.is_dir(),
                "{}: model {spec} is not a directory",
                path.display()
            );
            let config = dir.join("config.json");
            assert!(
                config.is_file(),
                "{}: the model it names is committed, but {} is missing",
                path.display(),
                config.display()
            );
            let config = NemotronConfig::from_file(&config).unwrap();
            ModelFacts {
                dtype: config.dtype.unwrap_or(DType::BF16),
                config,
                label: spec.clone(),
                mapping: None,
            }
        };
        let p = profile::resolve(&Merged::new(Some(&loaded), &ProfileKeys::default()), &facts)
            .unwrap_or_else(|e| panic!("{e}"));
        // Every limit is written in the file, not defaulted.
        for key in profile::REQUIRED_KEYS {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains(&format!("\n{key} = ")), "{}: {key}", path.display());
        }
        let args = builder_args(&p, Path::new("CKPT"), Path::new("OUT"));
        assert!(
            args.windows(2)
                .any(|w| w[0] == "--workers" && w[1] == p.workers.to_string())
        );
        if spec.contains("8B") || spec.contains("4B") {
            assert_eq!(
                p.target_arch.as_deref(),
                Some("sm80"),
                "{}: A100 profiles",
                path.display()
            );
        }
    }
}

#[test]
fn the_profiles_say_what_their_names_say() {
    let read = |name: &str| {
        let loaded = LoadedProfile::read(&engines().join(format!("{name}.toml"))).unwrap();
        let spec = loaded.file.model.clone().unwrap();
        profile::resolve(
            &Merged::new(Some(&loaded), &ProfileKeys::default()),
            &minitron(&spec),
        )
        .unwrap()
    };
    let p = read("minitron-8b-base-bf16-a100");
    assert_eq!(
        (p.model.as_str(), p.dtype, p.tp, p.pp),
        ("nvidia/Minitron-8B-Base", DType::BF16, 1, 1)
    );
    let p = read("minitron-8b-base-fp16-a100");
    assert_eq!(
        (p.model.as_str(), p.dtype, p.tp),
        ("nvidia/Minitron-8B-Base", DType::F16, 1)
    );
    let p = read("minitron-8b-bf16-tp2-a100");
    assert_eq!((p.dtype, p.tp, p.pp, p.workers), (DType::BF16, 2, 1, 2));
    let p = read("minitron-4b-base-bf16-a100");
    assert_eq!(
        (p.model.as_str(), p.dtype, p.tp),
        ("nvidia/Minitron-4B-Base", DType::BF16, 1)
    );
}

#[test]
fn the_readme_documents_every_key_and_profile() {
    let readme = std::fs::read_to_string(engines().join("README.md")).unwrap();
    for key in ProfileKeys::names() {
        assert!(
            readme.contains(&format!("| `{key}` |")),
            "engines/README.md: key {key}"
        );
    }
    for path in shipped() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(readme.contains(&name), "engines/README.md: profile {name}");
    }
}
