//! `cordon publish` and `cordon subscribe`: indicators in and events out, one JSON object per
//! line.

use std::io::{BufRead, Write};

use anyhow::{Context, Result, bail};
use cordon_proto::v1::{Indicator, IndicatorKind, PublishRequest, SubscribeRequest};
use tonic_types::StatusExt;

use super::client::indicator_client;
use super::{Connection, status_error};

/// Reads indicators, one JSON object per non-empty line; a parse error names the line.
pub fn read_indicators(reader: impl BufRead, source: &str) -> Result<(Vec<Indicator>, Vec<usize>)> {
    let mut indicators = Vec::new();
    let mut line_numbers = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {source}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let indicator: Indicator =
            super::parse_json_line(&line, source, index + 1, "cordon.v1.Indicator")?;
        indicators.push(indicator);
        line_numbers.push(index + 1);
    }
    Ok((indicators, line_numbers))
}

pub(super) async fn publish(connection: &Connection, file: &str, circle: String) -> Result<()> {
    let (indicators, line_numbers) = if file == "-" {
        read_indicators(std::io::stdin().lock(), "standard input")?
    } else {
        let opened = std::fs::File::open(file).with_context(|| format!("opening {file}"))?;
        read_indicators(std::io::BufReader::new(opened), file)?
    };
    if indicators.is_empty() {
        bail!("{file}: no indicators to publish");
    }
    let mut client = indicator_client(&connection.endpoint, &connection.identity).await?;
    let batches = batches(
        &indicators,
        cordon_indicator::Limits::default().max_batch,
        cordon_indicator::Limits::default().max_message_bytes - REQUEST_MARGIN,
    );
    if batches.len() > 1 {
        eprintln!(
            "publishing {} indicators in {} batches (at most {} indicators and {} MiB each); \
             each batch is stored or refused on its own",
            indicators.len(),
            batches.len(),
            cordon_indicator::Limits::default().max_batch,
            cordon_indicator::Limits::default().max_message_bytes >> 20,
        );
    }
    let mut stdout = std::io::stdout().lock();
    for range in batches {
        let first_line_index = range.start;
        let response = match client
            .publish(PublishRequest {
                indicators: indicators[range].to_vec(),
                circle: circle.clone(),
            })
            .await
        {
            Ok(response) => response.into_inner(),
            Err(status) => {
                if let Some(bad_request) = status.get_details_bad_request() {
                    eprintln!("batch rejected, nothing from it was stored:");
                    for violation in bad_request.field_violations {
                        let line = item_index(&violation.field, "indicators[")
                            .and_then(|index| line_numbers.get(first_line_index + index))
                            .map(|line| format!(" (line {line})"))
                            .unwrap_or_default();
                        eprintln!("  {}{line}: {}", violation.field, violation.description);
                    }
                }
                return Err(status_error(status));
            }
        };
        for accepted in response.accepted {
            writeln!(
                stdout,
                "{}",
                serde_json::json!({"id": accepted.id, "sequence": accepted.sequence, "warnings": accepted.warnings})
            )?;
        }
    }
    Ok(())
}

/// Room left in a request for what surrounds its indicators (the circle name, framing).
const REQUEST_MARGIN: usize = 64 * 1024;

/// `indicators` cut into consecutive batches of at most `count` indicators whose encoded
/// request stays within `bytes` (an indicator larger than that alone goes in a batch of its
/// own, for the gateway to refuse by name).
fn batches(indicators: &[Indicator], count: usize, bytes: usize) -> Vec<std::ops::Range<usize>> {
    use prost::Message;
    let mut batches = Vec::new();
    let mut start = 0;
    let mut size = 0;
    for (index, indicator) in indicators.iter().enumerate() {
        // The field's tag and length prefix, at most 1 + 10 bytes.
        let item = indicator.encoded_len() + 11;
        if index > start && (index - start >= count || size + item > bytes) {
            batches.push(start..index);
            start = index;
            size = 0;
        }
        size += item;
    }
    if start < indicators.len() {
        batches.push(start..indicators.len());
    }
    batches
}

/// The index of the item a field path names, after `prefix` (`indicators[`).
pub(super) fn item_index(field: &str, prefix: &str) -> Option<usize> {
    field.strip_prefix(prefix)?.split(']').next()?.parse().ok()
}

