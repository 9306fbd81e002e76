//! `check` end to end through the binary: recording and checking a suite,
//! tampered expectations, malformed suites, JUnit XML, `--against reference`
//! (a tp=2 conversion against a tp=1 one), speed checks and exit codes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use serde_json::Value;

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

const SUITE: &str = r#"# a test suite
name = "tiny"
max_new_tokens = 12

[[case]]
name = "text"
prompt = "hello world"

[[case]]
name = "ids"
input_ids = [5, 17, 42, 7]
ignore_eos = true
max_new_tokens = 16

[[case]]
name = "sampled"
input_ids = [9, 8, 7]
temperature = 0.9
top_p = 0.9
seed = 7
ignore_eos = true
"#;

struct Setup {
    _tmp: tempfile::TempDir,
    cache: PathBuf,
    suite: PathBuf,
    dir: PathBuf,
}

fn setup(text: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let suite = tmp.path().join("suite.toml");
    std::fs::write(&suite, text).unwrap();
    Setup {
        cache: tmp.path().join("cache"),
        dir: tmp.path().to_path_buf(),
        suite,
        _tmp: tmp,
    }
}

fn model() -> String {
    common::model("gqa-headdim-bf16").display().to_string()
}

fn check(s: &Setup, extra: &[&str]) -> Output {
    let m = model();
    let mut args = vec!["check", "--model", &m, "--suite", s.suite.to_str().unwrap()];
    args.extend_from_slice(extra);
    cli_in(&s.cache, &args)
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(out), stderr(out)))
}

fn recorded(s: &Setup) -> toml::Table {
    toml::from_str(&std::fs::read_to_string(&s.suite).unwrap()).unwrap()
}

