//! Timestamps as the contract writes them: UTC RFC 3339 with microseconds.

use chrono::{DateTime, SecondsFormat, Utc};

/// Formats an instant as `2026-11-21T11:12:14.123456Z`.
pub fn rfc3339_micros(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Now, formatted as [`rfc3339_micros`].
///
/// Called for every landed line (`_loaded_at`), so the text up to the second is formatted
/// once per second and thread, and only the microseconds are written each time.
pub fn now_rfc3339() -> String {
    let now = Utc::now();
    LAST_SECOND.with_borrow_mut(|(second, text)| {
        let micros = now.timestamp_subsec_micros();
        if *second != Some(now.timestamp()) || micros >= 1_000_000 {
            *text = rfc3339_micros(now);
            // The shortcut needs the fixed `YYYY-MM-DDTHH:MM:SS.ffffffZ` shape.
            *second = (text.len() == 27 && micros < 1_000_000).then(|| now.timestamp());
            return text.clone();
        }
        let mut line = String::with_capacity(27);
        line.push_str(&text[..20]);
        let mut digits = [b'0'; 6];
        let mut rest = micros;
        for digit in digits.iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        line.push_str(std::str::from_utf8(&digits).expect("ASCII digits"));
        line.push('Z');
        line
    })
}

thread_local! {
    /// The second last formatted on this thread, and its text.
    static LAST_SECOND: std::cell::RefCell<(Option<i64>, String)> = const { std::cell::RefCell::new((None, String::new())) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_seconds_format_like_chrono() {
        for _ in 0..3 {
            let before = Utc::now();
            let text = now_rfc3339();
            let after = Utc::now();
            let parsed = chrono::DateTime::parse_from_rfc3339(&text).unwrap().with_timezone(&Utc);
            assert!(before.timestamp_micros() <= parsed.timestamp_micros(), "{text}");
            assert!(parsed.timestamp_micros() <= after.timestamp_micros(), "{text}");
            assert_eq!(text, rfc3339_micros(parsed), "same shape as chrono's");
        }
    }
}
