//! The `grpc-timeout` header: read as the gRPC over HTTP/2 protocol defines
//! it (at most 8 ASCII digits, then one unit of `H`, `M`, `S`, `m`, `u` or
//! `n`), capped at [`MAX_CLIENT_DEADLINE`], and written back for the
//! upstream. Nothing here can overflow: the largest value, 99,999,999 hours,
//! fits a `Duration` many times over, and it is capped before any `Instant`
//! is computed from it.

use std::time::Duration;

use http::HeaderValue;

/// The longest deadline a client may ask for. A stream asked to run longer
/// ends at this deadline and the browser reconnects; a unary call is bounded
/// much sooner by the upstream timeout anyway.
pub const MAX_CLIENT_DEADLINE: Duration = Duration::from_secs(24 * 3600);

/// Why a `grpc-timeout` value was refused.
pub const MALFORMED: &str =
    "grpc-timeout must be 1 to 8 digits followed by a unit (H, M, S, m, u or n)";

/// The deadline `value` asks for, at most [`MAX_CLIENT_DEADLINE`].
pub fn parse(value: &[u8]) -> Result<Duration, &'static str> {
    let Some((&unit, digits)) = value.split_last() else {
        return Err(MALFORMED);
    };
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(MALFORMED);
    }
    let amount = digits
        .iter()
        .fold(0u64, |amount, digit| amount * 10 + u64::from(digit - b'0'));
    let deadline = match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return Err(MALFORMED),
    };
    Ok(deadline.min(MAX_CLIENT_DEADLINE))
}

/// `grpc-timeout` for `deadline`, in milliseconds (at most 8 digits).
pub fn header(deadline: Duration) -> HeaderValue {
    let millis = deadline.as_millis().clamp(1, 99_999_999);
    HeaderValue::from_str(&format!("{millis}m")).expect("digits and a unit are a header value")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn timeouts_are_read_in_every_unit() {
        assert_eq!(parse(b"2S"), Ok(Duration::from_secs(2)));
        assert_eq!(parse(b"150m"), Ok(Duration::from_millis(150)));
        assert_eq!(parse(b"1H"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse(b"3M"), Ok(Duration::from_secs(180)));
        assert_eq!(parse(b"7u"), Ok(Duration::from_micros(7)));
        assert_eq!(parse(b"9n"), Ok(Duration::from_nanos(9)));
    }

    #[test]
    fn malformed_timeouts_are_refused() {
        for value in [
            &b""[..],
            b"x",
            b"S",
            b"123456789S",
            b"99999999999999999999H",
            b"-1S",
            b"+1S",
            b"1 S",
            b"1s",
            b"1.5S",
        ] {
            assert_eq!(parse(value), Err(MALFORMED), "{value:?}");
        }
    }

    #[test]
    fn the_longest_timeouts_are_capped() {
        assert_eq!(parse(b"99999999H"), Ok(MAX_CLIENT_DEADLINE));
        assert_eq!(parse(b"25H"), Ok(MAX_CLIENT_DEADLINE));
    }

    #[test]
    fn the_header_written_back_is_read_the_same() {
        for deadline in [
            Duration::from_millis(1),
            Duration::from_secs(10),
            MAX_CLIENT_DEADLINE,
        ] {
            assert_eq!(parse(header(deadline).as_bytes()), Ok(deadline));
        }
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panic_and_within_the_cap(value in proptest::collection::vec(any::<u8>(), 0..24)) {
            if let Ok(deadline) = parse(&value) {
                prop_assert!(deadline <= MAX_CLIENT_DEADLINE);
            }
        }

        #[test]
        fn valid_timeouts_are_read_exactly(amount in 0u64..=99_999_999, unit in prop::sample::select(vec!['H', 'M', 'S', 'm', 'u', 'n'])) {
            let exact = match unit {
                'H' => Duration::from_secs(amount * 3600),
                'M' => Duration::from_secs(amount * 60),
                'S' => Duration::from_secs(amount),
                'm' => Duration::from_millis(amount),
                'u' => Duration::from_micros(amount),
                _ => Duration::from_nanos(amount),
            };
            let parsed = parse(format!("{amount}{unit}").as_bytes());
            prop_assert_eq!(parsed, Ok(exact.min(MAX_CLIENT_DEADLINE)));
        }
    }
}
