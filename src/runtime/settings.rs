//! The reference runtime's environment variables, parsed and checked in one
//! place: `TRTLLM_MINITRON_THREADS`, `TRTLLM_MINITRON_ISA` and
//! `TRTLLM_MINITRON_MATMUL`. The commands that run the reference runtime
//! call `check` first, so a misspelt value is refused before any work
//! (a value silently ignored would leave a user benchmarking something other
//! than what they asked for). The runtime itself, reached as a library, warns
//! and goes on with the default.
//!
//! Values are trimmed and case-insensitive; an empty value counts as unset.

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
    read(THREADS, parse_threads)
}

pub fn isa_cap() -> Result<IsaCap, EnvError> {
    read(ISA, parse_isa_cap)
}

pub fn products() -> Result<Products, EnvError> {
    read(MATMUL, parse_products)
}

/// A value that is a bad input to a library call: warned about (once per
/// variable: the callers keep what they got in a `OnceLock`) and ignored.
pub fn or_warn<T>(result: Result<T, EnvError>, default: T) -> T {
    result.unwrap_or_else(|e| {
        eprintln!("warning: {e}; ignored");
        default
    })
}

/// `parse` of the variable's value, trimmed and lower-cased (`None` when
/// unset or empty); an error quotes the value as it was set. A value that is
/// not Unicode is kept (lossily) so that it is refused, not taken as unset.
fn read<T>(var: &str, parse: fn(Option<&str>) -> Result<T, EnvError>) -> Result<T, EnvError> {
    let raw = std::env::var_os(var);
    parse(raw.as_deref().and_then(normalise).as_deref()).map_err(|e| EnvError {
        value: raw.map_or(e.value.clone(), |r| r.to_string_lossy().into_owned()),
        ..e
    })
}

fn normalise(raw: &std::ffi::OsStr) -> Option<String> {
    let value = raw.to_string_lossy().trim().to_ascii_lowercase();
    (!value.is_empty()).then_some(value)
}

fn parse_threads(value: Option<&str>) -> Result<Option<usize>, EnvError> {
    let Some(v) = value else { return Ok(None) };
    match v.parse::<usize>() {
        Ok(n) if n > 0 => Ok(Some(n)),
        _ => Err(EnvError {
            var: THREADS,
            value: v.to_owned(),
            expected: "a whole number of threads, at least 1 (unset: one per CPU)",
        }),
    }
}

fn parse_isa_cap(value: Option<&str>) -> Result<IsaCap, EnvError> {
    match value {
        None | Some("avx512") => Ok(IsaCap::None),
        Some("avx2") => Ok(IsaCap::Avx2),
        Some("generic") => Ok(IsaCap::Generic),
        Some(v) => Err(EnvError {
            var: ISA,
            value: v.to_owned(),
            expected: "avx512, avx2 or generic (a cap on the CPU kernels; unset: the best this CPU has)",
        }),
    }
}

fn parse_products(value: Option<&str>) -> Result<Products, EnvError> {
    match value {
        None | Some("f32") => Ok(Products::F32),
        Some("bf16") => Ok(Products::Bf16),
        Some(v) => Err(EnvError {
            var: MATMUL,
            value: v.to_owned(),
            expected: "f32 (the default) or bf16",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_means_the_defaults() {
        assert_eq!(parse_threads(None), Ok(None));
        assert_eq!(parse_isa_cap(None), Ok(IsaCap::None));
        assert_eq!(parse_products(None), Ok(Products::F32));
    }

    #[test]
    fn the_documented_values_are_taken() {
        assert_eq!(parse_threads(Some("3")), Ok(Some(3)));
        assert_eq!(parse_isa_cap(Some("avx2")), Ok(IsaCap::Avx2));
        assert_eq!(parse_isa_cap(Some("generic")), Ok(IsaCap::Generic));
        assert_eq!(parse_isa_cap(Some("avx512")), Ok(IsaCap::None));
        assert_eq!(parse_products(Some("bf16")), Ok(Products::Bf16));
        assert_eq!(parse_products(Some("f32")), Ok(Products::F32));
    }

    #[test]
    fn other_values_are_refused_with_what_was_expected() {
        let e = parse_isa_cap(Some("avx1")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment variable TRTLLM_MINITRON_ISA=\"avx1\": expected avx512, avx2 or generic \
             (a cap on the CPU kernels; unset: the best this CPU has)"
        );
        for bad in ["0", "-1", "two", "1.5"] {
            assert_eq!(parse_threads(Some(bad)).unwrap_err().var, THREADS, "{bad}");
        }
        assert_eq!(parse_products(Some("fp16")).unwrap_err().var, MATMUL);
    }

    #[test]
    fn values_are_trimmed_and_case_insensitive_and_empty_is_unset() {
        let norm = |s: &str| normalise(std::ffi::OsStr::new(s));
        assert_eq!(parse_products(norm(" BF16 ").as_deref()), Ok(Products::Bf16));
        assert_eq!(parse_isa_cap(norm("AVX2").as_deref()), Ok(IsaCap::Avx2));
        assert_eq!(norm("  "), None);
    }
}
