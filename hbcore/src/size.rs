//! Human sizes: `4096`, `64KiB`, `1MiB`, `1GiB` (binary units, case-insensitive).

use std::fmt;

/// A size string that could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid size '{input}': {why}; write a number of bytes with an optional unit B, KiB, MiB, GiB or TiB (e.g. 4096, 64KiB, 1GiB)")]
pub struct SizeError {
    /// What was given.
    pub input: String,
    /// What is wrong with it.
    pub why: &'static str,
}

const UNITS: [(&str, u64); 9] = [
    ("b", 1),
    ("k", 1 << 10),
    ("kib", 1 << 10),
    ("m", 1 << 20),
    ("mib", 1 << 20),
    ("g", 1 << 30),
    ("gib", 1 << 30),
    ("t", 1 << 40),
    ("tib", 1 << 40),
];

/// Parses a size such as `64KiB` into bytes.
pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    let err = |why| SizeError {
        input: input.to_string(),
        why,
    };
    let s = input.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(err("it does not start with a number"));
    }
    let number: u64 = digits.parse().map_err(|_| err("the number is too large"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let multiplier = if unit.is_empty() {
        1
    } else {
        UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, m)| *m)
            .ok_or_else(|| err("unknown unit"))?
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| err("the size is too large"))
}

/// A byte count shown with the largest binary unit that divides it exactly
/// (or with one decimal when none does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (name, unit) in NAMES {
            if self.0 >= unit {
                return if self.0 % unit == 0 {
                    write!(f, "{}{name}", self.0 / unit)
                } else {
                    write!(f, "{:.1}{name}", self.0 as f64 / unit as f64)
                };
            }
        }
        write!(f, "{}B", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("2gib"), Ok(2 << 30));
        assert_eq!(parse_size("8M"), Ok(8 << 20));
        assert_eq!(parse_size(" 512 B "), Ok(512));
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        for bad in [
            "",
            "KiB",
            "12XB",
            "-5",
            "1.5GiB",
            "99999999999999999999",
            "99999999TiB",
        ] {
            let e = parse_size(bad).expect_err(bad);
            assert!(e.to_string().contains("e.g. 4096, 64KiB"), "{e}");
        }
    }

    #[test]
    fn displays_exact_units() {
        assert_eq!(Bytes(4096).to_string(), "4KiB");
        assert_eq!(Bytes(1 << 30).to_string(), "1GiB");
        assert_eq!(Bytes(1536).to_string(), "1.5KiB");
        assert_eq!(Bytes(100).to_string(), "100B");
    }
}
