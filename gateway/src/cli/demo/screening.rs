//! The demo's screening: GH's customs screens the example declarations against what GH holds
//! and may show it; NG then publishes intelligence about a vessel of a declaration screened
//! before it existed, and GH's customs receives an alert.

use cordon_proto::v1::alert_service_client::AlertServiceClient;
use cordon_proto::v1::screening_service_client::ScreeningServiceClient;
use cordon_proto::v1::{AlertSubscribeRequest, ScreenRequest};

use super::*;

const DECLARATIONS: &str = include_str!("../../../demo/declarations.jsonl");

/// NG's intelligence about the vessel of the declaration GH found clean: GREEN, without a
/// source, so that NG's policy shares it with GH's gateway.
const NEWS: &str = r#"{"tlp":"TLP_GREEN","severity":"SEVERITY_HIGH","confidence":70,"validFrom":"2026-11-25T00:00:00Z","tags":["diversion"],"narrative":"MV Clean Water left its declared route for Lome; crates transferred at anchor.","vessel":{"imo":"9876543","name":"MV CLEAN WATER","flag":"PA"}}"#;

#[derive(Debug, Serialize)]
pub(super) struct ScreeningReport {
    pub results: Vec<ScreenedItem>,
    /// The alert GH's customs received after NG's new indicator.
    pub alert: AlertItem,
}

#[derive(Debug, Serialize)]
pub(super) struct ScreenedItem {
    pub reference: String,
    pub level: String,
    pub score: u32,
    /// `declaration field = value -> [n] indicator kind of originator (method)`, where `[n]`
    /// is the indicator's place in the demo's published list.
    pub matches: Vec<String>,
    pub reasons: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct AlertItem {
    pub reference: String,
    /// The level when it was screened, and with the new intelligence.
    pub level_before: String,
    pub level: String,
    pub score: u32,
    pub matched: String,
    pub originator: String,
}

/// `[n]` for the n-th published indicator (the numbers the demo prints), else its id.
fn label(published: &[PublishedItem], id: &str) -> String {
    match published.iter().position(|item| item.id == id) {
        Some(index) => format!("[{}]", index + 1),
        None => id.to_string(),
    }
}

/// The board's explanation with every published indicator's id replaced by its number.
fn relabel(published: &[PublishedItem], explanation: &str) -> String {
    published
        .iter()
        .enumerate()
        .fold(explanation.to_string(), |text, (index, item)| {
            text.replace(
                &format!("indicator {}", item.id),
                &format!("[{}]", index + 1),
            )
        })
}

pub(super) async fn screening_part(
    members: &[Member],
    agencies: &Path,
    published: &[PublishedItem],
) -> Result<ScreeningReport> {
    let member = |id: &str| {
        members
            .iter()
            .find(|member| member.id == id)
            .context(id.to_string())
    };
    let (ghana, nigeria) = (member("GH")?, member("NG")?);
    let customs = agency_dir(agencies, "GH/customs")?;
    let (declarations, _) =
        crate::cli::read_declarations(DECLARATIONS.as_bytes(), "demo declarations")?;
    let mut screening =
        ScreeningServiceClient::new(crate::cli::client::channel(&ghana.endpoint, &customs).await?);
    let screened = screening
        .screen(ScreenRequest { declarations })
        .await
        .map_err(crate::cli::status_error)?
        .into_inner()
        .results;
    let results: Vec<ScreenedItem> = screened
        .iter()
        .map(|result| {
            let printed = crate::cli::screen::result_json(result);
            ScreenedItem {
                reference: result.reference.clone(),
                level: printed["level"].as_str().unwrap_or_default().to_string(),
                score: result.score,
                matches: result
                    .matches
                    .iter()
                    .map(|found| {
                        format!(
                            "{} = {} -> {} {} of {} ({})",
                            found.declaration_field,
                            found.value,
                            label(published, &found.indicator_id),
                            found.kind,
                            found.originator,
                            crate::cli::screen::match_json(found)["method"]
                                .as_str()
                                .unwrap_or_default()
                        )
                    })
                    .collect(),
                reasons: result
                    .reasons
                    .iter()
                    .map(|reason| relabel(published, &reason.explanation))
                    .collect(),
            }
        })
        .collect();
    let clean = results
        .iter()
        .find(|item| item.matches.is_empty())
        .context("a declaration that matched nothing")?;

    // NG publishes; GH's gateway receives it from NG and raises the alert.
    let (news, _) = crate::cli::read_indicators(NEWS.as_bytes(), "NG's news")?;
    publish(nigeria, agencies, "NG/customs", news).await?;
    let mut alerts =
        AlertServiceClient::new(crate::cli::client::channel(&ghana.endpoint, &customs).await?);
    let mut stream = alerts
        .subscribe(AlertSubscribeRequest {
            after: 0,
            follow: true,
            limit: 1,
        })
        .await
        .map_err(crate::cli::status_error)?
        .into_inner();
    let alert = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .context("waiting for the alert at GH")?
        .map_err(crate::cli::status_error)?
        .context("the alert stream ended")?;
    let printed = crate::cli::screen::alert_json(&alert);
    let found = alert.r#match.as_ref().context("the alert's match")?;
    let alert = AlertItem {
        reference: alert.reference.clone(),
        level_before: results
            .iter()
            .find(|item| item.reference == alert.reference)
            .map(|item| item.level.clone())
            .unwrap_or_default(),
        level: printed["level"].as_str().unwrap_or_default().to_string(),
        score: alert.score,
        matched: format!(
            "{} = {} -> {}",
            found.declaration_field, found.value, found.kind
        ),
        originator: found.originator.clone(),
    };
    if alert.reference != clean.reference {
        bail!(
            "the alert names {}, not the declaration screened clean ({})",
            alert.reference,
            clean.reference
        );
    }
    Ok(ScreeningReport { results, alert })
}

pub(super) fn print_screening(report: &ScreeningReport) {
    println!();
    println!("screening at GH (GH/customs screens the example declarations):");
    for item in &report.results {
        println!(
            "  {:<12} {:<10} score {:>3}, {} match(es)",
            item.reference,
            item.level,
            item.score,
            item.matches.len()
        );
        for found in &item.matches {
            println!("      {found}");
        }
        for reason in &item.reasons {
            println!("      why: {reason}");
        }
    }
    let alert = &report.alert;
    println!(
        "  then {} publishes intelligence matching {} (screened {}): alert at GH/customs, now {} (score {}): {}",
        alert.originator,
        alert.reference,
        alert.level_before,
        alert.level,
        alert.score,
        alert.matched
    );
}
