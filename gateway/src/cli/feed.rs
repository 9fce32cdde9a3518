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
        let indicator: Indicator = serde_json::from_str(&line).with_context(|| {
            format!(
                "{source} line {}: not a cordon.v1.Indicator in proto3 JSON",
                index + 1
            )
        })?;
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
    let batch_size = cordon_indicator::Limits::default().max_batch;
    let mut stdout = std::io::stdout().lock();
    for (chunk_index, chunk) in indicators.chunks(batch_size).enumerate() {
        let first_line_index = chunk_index * batch_size;
        let response = match client
            .publish(PublishRequest {
                indicators: chunk.to_vec(),
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
