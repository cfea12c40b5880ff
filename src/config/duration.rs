//! Human durations and sizes as they appear in the config file.

use std::time::Duration;

/// Parse `250ms`, `90s`, `15m`, `1h`, `7d`. Zero and bare numbers are
/// refused: a unit-less `30` is ambiguous and a zero timeout is a typo.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("duration `{text}` needs a unit (ms, s, m, h, d)"))?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("duration `{text}` must start with a whole number"))?;
    let millis_per = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "duration `{text}` has unknown unit `{unit}` (use ms, s, m, h or d)"
            ))
        }
    };
    let millis = n
        .checked_mul(millis_per)
        .ok_or_else(|| format!("duration `{text}` is too large"))?;
    if millis == 0 {
        return Err(format!("duration `{text}` must be greater than zero"));
    }
    Ok(Duration::from_millis(millis))
}

/// Parse `512KB`, `100MB`, `1GB` (powers of 1024) or a bare byte count.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("size `{text}` must start with a whole number"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" | "KiB" => 1 << 10,
        "MB" | "MiB" => 1 << 20,
        "GB" | "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "size `{text}` has unknown unit `{other}` (use B, KB, MB or GB)"
            ))
        }
    };
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| format!("size `{text}` is too large"))?;
    if bytes == 0 {
        return Err(format!("size `{text}` must be greater than zero"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
    }

    #[test]
    fn bad_durations_are_refused_with_a_reason() {
        for bad in [
            "30",
            "s",
            "0s",
            "1.5s",
            "10y",
            "-1s",
            "",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "`{bad}` should be refused");
        }
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("512KB"), Ok(512 * 1024));
        assert_eq!(parse_size("100MB"), Ok(100 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0MB").is_err(), "zero size should be refused");
        assert!(parse_size("1TB").is_err(), "unknown unit should be refused");
    }
}
