//! A model's chat template (Hugging Face: `chat_template` in
//! `tokenizer_config.json`, or a `chat_template.jinja` file beside it): Jinja
//! that turns a list of messages into the prompt text, rendered with
//! minijinja set up as transformers sets up Jinja2 for these templates
//! (`trim_blocks` and `lstrip_blocks`, loop controls, `raise_exception`,
//! Python string and dict methods such as `.strip()` and `.items()`).

use std::path::Path;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{Environment, ErrorKind, Value, context};
use serde::Serialize;

/// The file transformers writes a chat template to, beside `tokenizer_config.json`.
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";

/// Template name in the compiled environment.
const NAME: &str = "chat";

#[derive(Debug, thiserror::Error)]
pub enum ChatTemplateError {
    /// The template does not compile; `origin` names the file (and field).
    #[error("{origin}: the chat template is not valid Jinja: {message}")]
    Syntax { origin: String, message: String },
    /// Rendering failed, e.g. the template's own `raise_exception` (a role
    /// order it does not accept).
    #[error("the chat template refused these messages: {0}")]
    Render(String),
}

/// One chat message as templates expect it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

/// Where a tokenizer's chat template came from, and its text.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateSource {
    /// E.g. `.../tokenizer_config.json (chat_template)`.
    pub origin: String,
    pub text: String,
}

/// Finds the chat template beside a tokenizer: `chat_template.jinja`, else
/// `chat_template` in `tokenizer_config.json` (a string, or a list of named
/// templates, of which "default" or else the first is taken).
pub fn find(dir: &Path, config: Option<&serde_json::Value>, config_path: &Path) -> Option<TemplateSource> {
    let file = dir.join(CHAT_TEMPLATE_FILE);
    if let Ok(text) = std::fs::read_to_string(&file) {
        return Some(TemplateSource {
            origin: file.display().to_string(),
            text,
        });
    }
    let value = config?.get("chat_template")?;
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(named) => {
            let template = |entry: &serde_json::Value| entry.get("template")?.as_str().map(str::to_string);
            named
                .iter()
                .find(|e| e.get("name").and_then(|n| n.as_str()) == Some("default"))
                .or_else(|| named.first())
                .and_then(template)?
        }
        _ => return None,
    };
    Some(TemplateSource {
        origin: format!("{} (chat_template)", config_path.display()),
        text,
    })
}

/// A compiled chat template with the tokenizer's special tokens.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles `source`; `bos_token` and `eos_token` are the texts templates
    /// see as `bos_token` and `eos_token`.
    pub fn new(source: &TemplateSource, bos_token: &str, eos_token: &str) -> Result<Self, ChatTemplateError> {
        let syntax_error = |e: minijinja::Error| ChatTemplateError::Syntax {
            origin: source.origin.clone(),
            message: describe(&e),
        };
        let mut env = Environment::new();
        // transformers renders with Jinja2's trim_blocks and lstrip_blocks.
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(syntax_error)?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<Value, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_template_owned(NAME, source.text.clone())
            .map_err(syntax_error)?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// The prompt text for `messages`; `add_generation_prompt` appends what
    /// starts the assistant's turn.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, ChatTemplateError> {
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| ChatTemplateError::Render(describe(&e)))?;
        template
            .render(context! {
                messages => Serde(messages),
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            })
            .map_err(|e| ChatTemplateError::Render(describe(&e)))
    }
}

/// A minijinja error's message without its debug dump; a template's own
/// `raise_exception` message as it was written.
fn describe(e: &minijinja::Error) -> String {
    match (e.kind(), e.detail()) {
        (ErrorKind::InvalidOperation, Some(detail)) => detail.to_string(),
        _ => match e.line() {
            Some(line) => format!("{} (line {line})", e.detail().unwrap_or(&e.kind().to_string())),
            None => e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> TemplateSource {
        TemplateSource {
            origin: "tokenizer_config.json (chat_template)".into(),
            text: text.into(),
        }
    }

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    #[test]
    fn renders_with_python_methods_and_block_trimming() {
        let t = ChatTemplate::new(
            &source(
                "{{ bos_token }}{% for m in messages %}\n    {% if m['role'] == 'user' %}\nU: {{ m['content'].strip() }}\n{% else %}\nA: {{ m.content }}{{ eos_token }}\n{% endif %}\n{% endfor %}\n{% if add_generation_prompt %}A:{% endif %}",
            ),
            "<s>",
            "</s>",
        )
        .unwrap();
        let out = t
            .render(
                &[
                    msg("user", "  hi  "),
                    msg("assistant", "hello"),
                    msg("user", "bye"),
                ],
                true,
            )
            .unwrap();
        assert_eq!(out, "<s>U: hi\nA: hello</s>\nU: bye\nA:");
    }

    #[test]
    fn raise_exception_is_the_templates_message() {
        let t = ChatTemplate::new(
            &source("{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversations must start with a user message') }}{% endif %}ok"),
            "",
            "",
        )
        .unwrap();
        let err = t.render(&[msg("assistant", "x")], true).unwrap_err().to_string();
        assert_eq!(
            err,
            "the chat template refused these messages: Conversations must start with a user message"
        );
        assert_eq!(t.render(&[msg("user", "x")], true).unwrap(), "ok");
    }

    #[test]
    fn a_broken_template_names_its_origin() {
        let err = ChatTemplate::new(&source("{% for m in messages %}"), "", "")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("tokenizer_config.json (chat_template): the chat template is not valid Jinja"),
            "{err}"
        );
    }

    #[test]
    fn finds_named_templates_and_the_jinja_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = serde_json::json!({"chat_template": [
            {"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]});
        let cfg = dir.path().join("tokenizer_config.json");
        assert_eq!(find(dir.path(), Some(&config), &cfg).unwrap().text, "D");
        assert!(find(dir.path(), Some(&serde_json::json!({})), &cfg).is_none());
        std::fs::write(dir.path().join(CHAT_TEMPLATE_FILE), "J").unwrap();
        assert_eq!(find(dir.path(), Some(&config), &cfg).unwrap().text, "J");
    }
}
