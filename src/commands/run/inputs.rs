//! Where prompts come from: arguments, `--prompt-file` (one per line, or JSONL
//! objects with "prompt"/"text" or "input_ids"), standard input (`-`), or
//! `--input-ids 5,17,42` (no tokenizer needed).

use std::io::BufRead;
use std::path::Path;

use serde_json::Value;

use crate::error::{Error, IoContext, Result};

#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    Text(String),
    Ids(Vec<u32>),
}

/// Parses `5,17,42` (spaces allowed); the error says what is wrong, naming nothing.
pub fn token_ids(text: &str) -> std::result::Result<Vec<u32>, String> {
    let ids = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u32>()
                .map_err(|_| format!("\"{s}\" is not a token id (expected e.g. 5,17,42)"))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    if ids.is_empty() {
        return Err("no token ids given".into());
    }
    Ok(ids)
}

/// Reads prompts from lines: JSONL objects when a line starts with `{`, else the
/// line itself. Blank lines are skipped.
pub fn read_prompt_lines(reader: impl BufRead, origin: &Path) -> Result<Vec<Prompt>> {
    let mut prompts = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.at(origin)?;
        let where_ = format!("{} line {}", origin.display(), n + 1);
        let trimmed = line.trim_end_matches(['\r', '\n']);
        if trimmed.trim().is_empty() {
            continue;
        }
        if trimmed.trim_start().starts_with('{') {
            let v: Value = serde_json::from_str(trimmed)
                .map_err(|e| Error::InvalidInput(format!("{where_}: not valid JSON: {e}")))?;
            prompts.push(prompt_from_json(&v, &where_)?);
        } else {
            prompts.push(Prompt::Text(trimmed.to_string()));
        }
    }
    Ok(prompts)
}

fn prompt_from_json(v: &Value, where_: &str) -> Result<Prompt> {
    if let Some(text) = v.get("prompt").or_else(|| v.get("text")).and_then(Value::as_str) {
        return Ok(Prompt::Text(text.to_string()));
    }
    if let Some(ids) = v.get("input_ids").and_then(Value::as_array) {
        let ids = ids
            .iter()
            .map(|i| i.as_u64().and_then(|i| u32::try_from(i).ok()))
            .collect::<Option<Vec<u32>>>()
            .ok_or_else(|| Error::InvalidInput(format!("{where_}: input_ids must be a list of token ids")))?;
        if ids.is_empty() {
            return Err(Error::InvalidInput(format!("{where_}: input_ids is empty")));
        }
        return Ok(Prompt::Ids(ids));
    }
    Err(Error::InvalidInput(format!(
        "{where_}: expected an object with \"prompt\" (or \"text\") or \"input_ids\""
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_jsonl_mix() {
        let text = "To be or not to be,\n\n{\"prompt\": \"ROMEO:\"}\n{\"input_ids\": [5, 17]}\n";
        let got = read_prompt_lines(text.as_bytes(), Path::new("p.txt")).unwrap();
        assert_eq!(
            got,
            vec![
                Prompt::Text("To be or not to be,".into()),
                Prompt::Text("ROMEO:".into()),
                Prompt::Ids(vec![5, 17])
            ]
        );
        let err = read_prompt_lines("{\"x\": 1}\n".as_bytes(), Path::new("p.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("p.jsonl line 1"), "{err}");
    }

    #[test]
    fn ids_are_checked() {
        assert_eq!(token_ids("5, 17,42").unwrap(), vec![5, 17, 42]);
        assert!(token_ids("5,x").unwrap_err().contains("\"x\""));
        assert!(token_ids("").is_err());
    }
}
