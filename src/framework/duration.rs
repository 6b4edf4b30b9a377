//! Durations as Terraform users write them in configuration: `60m`, `1h30m`, `900s`.

use std::time::Duration;

/// Parses hours, minutes and seconds (`h`, `m`, `s`, in any combination); `None` for anything else or zero.
pub fn parse(text: &str) -> Option<Duration> {
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let value: u64 = number.parse().ok()?;
        number.clear();
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total = total.checked_add(value.checked_mul(unit)?)?;
    }
    (number.is_empty() && total > 0).then(|| Duration::from_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_combine_and_garbage_is_refused() {
        assert_eq!(parse("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse("10"), None, "a unit is required");
        assert_eq!(parse("1d"), None);
        assert_eq!(parse("0m"), None);
    }
}
