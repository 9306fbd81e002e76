//! The results of a `check` run: a table for people, JSON and JUnit XML for CI.

use std::fmt::{self, Write as _};
use std::path::Path;

use serde::Serialize;

use super::compare::{Divergence, SpeedMeasurement, Status, Verdict};
use super::suite::Tolerance;

#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    pub name: String,
    #[serde(flatten)]
    pub verdict: Verdict,
    /// The divergence's tokens, decoded (when there is a tokenizer).
    pub expected_text: Option<String>,
    pub got_text: Option<String>,
    pub expected_ids: Vec<u32>,
    pub output_ids: Vec<u32>,
    pub speed: Option<SpeedMeasurement>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub suite: String,
    pub suite_file: String,
    pub model: String,
    pub backend: String,
    /// "golden" (recorded expectations) or "reference" (`--against reference`).
    pub mode: String,
    pub reference_checkpoint: Option<String>,
    pub dtype: String,
    pub tolerance: Tolerance,
    pub cases: Vec<CaseResult>,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub seconds: f64,
}

impl CheckReport {
    pub fn count(&mut self) {
        let n = |s| self.cases.iter().filter(|c| c.verdict.status == s).count();
        (self.passed, self.failed, self.skipped) = (n(Status::Pass), n(Status::Fail), n(Status::Skip));
    }

    pub fn ok(&self) -> bool {
        self.failed == 0
    }

    /// Writes [`CheckReport::junit`] to `path`, creating its directory.
    pub fn write_junit(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, self.junit())
    }

    /// JUnit XML: one testsuite, one testcase per case (failure / skipped elements).
    pub fn junit(&self) -> String {
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            x,
            "<testsuites name=\"trtllm-minitron check\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{:.3}\">",
            self.cases.len(),
            self.failed,
            self.skipped,
            self.seconds
        );
        let _ = writeln!(
            x,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{:.3}\">",
            escape(&self.suite),
            self.cases.len(),
            self.failed,
            self.skipped,
            self.seconds
        );
        let _ = writeln!(x, "    <properties>");
        for (k, v) in [
            ("model", self.model.as_str()),
            ("backend", &self.backend),
            ("mode", &self.mode),
            ("dtype", &self.dtype),
            ("suite_file", &self.suite_file),
        ] {
            let _ = writeln!(x, "      <property name=\"{k}\" value=\"{}\"/>", escape(v));
        }
        let _ = writeln!(x, "    </properties>");
        for c in &self.cases {
            let _ = write!(
                x,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                escape(&self.suite),
                escape(&c.name),
                c.seconds
            );
            let v = &c.verdict;
            match v.status {
                Status::Pass => {
                    let _ = writeln!(x, "/>");
                }
                Status::Skip => {
                    let _ = writeln!(
                        x,
                        ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                        escape(&v.message)
                    );
                }
                Status::Fail => {
                    let mut body = v.message.clone();
                    if let Some(d) = &v.divergence
                        && c.speed.is_none()
                    {
                        body.push_str(&format!(
                            "\nfirst divergence: {}",
                            divergence_text(d, c.expected_text.as_deref(), c.got_text.as_deref())
                        ));
                        body.push_str(&format!(
                            "\nexpected ids: {:?}\noutput ids:   {:?}",
                            c.expected_ids, c.output_ids
                        ));
                    }
                    let _ = writeln!(
                        x,
                        ">\n      <failure message=\"{}\" type=\"regression\">{}</failure>\n    </testcase>",
                        escape(&v.message),
                        escape(&body)
                    );
                }
            }
        }
        let _ = writeln!(x, "  </testsuite>\n</testsuites>");
        x
    }
}

/// "@12: expected 342 \" \" got 14 \"\\n\"".
pub fn divergence_text(d: &Divergence, expected: Option<&str>, got: Option<&str>) -> String {
    let side = |id: Option<u32>, text: Option<&str>| match (id, text) {
        (Some(id), Some(t)) => format!("{id} {t:?}"),
        (Some(id), None) => id.to_string(),
        (None, _) => "(end)".into(),
    };
    format!(
        "@{}: expected {} got {}",
        d.position,
        side(d.expected, expected),
        side(d.got, got)
    )
}

/// Escapes text for XML attributes and character data. Characters XML 1.0 cannot
/// hold at all (most control characters) become U+FFFD.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// The table: case, status, agreement, first divergence (both tokens), max logit diff.
impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "suite {} on {} ({} backend, {}, {}): logit tol {}, log-prob tol {}",
            self.suite,
            self.model,
            self.backend,
            self.dtype,
            if self.mode == "reference" {
                "against the reference runtime".to_string()
            } else {
                "recorded expectations".to_string()
            },
            self.tolerance.logit_abs,
            self.tolerance.logprob_abs
        )?;
        let width = self
            .cases
            .iter()
            .map(|c| c.name.chars().count())
            .max()
            .unwrap_or(4)
            .max(4);
        writeln!(
            f,
            "{:<width$}  {:<6}  {:>7}  {:<40}  {:>14}",
            "case", "status", "agree", "first divergence", "max logit diff"
        )?;
        for c in &self.cases {
            let v = &c.verdict;
            let status = match v.status {
                Status::Pass => "pass",
                Status::Fail => "FAIL",
                Status::Skip => "skip",
            };
            let div = match &v.divergence {
                _ if c.speed.is_some() => String::new(),
                Some(d) => divergence_text(d, c.expected_text.as_deref(), c.got_text.as_deref()),
                None => "-".into(),
            };
            let agree = if c.speed.is_some() || v.status == Status::Skip {
                String::new()
            } else {
                format!("{:.1}%", v.agreement * 100.0)
            };
            let diff = v
                .max_logit_diff
                .map(|d| format!("{d:.4}"))
                .unwrap_or_else(|| "-".into());
            writeln!(
                f,
                "{:<width$}  {status:<6}  {agree:>7}  {div:<40}  {diff:>14}",
                c.name
            )?;
            if !v.message.is_empty() {
                writeln!(f, "{:<width$}    {}", "", v.message)?;
            }
        }
        writeln!(
            f,
            "{} passed, {} failed, {} skipped in {:.1} s",
            self.passed, self.failed, self.skipped, self.seconds
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_handles_markup_and_control_characters() {
        assert_eq!(escape("a<b>&\"'\u{1}"), "a&lt;b&gt;&amp;&quot;&apos;\u{FFFD}");
        assert_eq!(escape("x\ny"), "x&#10;y");
    }
}
