//! `check --record`: writes expectations (and speed baselines) into a suite file,
//! keeping its comments and layout (`toml_edit`), atomically.

use std::path::Path;

use toml_edit::{Array, DocumentMut, Item, Table, value};

use super::compare::SpeedMeasurement;
use super::suite::{Expect, Suite};
use crate::error::{Error, IoContext, Result};

fn floats(xs: &[f32]) -> Array {
    xs.iter()
        .map(|&x| x as f64)
        .map(|x| (x * 1e4).round() / 1e4)
        .collect()
}

/// Returns `text` with `cases[i]` (when `Some`) as the `expect` table of the i-th
/// `[[case]]`, and the speed baselines set from `speed`.
pub fn update_text(
    text: &str,
    cases: Option<&[Option<Expect>]>,
    speed: Option<&SpeedMeasurement>,
) -> Result<String> {
    let mut doc: DocumentMut = text
        .parse()
        .map_err(|e| Error::InvalidInput(format!("suite file: {e}")))?;
    if let Some(cases) = cases
        && let Some(tables) = doc.get_mut("case").and_then(Item::as_array_of_tables_mut)
    {
        for (table, expect) in tables.iter_mut().zip(cases) {
            let Some(e) = expect else { continue };
            let mut t = Table::new();
            t.insert(
                "output_ids",
                value(e.output_ids.iter().map(|&i| i as i64).collect::<Array>()),
            );
            if let Some(text) = &e.text {
                t.insert("text", value(text.as_str()));
            }
            if let Some(l) = &e.logits {
                t.insert("logits", value(floats(l)));
            }
            if let Some(l) = &e.logprobs {
                t.insert("logprobs", value(floats(l)));
            }
            table.insert("expect", Item::Table(t));
        }
    }
    if let Some(m) = speed
        && let Some(s) = doc.get_mut("speed").and_then(Item::as_table_mut)
    {
        s.insert("tokens_per_s", value((m.tokens_per_s * 10.0).round() / 10.0));
        s.insert(
            "first_token_ms",
            value((m.first_token_ms * 100.0).round() / 100.0),
        );
    }
    Ok(doc.to_string())
}

/// Updates the suite file in place (through a temporary sibling and a rename),
/// after checking the result still parses as a suite.
pub fn update_file(
    path: &Path,
    cases: Option<&[Option<Expect>]>,
    speed: Option<&SpeedMeasurement>,
) -> Result<()> {
    let text = std::fs::read_to_string(path).at(path)?;
    let new = update_text(&text, cases, speed)?;
    Suite::parse(&new, path)
        .map_err(|e| Error::InvalidOutput(format!("recorded suite does not parse: {e}")))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "suite.toml".into());
    let tmp = path.with_file_name(format!(".{name}.recording"));
    std::fs::write(&tmp, new).at(&tmp)?;
    std::fs::rename(&tmp, path).at(path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keeps_comments_and_round_trips() {
        let text = "# my suite\nname = \"x\"\n\n[[case]]\n# first\nname = \"a\"\ninput_ids = [1, 2]\n\n\
                    [[case]]\nname = \"b\"\ninput_ids = [3]\n[case.expect]\noutput_ids = [9]\n\n\
                    [speed]\ninput_ids = [1]\n";
        let e = Expect {
            output_ids: vec![4, 5],
            text: Some("a \"quoted\"\nline".into()),
            logits: Some(vec![1.23456, -2.0]),
            logprobs: Some(vec![-0.5, -0.25]),
        };
        let m = SpeedMeasurement {
            tokens_per_s: 123.456,
            first_token_ms: 7.891,
            repeats: 3,
        };
        let new = update_text(text, Some(&[Some(e.clone()), None]), Some(&m)).unwrap();
        assert!(new.contains("# my suite") && new.contains("# first"), "{new}");
        let s = Suite::parse(&new, Path::new("x.toml")).unwrap();
        assert_eq!(s.cases[0].expect.as_ref().unwrap().output_ids, vec![4, 5]);
        assert_eq!(s.cases[0].expect.as_ref().unwrap().text, e.text);
        assert_eq!(
            s.cases[0].expect.as_ref().unwrap().logits,
            Some(vec![1.2346, -2.0])
        );
        assert_eq!(s.cases[1].expect.as_ref().unwrap().output_ids, vec![9]);
        let sp = s.speed.unwrap();
        assert_eq!((sp.tokens_per_s, sp.first_token_ms), (Some(123.5), Some(7.89)));
    }
}
