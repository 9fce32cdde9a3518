//! The gateway's one clock and its conversions between Unix microseconds (as stored),
//! protobuf timestamps (as sent) and RFC 3339 (as policies and people read time).
//!
//! Conversions saturate: a timestamp from the network never overflows, and a clock before 1970
//! reads as 1970.

use std::time::{SystemTime, UNIX_EPOCH};

use pbjson_types::Timestamp;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now, in Unix microseconds.
pub fn now_micros() -> i64 {
    micros_of_system_time(SystemTime::now())
}

/// Now, as a protobuf timestamp.
pub fn now_timestamp() -> Timestamp {
    timestamp_of(SystemTime::now())
}

/// Now, in RFC 3339 (`input.context.now`).
pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

pub fn timestamp_of(at: SystemTime) -> Timestamp {
    let elapsed = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX),
        nanos: elapsed.subsec_nanos() as i32,
    }
}

pub fn timestamp_from_micros(micros: i64) -> Timestamp {
    Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

/// Microseconds since the epoch, saturating.
pub fn micros_of(timestamp: &Timestamp) -> i64 {
    timestamp
        .seconds
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(timestamp.nanos / 1000))
}

fn micros_of_system_time(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |elapsed| {
        i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX)
    })
}

/// RFC 3339 of a time in Unix microseconds; empty if it is out of range.
pub fn rfc3339_of_micros(micros: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Parses an RFC 3339 time (`2026-11-25T00:00:00Z`).
pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    Some(Timestamp {
        seconds: at.unix_timestamp(),
        nanos: at.nanosecond() as i32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip_and_saturate() {
        for micros in [0, 1, 999_999, 1_790_000_000_123_456, -1, -1_500_000] {
            assert_eq!(
                micros_of(&timestamp_from_micros(micros)),
                micros,
                "{micros}"
            );
        }
        let huge = Timestamp {
            seconds: i64::MAX,
            nanos: 999_999_999,
        };
        assert_eq!(micros_of(&huge), i64::MAX);
        let at = parse_rfc3339("2026-11-25T00:00:00.5Z").unwrap();
        assert_eq!(micros_of(&at), 1_795_564_800_500_000);
        assert_eq!(
            rfc3339_of_micros(1_795_564_800_500_000),
            "2026-11-25T00:00:00.5Z"
        );
        assert_eq!(parse_rfc3339("25/11/2026"), None);
        let before = now_micros();
        assert!(micros_of(&now_timestamp()) >= before);
    }
}
