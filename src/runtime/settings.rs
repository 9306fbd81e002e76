//! The reference runtime's environment variables, parsed and checked in one
//! place: `TRTLLM_MINITRON_THREADS`, `TRTLLM_MINITRON_ISA` and
//! `TRTLLM_MINITRON_MATMUL`. The commands that run the reference runtime
//! call `check` first, so a misspelt value is refused before any work
//! (a value silently ignored would leave a user benchmarking something other
//! than what they asked for). The runtime itself, reached as a library, warns
//! and goes on with the default.
//!
//! Values are trimmed and case-insensitive; an empty value counts as unset.

use std::ffi::OsStr;

pub const THREADS: &str = "TRTLLM_MINITRON_THREADS";
pub const ISA: &str = "TRTLLM_MINITRON_ISA";
pub const MATMUL: &str = "TRTLLM_MINITRON_MATMUL";

/// A runtime environment variable with a value it cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {var}={value:?}: expected {expected}")]
pub struct EnvError {
    pub var: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// The cap `TRTLLM_MINITRON_ISA` puts on the vector kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsaCap {
    /// Unset or `avx512`: the best the CPU has.
    None,
    Avx2,
    Generic,
}

/// Which products `TRTLLM_MINITRON_MATMUL` asks for (bf16 matrices only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Products {
    F32,
    Bf16,
}

/// Every runtime variable, checked: the first bad one as an error.
pub fn check() -> Result<(), EnvError> {
    threads()?;
    isa_cap()?;
    products()?;
    Ok(())
}

/// `TRTLLM_MINITRON_THREADS`: `None` when unset.
pub fn threads() -> Result<Option<usize>, EnvError> {
    parse_var(THREADS, std::env::var_os(THREADS).as_deref(), parse_threads)
}

pub fn isa_cap() -> Result<IsaCap, EnvError> {
    parse_var(ISA, std::env::var_os(ISA).as_deref(), parse_isa_cap)
}

pub fn products() -> Result<Products, EnvError> {
    parse_var(MATMUL, std::env::var_os(MATMUL).as_deref(), parse_products)
}

/// A value that is a bad input to a library call: warned about (once per
/// variable: the callers keep what they got in a `OnceLock`) and ignored.
pub fn or_warn<T>(result: Result<T, EnvError>, default: T) -> T {
    result.unwrap_or_else(|e| {
        eprintln!("warning: {e}; ignored");
        default
    })
}

/// Variable `var` set to `raw` (`None`: unset), parsed by `parse` trimmed
/// and lower-cased (`None` when unset or empty); the error quotes the value
/// as it was set and says what `parse` expected. A value that is not Unicode
/// is kept (lossily) so that it is refused, not taken as unset.
fn parse_var<T>(
    var: &'static str,
    raw: Option<&OsStr>,
    parse: fn(Option<&str>) -> Result<T, &'static str>,
) -> Result<T, EnvError> {
    let value = raw.map(|r| r.to_string_lossy());
    let normalised = value.as_deref().map(|v| v.trim().to_ascii_lowercase());
    parse(normalised.as_deref().filter(|v| !v.is_empty())).map_err(|expected| EnvError {
        var,
        value: value.unwrap_or_default().into_owned(),
        expected,
    })
}

fn parse_threads(value: Option<&str>) -> Result<Option<usize>, &'static str> {
    match value.map(str::parse::<usize>) {
        None => Ok(None),
        Some(Ok(n)) if n > 0 => Ok(Some(n)),
        Some(_) => Err("a whole number of threads, at least 1 (unset: one per CPU)"),
    }
}

fn parse_isa_cap(value: Option<&str>) -> Result<IsaCap, &'static str> {
    match value {
        None | Some("avx512") => Ok(IsaCap::None),
        Some("avx2") => Ok(IsaCap::Avx2),
        Some("generic") => Ok(IsaCap::Generic),
        Some(_) => Err("avx512, avx2 or generic (a cap on the CPU kernels; unset: the best this CPU has)"),
    }
}

fn parse_products(value: Option<&str>) -> Result<Products, &'static str> {
    match value {
        None | Some("f32") => Ok(Products::F32),
        Some("bf16") => Ok(Products::Bf16),
        Some(_) => Err("f32 (the default) or bf16"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `var` set to `value`, as `threads`/`isa_cap`/`products` read it.
    fn set<T>(
        var: &'static str,
        value: Option<&str>,
        parse: fn(Option<&str>) -> Result<T, &'static str>,
    ) -> Result<T, EnvError> {
        parse_var(var, value.map(OsStr::new), parse)
    }

    #[test]
    fn unset_means_the_defaults() {
        assert_eq!(set(THREADS, None, parse_threads), Ok(None));
        assert_eq!(set(ISA, None, parse_isa_cap), Ok(IsaCap::None));
        assert_eq!(set(MATMUL, None, parse_products), Ok(Products::F32));
    }

    #[test]
    fn the_documented_values_are_taken() {
        assert_eq!(set(THREADS, Some("3"), parse_threads), Ok(Some(3)));
        assert_eq!(set(ISA, Some("avx2"), parse_isa_cap), Ok(IsaCap::Avx2));
        assert_eq!(set(ISA, Some("generic"), parse_isa_cap), Ok(IsaCap::Generic));
        assert_eq!(set(ISA, Some("avx512"), parse_isa_cap), Ok(IsaCap::None));
        assert_eq!(set(MATMUL, Some("bf16"), parse_products), Ok(Products::Bf16));
        assert_eq!(set(MATMUL, Some("f32"), parse_products), Ok(Products::F32));
    }

    #[test]
    fn other_values_are_refused_with_what_was_expected() {
        let e = set(ISA, Some("avx1"), parse_isa_cap).unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment variable TRTLLM_MINITRON_ISA=\"avx1\": expected avx512, avx2 or generic \
             (a cap on the CPU kernels; unset: the best this CPU has)"
        );
        for bad in ["0", "-1", "two", "1.5"] {
            assert_eq!(
                set(THREADS, Some(bad), parse_threads).unwrap_err().var,
                THREADS,
                "{bad}"
            );
        }
        assert_eq!(set(MATMUL, Some("fp16"), parse_products).unwrap_err().var, MATMUL);
    }

    #[test]
    fn values_are_trimmed_and_case_insensitive_and_empty_is_unset() {
        assert_eq!(set(MATMUL, Some(" BF16 "), parse_products), Ok(Products::Bf16));
        assert_eq!(set(ISA, Some("AVX2"), parse_isa_cap), Ok(IsaCap::Avx2));
        assert_eq!(set(THREADS, Some("  "), parse_threads), Ok(None));
    }
}