#[test]
fn record_then_check_passes_and_keeps_comments() {
    let s = setup(SUITE);
    // before recording, every case is skipped (nothing to compare with): exit 0
    let out = check(&s, &["--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(json(&out)["skipped"], 3);

    let out = check(&s, &["--record"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("recorded into"));
    let text = std::fs::read_to_string(&s.suite).unwrap();
    assert!(text.starts_with("# a test suite"), "{text}");
    let t = recorded(&s);
    let cases = t["case"].as_array().unwrap();
    for c in cases {
        let e = c["expect"].as_table().unwrap();
        let n = e["output_ids"].as_array().unwrap().len();
        assert!(n > 0);
        assert_eq!(e["logits"].as_array().unwrap().len(), n);
        assert_eq!(e["logprobs"].as_array().unwrap().len(), n);
    }
    assert_eq!(cases[1]["expect"]["output_ids"].as_array().unwrap().len(), 16);
    assert!(cases[0]["expect"].get("text").is_some());

    let out = check(&s, &["--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = json(&out);
    assert_eq!(
        (r["passed"].as_u64(), r["failed"].as_u64()),
        (Some(3), Some(0)),
        "{r}"
    );
    assert_eq!(r["mode"], "golden");
    assert_eq!(r["dtype"], "bfloat16");
    for c in r["cases"].as_array().unwrap() {
        // recorded values are rounded to 1e-4
        assert!(c["max_logit_diff"].as_f64().unwrap() <= 1e-4, "{c}");
    }
    // the table
    let out = check(&s, &[]);
    assert_eq!(code(&out), 0);
    let table = stdout(&out);
    assert!(table.contains("3 passed, 0 failed, 0 skipped"), "{table}");
    assert!(table.contains("max logit diff"));
}

fn tamper(s: &Setup, case: usize, position: usize) -> (i64, i64) {
    let mut t = recorded(s);
    let e = t["case"].as_array_mut().unwrap()[case]["expect"]
        .as_table_mut()
        .unwrap();
    let ids = e["output_ids"].as_array_mut().unwrap();
    let old = ids[position].as_integer().unwrap();
    let new = (old + 1) % 101;
    ids[position] = toml::Value::Integer(new);
    std::fs::write(&s.suite, toml::to_string(&t).unwrap()).unwrap();
    (old, new)
}

#[test]
fn tampered_expectation_fails_at_its_position() {
    let s = setup(SUITE);
    assert_eq!(code(&check(&s, &["--record"])), 0);
    let (got, expected) = tamper(&s, 1, 5);
    let junit = s.dir.join("report.xml");
    let out = check(&s, &["--json", "--junit", junit.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let r = json(&out);
    assert_eq!((r["passed"].as_u64(), r["failed"].as_u64()), (Some(2), Some(1)));
    let c = &r["cases"][1];
    assert_eq!(c["name"], "ids");
    assert_eq!(c["status"], "fail");
    assert_eq!(c["divergence"]["position"], 5);
    assert_eq!(c["divergence"]["expected"], expected);
    assert_eq!(c["divergence"]["got"], got);
    assert_eq!(c["agreement"].as_f64().unwrap(), 15.0 / 16.0);

    // JUnit parses, with the right counts and the failure on the right case
    let xml = std::fs::read_to_string(&junit).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let suite = doc.descendants().find(|n| n.has_tag_name("testsuite")).unwrap();
    assert_eq!(suite.attribute("tests"), Some("3"));
    assert_eq!(suite.attribute("failures"), Some("1"));
    assert_eq!(suite.attribute("skipped"), Some("0"));
    let cases: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("testcase")).collect();
    assert_eq!(cases.len(), 3);
    let failed: Vec<_> = cases
        .iter()
        .filter(|c| c.children().any(|n| n.has_tag_name("failure")))
        .map(|c| c.attribute("name").unwrap())
        .collect();
    assert_eq!(failed, ["ids"]);
    let failure = doc.descendants().find(|n| n.has_tag_name("failure")).unwrap();
    assert!(failure.text().unwrap().contains("@5: expected"), "{xml}");

    // the table names the position and both tokens, decoded
    let out = check(&s, &[]);
    assert_eq!(code(&out), 1);
    let table = stdout(&out);
    assert!(table.contains(&format!("@5: expected {expected} \"")), "{table}");
    assert!(table.contains("FAIL"), "{table}");

    // a minimum agreement rate lets the same output pass (15/16 = 93.75%); the tampered
    // token's recorded logit belongs to another token, so loosen the logit tolerances too
    let text = std::fs::read_to_string(&s.suite).unwrap();
    let text = text.replacen(
        "name = \"ids\"",
        "name = \"ids\"\nlogit_tolerance = 100.0\nlogprob_tolerance = 100.0\nmin_agreement = 0.9375",
        1,
    );
    std::fs::write(&s.suite, &text).unwrap();
    assert_eq!(code(&check(&s, &[])), 0);
    std::fs::write(
        &s.suite,
        text.replace("min_agreement = 0.9375", "min_agreement = 0.94"),
    )
    .unwrap();
    assert_eq!(code(&check(&s, &[])), 1);
}

#[test]
fn tampered_logit_fails_beyond_the_tolerance_only() {
    let s = setup(SUITE);
    assert_eq!(code(&check(&s, &["--record"])), 0);
    let mut t = recorded(&s);
    let e = t["case"].as_array_mut().unwrap()[1]["expect"]
        .as_table_mut()
        .unwrap();
    let logits = e["logits"].as_array_mut().unwrap();
    let v = logits[3].as_float().unwrap();
    // bfloat16 tolerance is 0.5: 0.25 passes, 0.75 fails
    logits[3] = toml::Value::Float(v + 0.25);
    std::fs::write(&s.suite, toml::to_string(&t).unwrap()).unwrap();
    assert_eq!(code(&check(&s, &[])), 0);
    let e = t["case"].as_array_mut().unwrap()[1]["expect"]
        .as_table_mut()
        .unwrap();
    e["logits"].as_array_mut().unwrap()[3] = toml::Value::Float(v + 0.75);
    std::fs::write(&s.suite, toml::to_string(&t).unwrap()).unwrap();
    let out = check(&s, &["--json"]);
    assert_eq!(code(&out), 1);
    let r = json(&out);
    assert!(
        (r["cases"][1]["max_logit_diff"].as_f64().unwrap() - 0.75).abs() < 1e-3,
        "{r}"
    );
    // a per-case tolerance overrides the dtype's
    let text = std::fs::read_to_string(&s.suite).unwrap();
    let text = text.replacen("name = \"ids\"", "name = \"ids\"\nlogit_tolerance = 1.0", 1);
    std::fs::write(&s.suite, text).unwrap();
    assert_eq!(code(&check(&s, &[])), 0);
}

#[test]
fn malformed_suites_exit_2_naming_the_line() {
    for (text, line, what) in [
        (
            "[[case]]\nname = \"a\"\nprompt = \"x\"\ninput_ids = [1]\n",
            "line 2",
            "not both",
        ),
        (
            "name = \"s\"\n\n[[case]]\nname = \"a\"\nprompt = \"x\"\nmax_tokens = 3\n",
            "line 6",
            "max_tokens",
        ),
        ("[[case]]\nname = \"a\"\nprompt = \"x\n", "line 3", ""),
        ("[[case]]\nname = \"a\"\ninput_ids = [1, -2]\n", "line 3", ""),
        ("[speed]\ninput_ids = [1]\nrepeats = 0\n", "line 1", "repeats"),
        ("name = \"nothing\"\n", "", "nothing to check"),
    ] {
        let s = setup(text);
        let out = check(&s, &[]);
        assert_eq!(code(&out), 2, "{text}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(line) && err.contains(what), "{text}: {err}");
        assert!(err.contains("suite.toml"), "{err}");
    }
    // a missing suite file, a missing model, an engine without the trtllm backend
    let s = setup(SUITE);
    let out = cli_in(
        &s.cache,
        &["check", "--model", &model(), "--suite", "/nonexistent/suite.toml"],
    );
    assert_eq!(code(&out), 2);
    let out = cli_in(
        &s.cache,
        &[
            "check",
            "--model",
            "/nonexistent/model",
            "--suite",
            s.suite.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    // usage errors (clap) are 2 as well
    let out = cli_in(&s.cache, &["check", "--suite", s.suite.to_str().unwrap()]);
    assert_eq!(code(&out), 2);
    let out = check(&s, &["--against", "reference", "--record"]);
    assert_eq!(code(&out), 2);
    // a token id the model does not have
    let s = setup("[[case]]\nname = \"a\"\ninput_ids = [1, 5000]\n[case.expect]\noutput_ids = [1]\n");
    let out = check(&s, &[]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("out of range"), "{}", stderr(&out));
}

fn convert(cache: &Path, out: &Path, tp: &str) {
    let o = cli_in(
        cache,
        &[
            "convert",
            "--model",
            &model(),
            "--output",
            out.to_str().unwrap(),
            "--tp-size",
            tp,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn against_reference_tp2_matches_tp1() {
    let s = setup(SUITE);
    let tp1 = s.dir.join("tp1");
    let tp2 = s.dir.join("tp2");
    convert(&s.cache, &tp1, "1");
    convert(&s.cache, &tp2, "2");
    let out = cli_in(
        &s.cache,
        &[
            "check",
            "--model",
            tp2.to_str().unwrap(),
            "--suite",
            s.suite.to_str().unwrap(),
            "--against",
            "reference",
            "--reference-checkpoint",
            tp1.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    let r = json(&out);
    assert_eq!(r["mode"], "reference");
    // the greedy cases are compared, the sampled one skipped
    assert_eq!(
        (r["passed"].as_u64(), r["skipped"].as_u64()),
        (Some(2), Some(1)),
        "{r}"
    );
    let tol = r["tolerance"]["logit_abs"].as_f64().unwrap();
    for c in &r["cases"].as_array().unwrap()[..2] {
        assert!(c["max_logit_diff"].as_f64().unwrap() <= tol, "{c}");
        assert_eq!(c["agreement"], 1.0);
    }
    // the model against itself (reference checkpoint defaulted): exact
    let out = check(&s, &["--against", "reference", "--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(json(&out)["cases"][0]["max_logit_diff"].as_f64(), Some(0.0));
    // a different model as the reference: a usage error, not a regression
    let other = s.dir.join("other");
    let o = cli_in(
        &s.cache,
        &[
            "convert",
            "--model",
            common::model("mqa-tied-f16").to_str().unwrap(),
            "--output",
            other.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let sv = std::fs::read_to_string(common::model("mqa-tied-f16").join("config.json")).unwrap();
    let v: Value = serde_json::from_str(&sv).unwrap();
    let out = check(
        &s,
        &[
            "--against",
            "reference",
            "--reference-checkpoint",
            other.to_str().unwrap(),
        ],
    );
    if v["vocab_size"] != 101 {
        assert_eq!(code(&out), 2, "{}", stderr(&out));
    } else {
        assert_ne!(code(&out), 0);
    }
}

#[test]
fn speed_check_with_generous_baseline_and_record_speed() {
    let text = "[speed]\ninput_ids = [5, 6, 7]\nmax_new_tokens = 8\nwarmup = 1\nrepeats = 3\n\
                max_regression_pct = 50\ntokens_per_s = 0.001\nfirst_token_ms = 1000000.0\n";
    let s = setup(text);
    let out = check(&s, &["--json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let r = json(&out);
    let c = &r["cases"][0];
    assert_eq!(c["name"], "speed");
    assert_eq!(c["status"], "pass");
    assert_eq!(c["speed"]["repeats"], 3);
    assert!(c["speed"]["tokens_per_s"].as_f64().unwrap() > 0.001);
    // an impossible baseline fails (the comparison edges are unit-tested with injected numbers)
    std::fs::write(
        &s.suite,
        text.replace("tokens_per_s = 0.001", "tokens_per_s = 1e12"),
    )
    .unwrap();
    assert_eq!(code(&check(&s, &[])), 1);
    // --no-speed skips it
    assert_eq!(code(&check(&s, &["--no-speed"])), 0);
    // --record-speed writes measured baselines
    let out = check(&s, &["--record-speed"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let t = recorded(&s);
    let tps = t["speed"]["tokens_per_s"].as_float().unwrap();
    assert!(tps > 0.0 && tps < 1e12, "{tps}");
    assert!(t["speed"]["first_token_ms"].as_float().unwrap() < 1e6);
}

/// The shipped suites parse; the demo suite passes on the demo model.
#[test]
fn shipped_suites() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in ["demo-shakespeare.toml", "minitron-8b-base.toml"] {
        let path = root.join("tests/suites").join(name);
        let suite = trtllm_minitron::commands::check::suite::Suite::read(&path).unwrap();
        assert!(suite.cases.len() >= 5, "{name}");
        assert!(suite.speed.is_some(), "{name}");
    }
    let minitron = std::fs::read_to_string(root.join("tests/suites/minitron-8b-base.toml")).unwrap();
    assert!(minitron.contains("To be or not to be,"));
    let demo = fixtures().join("demo-shakespeare");
    assert!(
        demo.join("config.json").is_file(),
        "the demo model is committed, but {} has no config.json",
        demo.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let suite = root.join("tests/suites/demo-shakespeare.toml");
    let out = cli_in(
        tmp.path(),
        &[
            "check",
            "--model",
            demo.to_str().unwrap(),
            "--suite",
            suite.to_str().unwrap(),
            "--json",
        ],
    );
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    let r = json(&out);
    assert_eq!(r["failed"], 0);
    assert_eq!(r["skipped"], 0, "{r}");

    // the same suite with one expected token changed fails there, and only there
    let mut t: toml::Table = toml::from_str(&std::fs::read_to_string(&suite).unwrap()).unwrap();
    let e = t["case"].as_array_mut().unwrap()[0]["expect"]
        .as_table_mut()
        .unwrap();
    let ids = e["output_ids"].as_array_mut().unwrap();
    let old = ids[10].as_integer().unwrap();
    ids[10] = toml::Value::Integer((old + 1) % 2048);
    let tampered = tmp.path().join("tampered.toml");
    std::fs::write(&tampered, toml::to_string(&t).unwrap()).unwrap();
    let out = cli_in(
        tmp.path(),
        &[
            "check",
            "--model",
            demo.to_str().unwrap(),
            "--suite",
            tampered.to_str().unwrap(),
            "--no-speed",
            "--json",
        ],
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let r = json(&out);
    assert_eq!(r["failed"], 1, "{r}");
    assert_eq!(r["cases"][0]["divergence"]["position"], 10);
    assert_eq!(r["cases"][0]["divergence"]["got"], old);
}

/// Engines need the TensorRT-LLM backend (not in this build) and, for
/// `--against reference`, their build manifest: both are infrastructure errors.
#[test]
fn engines_without_the_trtllm_backend_exit_2() {
    let s = setup(SUITE);
    let engine = s.dir.join("engine");
    std::fs::create_dir(&engine).unwrap();
    std::fs::write(
        engine.join("config.json"),
        r#"{"pretrained_config": {"dtype": "bfloat16"}, "build_config": {}}"#,
    )
    .unwrap();
    let e = engine.to_str().unwrap();
    let suite = s.suite.to_str().unwrap();
    let out = cli_in(&s.cache, &["check", "--engine", e, "--suite", suite]);
    assert_eq!(code(&out), 2);
    if !cfg!(feature = "trtllm") {
        assert!(stderr(&out).contains("TensorRT-LLM backend"), "{}", stderr(&out));
    }
    let out = cli_in(
        &s.cache,
        &["check", "--engine", e, "--suite", suite, "--against", "reference"],
    );
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("trtllm-minitron-build.json"),
        "{}",
        stderr(&out)
    );
}
