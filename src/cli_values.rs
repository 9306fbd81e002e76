//! Parsers for command-line values (clap `value_parser`) that more than one
//! command's flags use: a bad value is refused while the command line is read,
//! with clap's usage error and exit status 2, before any work starts. The
//! rules of sampling options live with them (`generation::sampling::arg`).

/// A count that must be at least 1 (sizes, limits, jobs).
pub fn at_least_one(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("expected a whole number of at least 1".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_start_at_one() {
        assert_eq!(at_least_one("8"), Ok(8));
        assert_eq!(at_least_one("0"), Err("must be at least 1".into()));
        assert!(at_least_one("-1").is_err() && at_least_one("two").is_err());
    }
}
