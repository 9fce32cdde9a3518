//! `cordon screen`, `cordon alerts` and `cordon watch …`: screening declarations, following
//! alerts and keeping a watchlist, as an agency of the gateway's member.

use std::io::{BufRead, Write};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use cordon_proto::v1::alert_service_client::AlertServiceClient;
use cordon_proto::v1::screening_service_client::ScreeningServiceClient;
use cordon_proto::v1::{
    AddWatchRequest, Alert, AlertSubscribeRequest, Declaration, ListWatchesRequest, MatchMethod,
    RemoveWatchRequest, RiskLevel, RiskReason, ScreenRequest, ScreeningMatch, ScreeningResult, Tlp,
};
use serde_json::{Value, json};
use tonic_types::StatusExt;

use super::client::channel;
use super::{Connection, status_error};

/// Declarations sent per call by default.
pub const DEFAULT_BATCH: usize = 100;

/// Reads declarations, one JSON object per non-empty line; a parse error names the line.
pub fn read_declarations(
    reader: impl BufRead,
    source: &str,
) -> Result<(Vec<Declaration>, Vec<usize>)> {
    let mut declarations = Vec::new();
    let mut line_numbers = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {source}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let declaration: Declaration =
            super::parse_json_line(&line, source, index + 1, "cordon.v1.Declaration")?;
        declarations.push(declaration);
        line_numbers.push(index + 1);
    }
    Ok((declarations, line_numbers))
}

fn level_name(level: i32) -> &'static str {
    match RiskLevel::try_from(level).unwrap_or(RiskLevel::Unspecified) {
        RiskLevel::Low => "LOW",
        RiskLevel::Medium => "MEDIUM",
        RiskLevel::High => "HIGH",
        RiskLevel::Critical => "CRITICAL",
        RiskLevel::Unassessed | RiskLevel::Unspecified => "UNASSESSED",
    }
}

fn method_name(method: i32) -> &'static str {
    match MatchMethod::try_from(method).unwrap_or(MatchMethod::Unspecified) {
        MatchMethod::Exact => "exact",
        MatchMethod::Normalised => "normalised",
        MatchMethod::Fuzzy => "fuzzy",
        MatchMethod::Unspecified => "unspecified",
    }
}

/// The TLP as the indicator's JSON names it (`TLP_AMBER`).
fn tlp_name(tlp: i32) -> &'static str {
    Tlp::try_from(tlp).unwrap_or(Tlp::Unspecified).as_str_name()
}

/// A match in the CLI's output form.
pub fn match_json(found: &ScreeningMatch) -> Value {
    json!({
        "declarationField": found.declaration_field,
        "value": found.value,
        "indicatorId": found.indicator_id,
        "kind": found.kind,
        "indicatorField": found.indicator_field,
        "method": method_name(found.method),
        "similarity": found.similarity,
        "tlp": tlp_name(found.tlp),
        "originator": found.originator,
        "feature": found.feature,
    })
}

fn reasons_json(reasons: &[RiskReason]) -> Value {
    Value::Array(
        reasons
            .iter()
            .map(|reason| {
                json!({"flag": reason.flag, "weight": reason.weight, "explanation": reason.explanation})
            })
            .collect(),
    )
}

/// A screening result in the CLI's output form: `reference`, `score`, `level`, `matches`,
/// `reasons`, `policyRevision`, and the screening's `id` and `watchedUntil`.
pub fn result_json(result: &ScreeningResult) -> Value {
    json!({
        "reference": result.reference,
        "score": result.score,
        "level": level_name(result.level),
        "matches": result.matches.iter().map(match_json).collect::<Vec<_>>(),
        "reasons": reasons_json(&result.reasons),
        "policyRevision": result.policy_revision,
        "id": result.id,
        "watchedUntil": result.watched_until.map(|at| crate::clock::rfc3339_of_micros(crate::clock::micros_of(&at))),
    })
}

/// An alert in the CLI's output form.
pub fn alert_json(alert: &Alert) -> Value {
    json!({
        "cursor": alert.cursor,
        "at": alert.at.map(|at| crate::clock::rfc3339_of_micros(crate::clock::micros_of(&at))),
        "reference": alert.reference,
        "screeningId": alert.screening_id,
        "watchId": alert.watch_id,
        "match": alert.r#match.as_ref().map(match_json),
        "score": alert.score,
        "level": level_name(alert.level),
        "reasons": reasons_json(&alert.reasons),
    })
}

pub(super) async fn screen(connection: &Connection, file: &str, batch: usize) -> Result<()> {
    if batch == 0 || batch > crate::screening::check::MAX_DECLARATIONS_PER_CALL {
        bail!(
            "--batch: between 1 and {}",
            crate::screening::check::MAX_DECLARATIONS_PER_CALL
        );
    }
    let (declarations, line_numbers) = if file == "-" {
        read_declarations(std::io::stdin().lock(), "standard input")?
    } else {
        let opened = std::fs::File::open(file).with_context(|| format!("opening {file}"))?;
        read_declarations(std::io::BufReader::new(opened), file)?
    };
    if declarations.is_empty() {
        bail!("{file}: no declarations to screen");
    }
    let mut client =
        ScreeningServiceClient::new(channel(&connection.endpoint, &connection.identity).await?);
    let mut stdout = std::io::stdout().lock();
    for (chunk_index, chunk) in declarations.chunks(batch).enumerate() {
        let first = chunk_index * batch;
        let response = match client
            .screen(ScreenRequest {
                declarations: chunk.to_vec(),
            })
            .await
        {
            Ok(response) => response.into_inner(),
            Err(status) => {
                if let Some(bad_request) = status.get_details_bad_request() {
                    eprintln!("batch refused, nothing from it was screened:");
                    for violation in bad_request.field_violations {
                        let line = super::feed::item_index(&violation.field, "declarations[")
                            .and_then(|index| line_numbers.get(first + index))
                            .map(|line| format!(" (line {line})"))
                            .unwrap_or_default();
                        eprintln!("  {}{line}: {}", violation.field, violation.description);
                    }
                }
                return Err(status_error(status));
            }
        };
        for result in &response.results {
            writeln!(stdout, "{}", result_json(result))?;
        }
    }
    Ok(())
}

