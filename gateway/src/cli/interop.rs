//! `cordon import stix|misp` and `cordon export stix`: STIX 2.1 bundles and MISP events in and
//! out through the ordinary gRPC calls (Publish, Subscribe), mapped by [`cordon_stix`].

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use cordon_proto::v1::{Indicator, PublishRequest, SubscribeRequest, event};
use serde_json::{Value, json};

use super::Connection;
use super::client::indicator_client;
use super::status_error;
use tonic_types::StatusExt as _;

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Publish the indicators of a STIX 2.1 bundle (JSON): each `indicator` whose pattern
    /// compares SALW observable properties (`salw-vessel:imo = '...'`). Prints what was
    /// published and a report of every object that did not map.
    Stix {
        #[command(flatten)]
        connection: Connection,
        /// The bundle, or `-` for standard input.
        file: String,
    },
    /// Publish the mappable attributes and objects of a MISP event (its JSON export): IBAN and
    /// BIC attributes, bank-account and legal-entity objects, objects named after the SALW
    /// observables (`salw-vessel`...); `tlp:` tags give the TLP. Reports the rest.
    Misp {
        #[command(flatten)]
        connection: Connection,
        /// The event, or `-` for standard input.
        file: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// Write a STIX 2.1 bundle of what the gateway releases to this identity (a Subscribe
    /// from `--after`): each indicator, its observable and relationships, revoked if it was
    /// retracted, with Cordon's vocabulary and the originators' identities.
    Stix {
        #[command(flatten)]
        connection: Connection,
        /// Start after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Write the bundle here rather than to standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn read_json(file: &str) -> Result<Value> {
    let text = if file == "-" {
        std::io::read_to_string(std::io::stdin().lock())?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?
    };
    serde_json::from_str(&text).with_context(|| format!("{file}: not JSON"))
}

pub async fn import(command: ImportCommand) -> Result<()> {
    let (connection, file, import) = match command {
        ImportCommand::Stix { connection, file } => {
            let import = cordon_stix::read_bundle(&read_json(&file)?)
                .map_err(|error| anyhow::anyhow!("{file}: {error}"))?;
            (connection, file, import)
        }
        ImportCommand::Misp { connection, file } => {
            let import = cordon_stix::misp::read_event(&read_json(&file)?)
                .map_err(|error| anyhow::anyhow!("{file}: {error}"))?;
            (connection, file, import)
        }
    };
    let mut unmapped: Vec<Value> = import
        .unmapped
        .iter()
        .map(|u| json!({"id": u.id, "reason": u.reason}))
        .collect();
    let mut indicators = Vec::new();
    let mut sources = Vec::new();
    for imported in import.indicators {
        if imported.revoked {
            unmapped.push(json!({"id": imported.stix_id, "reason": "revoked: not published"}));
            continue;
        }
        match serde_json::from_value::<Indicator>(imported.indicator) {
            Ok(indicator) => {
                indicators.push(indicator);
                sources.push(imported.stix_id);
            }
            Err(error) => unmapped.push(json!({
                "id": imported.stix_id,
                "reason": format!("not a Cordon indicator: {error}"),
            })),
        }
    }
    let mut published = Vec::new();
    if !indicators.is_empty() {
        let mut client = indicator_client(&connection.endpoint, &connection.identity).await?;
        let response = match client
            .publish(PublishRequest {
                indicators,
                circle: String::new(),
            })
            .await
        {
            Ok(response) => response.into_inner(),
            Err(status) => {
                if let Some(bad_request) = status.get_details_bad_request() {
                    eprintln!("{file}: refused, nothing was stored:");
                    for violation in bad_request.field_violations {
                        let source = super::feed::item_index(&violation.field, "indicators[")
                            .and_then(|index| sources.get(index))
                            .map(|source| format!(" ({source})"))
                            .unwrap_or_default();
                        eprintln!("  {}{source}: {}", violation.field, violation.description);
                    }
                }
                return Err(status_error(status));
            }
        };
        for (source, accepted) in sources.iter().zip(response.accepted) {
            published.push(json!({
                "source": source,
                "id": accepted.id,
                "sequence": accepted.sequence,
                "warnings": accepted.warnings,
            }));
        }
    } else if unmapped.is_empty() {
        bail!("{file}: nothing to import");
    }
    println!("{}", json!({"published": published, "unmapped": unmapped}));
    Ok(())
}

pub async fn export(command: ExportCommand) -> Result<()> {
    let ExportCommand::Stix {
        connection,
        after,
        out,
    } = command;
    let mut client = indicator_client(&connection.endpoint, &connection.identity).await?;
    let mut stream = client
        .subscribe(SubscribeRequest {
            after,
            follow: false,
            kinds: Vec::new(),
            limit: 0,
        })
        .await
        .map_err(status_error)?
        .into_inner();
    // Each indicator's objects, by Cordon id, in feed order; a retraction replaces them with
    // the revoked version.
    let mut order: Vec<String> = Vec::new();
    let mut exported: std::collections::HashMap<String, (Indicator, Vec<String>, Vec<Value>)> =
        std::collections::HashMap::new();
    let mut originators = std::collections::BTreeSet::new();
    let mut left_out = 0usize;
    while let Some(event) = stream.message().await.map_err(status_error)? {
        match event.body {
            Some(event::Body::Published(published)) => {
                let Some(indicator) = published.indicator else {
                    continue;
                };
                let json = serde_json::to_value(&indicator)?;
                match cordon_stix::to_stix(
                    &json,
                    cordon_stix::Export {
                        withheld: &published.redacted,
                        revoked_at: None,
                    },
                ) {
                    Ok(objects) => {
                        originators.insert(indicator.originator.clone());
                        order.push(indicator.id.clone());
                        exported.insert(
                            indicator.id.clone(),
                            (indicator, published.redacted, objects),
                        );
                    }
                    Err(error) => {
                        left_out += 1;
                        eprintln!("indicator {} left out: {error}", indicator.id);
                    }
                }
            }
            Some(event::Body::Retracted(retracted)) => {
                let at = event
                    .at
                    .as_ref()
                    .map(|at| crate::clock::rfc3339_of_micros(crate::clock::micros_of(at)))
                    .unwrap_or_default();
                if let Some((indicator, withheld, objects)) =
                    exported.get_mut(&retracted.indicator_id)
                {
                    let json = serde_json::to_value(&*indicator)?;
                    *objects = cordon_stix::to_stix(
                        &json,
                        cordon_stix::Export {
                            withheld,
                            revoked_at: Some(&at),
                        },
                    )?;
                }
            }
            _ => {}
        }
    }
    let mut objects = cordon_stix::objects::vocabulary();
    objects.extend(
        originators
            .iter()
            .map(|member| cordon_stix::objects::member_identity(member)),
    );
    for id in &order {
        if let Some((_, _, indicator_objects)) = exported.remove(id) {
            objects.extend(indicator_objects);
        }
    }
    let bundle = json!({
        "type": "bundle",
        "id": format!("bundle--{}", uuid::Uuid::new_v4()),
        "objects": objects,
    });
    let text = serde_json::to_string(&bundle)?;
    match out {
        Some(path) => {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{text}")?;
        }
    }
    eprintln!(
        "{} indicators exported{}",
        order.len(),
        if left_out > 0 {
            format!(", {left_out} left out (nothing observable)")
        } else {
            String::new()
        }
    );
    Ok(())
}