pub(super) async fn subscribe(
    connection: &Connection,
    after: u64,
    limit: Option<u64>,
    follow: bool,
    kinds: &[String],
) -> Result<()> {
    let kinds = kinds
        .iter()
        .map(|name| {
            IndicatorKind::from_str_name(&format!("INDICATOR_KIND_{}", to_screaming_snake(name)))
                .map(|kind| kind as i32)
                .with_context(|| format!("--kind: {name:?} is not an indicator kind"))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut client = indicator_client(&connection.endpoint, &connection.identity).await?;
    let request = SubscribeRequest {
        after,
        follow,
        kinds,
        limit: limit.unwrap_or(0),
    };
    let mut stream = client
        .subscribe(request)
        .await
        .map_err(status_error)?
        .into_inner();
    let mut stdout = std::io::stdout().lock();
    while let Some(event) = stream.message().await.map_err(status_error)? {
        writeln!(stdout, "{}", serde_json::to_string(&event)?)?;
        stdout.flush()?;
    }
    Ok(())
}

/// `endUserCertificate` -> `END_USER_CERTIFICATE`.
fn to_screaming_snake(name: &str) -> String {
    let mut out = String::new();
    for character in name.chars() {
        if character.is_ascii_uppercase() && !out.is_empty() {
            out.push('_');
        }
        out.push(character.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_map_to_enum_values() {
        for (name, kind) in [
            ("vessel", IndicatorKind::Vessel),
            ("endUserCertificate", IndicatorKind::EndUserCertificate),
            ("route", IndicatorKind::Route),
        ] {
            let parsed = IndicatorKind::from_str_name(&format!(
                "INDICATOR_KIND_{}",
                to_screaming_snake(name)
            ));
            assert_eq!(parsed, Some(kind), "{name}");
        }
        assert_eq!(
            IndicatorKind::from_str_name(&format!("INDICATOR_KIND_{}", to_screaming_snake("boat"))),
            None
        );
    }

    #[test]
    fn item_indices_come_from_field_paths() {
        assert_eq!(
            item_index("indicators[12].vessel.imo", "indicators["),
            Some(12)
        );
        assert_eq!(item_index("indicators", "indicators["), None);
        assert_eq!(
            item_index("declarations[3].reference", "declarations["),
            Some(3)
        );
    }

    #[test]
    fn parse_errors_name_the_field() {
        for (text, expected) in [
            (
                r#"{"tlp":"TLP_CLEAR","confidence":-5}"#,
                "line 1: confidence:",
            ),
            (r#"{"validFrom":"2026-11-"}"#, "line 1: validFrom:"),
            (r#"{"vessel":{"imo":7}}"#, "line 1: vessel.imo:"),
            (r#"{"tags":["a", 3]}"#, "line 1: tags[1]:"),
            (r#"{"tlp":"TLP_CLEAR"} trailing"#, "line 1:"),
        ] {
            let error = read_indicators(text.as_bytes(), "x.jsonl").unwrap_err();
            let message = format!("{error:#}");
            assert!(
                message.contains(&format!("x.jsonl {expected}")),
                "{text}: {message}"
            );
        }
    }

    #[test]
    fn batches_are_cut_by_count_and_by_size() {
        use prost::Message;
        let sized = |narrative: usize| Indicator {
            narrative: "x".repeat(narrative),
            ..Indicator::default()
        };
        let small: Vec<Indicator> = (0..5).map(|_| sized(10)).collect();
        assert_eq!(batches(&small, 2, 1 << 20), vec![0..2, 2..4, 4..5]);
        assert_eq!(batches(&small, 1000, 1 << 20), vec![0..5]);
        // 900 indicators of 6 KB: under the count, over 4 MiB.
        let large: Vec<Indicator> = (0..900).map(|_| sized(6_000)).collect();
        let limit = 4 * 1024 * 1024 - REQUEST_MARGIN;
        let cut = batches(&large, 1000, limit);
        assert!(cut.len() >= 2, "{cut:?}");
        assert_eq!(cut.first().map(|range| range.start), Some(0));
        assert_eq!(cut.last().map(|range| range.end), Some(900));
        for pair in cut.windows(2) {
            assert_eq!(pair[0].end, pair[1].start, "{cut:?}");
        }
        for range in &cut {
            let request = PublishRequest {
                indicators: large[range.clone()].to_vec(),
                circle: String::new(),
            };
            assert!(request.encoded_len() <= limit, "{range:?}");
        }
        // One indicator over the size goes alone.
        let huge = vec![sized(10), sized(2_000), sized(10)];
        assert_eq!(batches(&huge, 1000, 1_000), vec![0..1, 1..2, 2..3]);
        assert!(batches(&[], 10, 10).is_empty());
    }

    #[test]
    fn read_indicators_names_the_bad_line() {
        let text = "{\"tlp\":\"TLP_CLEAR\"}\n\n{\"tlp\": 7,,}\n";
        let error = read_indicators(text.as_bytes(), "input.jsonl").unwrap_err();
        assert!(
            format!("{error:#}").contains("input.jsonl line 3"),
            "{error:#}"
        );
        let (indicators, lines) =
            read_indicators("{\"tlp\":\"TLP_CLEAR\"}\n\n{}\n".as_bytes(), "x").unwrap();
        assert_eq!(indicators.len(), 2);
        assert_eq!(lines, vec![1, 3]);
    }
}
