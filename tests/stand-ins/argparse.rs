//! Command lines read the way Python's `argparse` reads them (CPython
//! `Lib/argparse.py`, `ArgumentParser.parse_args`), for a parser made only of
//! `--long` options as `trtllm-build`'s is. What the stand-in keeps of it:
//!
//! - `--name value` and `--name=value`; a unique prefix of a long option is
//!   that option (`allow_abbrev`, on by default), several matches are an
//!   "ambiguous option" error;
//! - `store_true` switches take no value (`--switch=x` is an error);
//! - `nargs="+"` takes every following argument up to the next option;
//! - a value that looks like an option is not taken as a value, except a
//!   negative number (the parser has no option that looks like one);
//! - `type=int` is Python's `int()` of the text, `choices` are checked after
//!   the type; a bad value ends with "argument --name: ..." at once;
//! - anything not an option, or an unknown option, is collected and reported
//!   as "unrecognized arguments: ..." after the whole line is read;
//! - errors print the usage line and `PROG: error: MESSAGE` on stderr and
//!   exit with status 2; `-h`/`--help` (added by default) prints usage and
//!   exits 0.

use std::collections::HashMap;

/// How an option takes its value.
#[derive(Clone, Copy)]
pub enum Takes {
    /// `action="store_true"`.
    Switch,
    /// One value, converted by a [`Type`].
    One(Type),
    /// `nargs="+"`: one or more values.
    Many(Type),
}

/// `type=` and `choices=` of one option.
#[derive(Clone, Copy)]
pub enum Type {
    Str,
    Int,
    Choices(&'static [&'static str]),
    /// A `type=` function that may raise `ArgumentTypeError` (its message is shown as is).
    Custom(fn(&str) -> Result<String, String>),
}

pub struct Opt {
    /// Every spelling, e.g. `["--max_seq_len", "--max_decoder_seq_len"]`.
    pub names: &'static [&'static str],
    /// Where the value goes (`dest`).
    pub dest: &'static str,
    pub takes: Takes,
}