pub(super) async fn alerts(
    connection: &Connection,
    after: u64,
    follow: bool,
    limit: Option<u64>,
) -> Result<()> {
    let mut client =
        AlertServiceClient::new(channel(&connection.endpoint, &connection.identity).await?);
    let mut stream = client
        .subscribe(AlertSubscribeRequest {
            after,
            follow,
            limit: limit.unwrap_or(0),
        })
        .await
        .map_err(status_error)?
        .into_inner();
    let mut stdout = std::io::stdout().lock();
    while let Some(alert) = stream.message().await.map_err(status_error)? {
        writeln!(stdout, "{}", alert_json(&alert))?;
        stdout.flush()?;
    }
    Ok(())
}

/// `cordon watch …`: the agency's watchlist.
#[derive(Debug, Subcommand)]
pub enum WatchCommand {
    /// Watch an identifier or a name: new intelligence matching it raises an alert.
    Add {
        #[command(flatten)]
        connection: Connection,
        /// imo, mmsi, icao24, aircraft_registration, container, bill_of_lading, euc_number,
        /// iban, bic, lei, registration_number, weapon_serial, party_name or vessel_name.
        #[arg(long)]
        kind: String,
        #[arg(long)]
        value: String,
        #[arg(long, default_value = "")]
        label: String,
    },
    /// The agency's watchlist entries.
    List {
        #[command(flatten)]
        connection: Connection,
    },
    /// Stop watching an entry.
    Remove {
        #[command(flatten)]
        connection: Connection,
        #[arg(long)]
        id: String,
    },
}

pub(super) async fn watch(command: WatchCommand) -> Result<()> {
    let connection = match &command {
        WatchCommand::Add { connection, .. }
        | WatchCommand::List { connection }
        | WatchCommand::Remove { connection, .. } => connection.clone(),
    };
    let mut client =
        AlertServiceClient::new(channel(&connection.endpoint, &connection.identity).await?);
    let entry_json = |entry: &cordon_proto::v1::WatchEntry| {
        json!({
            "id": entry.id,
            "kind": entry.kind,
            "value": entry.value,
            "label": entry.label,
            "created": entry.created.map(|at| crate::clock::rfc3339_of_micros(crate::clock::micros_of(&at))),
        })
    };
    match command {
        WatchCommand::Add {
            kind, value, label, ..
        } => {
            let entry = client
                .add_watch(AddWatchRequest { kind, value, label })
                .await
                .map_err(status_error)?
                .into_inner();
            println!("{}", entry_json(&entry));
        }
        WatchCommand::List { .. } => {
            let entries = client
                .list_watches(ListWatchesRequest {})
                .await
                .map_err(status_error)?
                .into_inner()
                .entries;
            for entry in &entries {
                println!("{}", entry_json(entry));
            }
        }
        WatchCommand::Remove { id, .. } => {
            client
                .remove_watch(RemoveWatchRequest { id: id.clone() })
                .await
                .map_err(status_error)?;
            println!("{}", json!({"removed": id}));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_declarations_read_and_bad_lines_are_named() {
        let examples = include_str!("../../demo/declarations.jsonl");
        let (declarations, lines) = read_declarations(examples.as_bytes(), "x").unwrap();
        assert_eq!(declarations.len(), 4);
        assert_eq!(lines, [1, 2, 3, 4]);
        assert_eq!(declarations[0].reference, "GH-EXP-0001");
        let error = read_declarations(
            "{\"reference\": \"a\"}\n{\"goods\": 3}\n".as_bytes(),
            "d.jsonl",
        )
        .unwrap_err();
        assert!(format!("{error:#}").contains("d.jsonl line 2"), "{error:#}");
    }

    #[test]
    fn results_print_with_the_public_keys() {
        let result = ScreeningResult {
            reference: "GH-EXP-0001".into(),
            score: 50,
            level: RiskLevel::High as i32,
            matches: vec![ScreeningMatch {
                declaration_field: "transport.vessel.imo".into(),
                value: "9234563".into(),
                method: MatchMethod::Normalised as i32,
                similarity: 1.0,
                tlp: Tlp::Clear as i32,
                ..ScreeningMatch::default()
            }],
            ..ScreeningResult::default()
        };
        let printed = result_json(&result);
        for key in [
            "reference",
            "score",
            "level",
            "matches",
            "reasons",
            "policyRevision",
        ] {
            assert!(printed.get(key).is_some(), "{key} in {printed}");
        }
        assert_eq!(printed["level"], "HIGH");
        assert_eq!(printed["matches"][0]["method"], "normalised");
        assert_eq!(printed["matches"][0]["tlp"], "TLP_CLEAR");
        assert_eq!(
            result_json(&ScreeningResult::default())["level"],
            "UNASSESSED"
        );
    }
}