/// A value as parsed.
#[derive(Debug, Clone)]
pub enum Value {
    Switch,
    One(String),
    // (The values are kept as parsed; no stand-in reads them.)
    Many(#[allow(dead_code)] Vec<String>),
}

/// The options given (`argparse.Namespace` without the defaults: the caller
/// supplies those, so an option with `default=argparse.SUPPRESS` is simply absent).
#[derive(Debug, Default)]
pub struct Given(HashMap<&'static str, Value>);

impl Given {
    pub fn has(&self, dest: &str) -> bool {
        self.0.contains_key(dest)
    }

    pub fn switch(&self, dest: &str) -> bool {
        matches!(self.0.get(dest), Some(Value::Switch))
    }

    pub fn text(&self, dest: &str) -> Option<&str> {
        match self.0.get(dest) {
            Some(Value::One(v)) => Some(v),
            _ => None,
        }
    }

    pub fn text_or<'a>(&'a self, dest: &str, default: &'a str) -> &'a str {
        self.text(dest).unwrap_or(default)
    }

    /// An `int` option (already checked by the parser).
    pub fn int(&self, dest: &str) -> Option<i64> {
        self.text(dest).and_then(|v| python_int(v).ok())
    }

    pub fn int_or(&self, dest: &str, default: i64) -> i64 {
        self.int(dest).unwrap_or(default)
    }
}

/// Parses `argv` (without the program name) as `argparse` would, or prints
/// the error and exits with status 2.
pub fn parse_args(prog: &str, opts: &[Opt], argv: &[String]) -> Given {
    match parse(opts, argv) {
        Ok(Some(given)) => given,
        Ok(None) => {
            println!("{}", usage(prog, opts));
            std::process::exit(0);
        }
        Err(message) => {
            eprintln!("{}\n{prog}: error: {message}", usage(prog, opts));
            std::process::exit(2);
        }
    }
}

fn usage(prog: &str, opts: &[Opt]) -> String {
    let mut line = format!("usage: {prog} [-h]");
    for o in opts {
        let name = o.names[0];
        let meta = o.dest.to_uppercase();
        match o.takes {
            Takes::Switch => line.push_str(&format!(" [{name}]")),
            Takes::One(_) => line.push_str(&format!(" [{name} {meta}]")),
            Takes::Many(_) => line.push_str(&format!(" [{name} {meta} [{meta} ...]]")),
        }
    }
    line
}

/// `Ok(None)` for `--help`.
fn parse(opts: &[Opt], argv: &[String]) -> Result<Option<Given>, String> {
    let mut given = Given::default();
    let mut unrecognized: Vec<String> = Vec::new();
    let mut i = 0;
    while i < argv.len() {
        let arg = &argv[i];
        i += 1;
        if arg == "--" {
            unrecognized.extend(argv[i..].iter().cloned());
            break;
        }
        if !looks_like_option(arg) {
            unrecognized.push(arg.clone());
            continue;
        }
        let (name, explicit) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let opt = match find(opts, name)? {
            Found::Help => return Ok(None),
            Found::Opt(o) => o,
            Found::Nothing => {
                unrecognized.push(arg.clone());
                continue;
            }
        };
        let shown = opt.names.join("/");
        let value = match opt.takes {
            Takes::Switch => {
                if let Some(v) = explicit {
                    return Err(format!("argument {shown}: ignored explicit argument '{v}'"));
                }
                Value::Switch
            }
            Takes::One(ty) => {
                let text = match explicit {
                    Some(v) => v,
                    None if i < argv.len() && !looks_like_option(&argv[i]) => {
                        i += 1;
                        argv[i - 1].clone()
                    }
                    None => return Err(format!("argument {shown}: expected one argument")),
                };
                Value::One(convert(ty, &text, &shown)?)
            }
            Takes::Many(ty) => {
                let mut values = Vec::new();
                if let Some(v) = explicit {
                    values.push(v);
                } else {
                    while i < argv.len() && !looks_like_option(&argv[i]) {
                        values.push(argv[i].clone());
                        i += 1;
                    }
                }
                if values.is_empty() {
                    return Err(format!("argument {shown}: expected at least one argument"));
                }
                Value::Many(
                    values
                        .iter()
                        .map(|v| convert(ty, v, &shown))
                        .collect::<Result<_, _>>()?,
                )
            }
        };
        // A repeated option: the last one wins (the default `store` action).
        given.0.insert(opt.dest, value);
    }
    if !unrecognized.is_empty() {
        return Err(format!("unrecognized arguments: {}", unrecognized.join(" ")));
    }
    Ok(Some(given))
}

/// An option string, as opposed to a value: starts with `-`, and is not a
/// negative number (argparse's `_negative_number_matcher`).
fn looks_like_option(arg: &str) -> bool {
    if !arg.starts_with('-') || arg == "-" {
        return false;
    }
    let rest = &arg[1..];
    let negative_number = !rest.is_empty()
        && (rest.chars().all(|c| c.is_ascii_digit())
            || rest.split_once('.').is_some_and(|(a, b)| {
                a.chars().all(|c| c.is_ascii_digit())
                    && !b.is_empty()
                    && b.chars().all(|c| c.is_ascii_digit())
            }));
    !negative_number
}

enum Found<'a> {
    Opt(&'a Opt),
    /// `-h`/`--help`, which argparse adds to every parser.
    Help,
    Nothing,
}

/// The exact option, else the only one `name` abbreviates.
fn find<'a>(opts: &'a [Opt], name: &str) -> Result<Found<'a>, String> {
    let candidates = opts
        .iter()
        .flat_map(|o| o.names.iter().map(move |n| (Found::Opt(o), *n)))
        .chain([(Found::Help, "-h"), (Found::Help, "--help")]);
    let mut prefixed = Vec::new();
    for (found, n) in candidates {
        if n == name {
            return Ok(found);
        }
        if name.starts_with("--") && n.starts_with(name) {
            prefixed.push((found, n));
        }
    }
    match prefixed.len() {
        0 => Ok(Found::Nothing),
        1 => Ok(prefixed.remove(0).0),
        _ => Err(format!(
            "ambiguous option: {name} could match {}",
            prefixed.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
        )),
    }
}

fn convert(ty: Type, text: &str, shown: &str) -> Result<String, String> {
    match ty {
        Type::Str => Ok(text.to_string()),
        Type::Int => python_int(text)
            .map(|n| n.to_string())
            .map_err(|()| format!("argument {shown}: invalid int value: '{text}'")),
        Type::Choices(choices) => {
            if choices.contains(&text) {
                Ok(text.to_string())
            } else {
                let listed: Vec<String> = choices.iter().map(|c| format!("'{c}'")).collect();
                Err(format!(
                    "argument {shown}: invalid choice: '{text}' (choose from {})",
                    listed.join(", ")
                ))
            }
        }
        Type::Custom(f) => f(text).map_err(|message| format!("argument {shown}: {message}")),
    }
}

/// Python's `int(text)`: surrounding whitespace, an optional sign, decimal
/// digits with single underscores between them.
pub fn python_int(text: &str) -> Result<i64, ()> {
    let t = text.trim();
    let (sign, digits) = match t.strip_prefix('-') {
        Some(d) => (-1, d),
        None => (1, t.strip_prefix('+').unwrap_or(t)),
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
        || !digits.chars().all(|c| c.is_ascii_digit() || c == '_')
    {
        return Err(());
    }
    digits
        .replace('_', "")
        .parse::<i64>()
        .map(|n| sign * n)
        .map_err(|_| ())
}
