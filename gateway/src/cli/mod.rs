//! The `cordon` command line: identities, member setup, the gateway, the
//! client commands and the demo.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use cordon_proto::v1::{
    GetRequest, Indicator, IndicatorKind, PublishRequest, RetractRequest, SubscribeRequest,
};
use tonic_types::StatusExt;

pub mod ca;
pub mod client;
pub mod demo;
pub mod policy;

use crate::config::{
    CONFIG_FILE, ConfigFile, DEFAULT_LISTEN, DecisionLogFile, GatewayConfig, LimitsFile, TlsFile,
};
use crate::identity::{Identity, is_member_id};
use ca::DEFAULT_FEDERATION;
use client::indicator_client;

#[derive(Debug, Parser)]
#[command(
    name = "cordon",
    version,
    about = "Cordon: a federated gateway for sharing SALW risk indicators"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// A development federation CA: create it, issue member and agency identities.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Set up a member's gateway directory: identity, config, starter policy.
    Init(InitArgs),
    /// Run a gateway.
    Serve {
        #[arg(long, default_value = CONFIG_FILE)]
        config: PathBuf,
    },
    /// Publish indicators (proto3 JSON, one per line) as one atomic batch per 1,000 lines.
    Publish {
        #[command(flatten)]
        connection: Connection,
        /// A file of indicators, or `-` for standard input.
        #[arg(long)]
        file: String,
        /// Publish them source-protected into this circle (MLS), only to its members.
        #[arg(long)]
        circle: Option<String>,
    },
    /// Print the events a gateway releases to this identity, one JSON object per line.
    Subscribe {
        #[command(flatten)]
        connection: Connection,
        /// Start after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Stop after this many events (published or retracted).
        #[arg(long)]
        limit: Option<u64>,
        /// Keep waiting for new events.
        #[arg(long)]
        follow: bool,
        /// Only these kinds (vessel, aircraft, entity, endUserCertificate, consignment, weapon, account, route).
        #[arg(long = "kind")]
        kinds: Vec<String>,
    },
    /// Withdraw an indicator of your own member.
    Retract {
        #[command(flatten)]
        connection: Connection,
        #[arg(long)]
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Look up one indicator, as released to this identity.
    Get {
        #[command(flatten)]
        connection: Connection,
        #[arg(long)]
        id: String,
    },
    /// Governance board tools: check, test, evaluate and compare policies;
    /// status and reload of a running gateway's policy.
    #[command(subcommand)]
    Policy(crate::cli::policy::PolicyCommand),
    /// The partner gateways a gateway follows: connection state, cursor, lag
    /// behind the peer's head, last error (its own identity or agencies).
    Peers {
        #[command(flatten)]
        connection: Connection,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Circles (MLS groups) of source-protected intelligence, as the gateway's own identity.
    Circle {
        #[command(subcommand)]
        command: CircleCommand,
    },
    /// Stored release decisions of a gateway (its own identity or agencies).
    Decisions(crate::cli::policy::DecisionsArgs),
    /// Start a gateway with two recipients on a temporary directory and show
    /// what the policy releases to each, withholds and redacts, and why.
    Demo {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a federation CA in a directory.
    Init {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = DEFAULT_FEDERATION)]
        federation: String,
    },
    /// Issue an identity: NAME is a member (`GH`) or an agency of a member (`GH/customs`).
    Issue {
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The member id, for example GH.
    #[arg(long)]
    member: String,
    /// Directory to set up.
    #[arg(long)]
    dir: PathBuf,
    /// An existing federation CA; without it a new one is created in DIR/ca.
    #[arg(long)]
    ca: Option<PathBuf>,
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: String,
}

#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The gateway, for example https://127.0.0.1:7443.
    #[arg(long)]
    pub endpoint: String,
    /// An identity directory written by `cordon ca issue`.
    #[arg(long)]
    pub identity: PathBuf,
}

pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Ca(CaCommand::Init { out, federation }) => {
            ca::init_ca(&out, &federation)?;
            println!("federation CA {federation:?} written to {}", out.display());
            Ok(())
        }
        Command::Ca(CaCommand::Issue {
            ca: ca_dir,
            name,
            out,
        }) => {
            let identity = ca::issue(&ca_dir, &name, &out)?;
            println!("identity {identity} written to {}", out.display());
            Ok(())
        }
        Command::Init(args) => init(args),
        Command::Serve { config } => serve(&config).await,
        Command::Publish {
            connection,
            file,
            circle,
        } => publish(&connection, &file, circle.unwrap_or_default()).await,
        Command::Circle { command } => circle(command).await,
        Command::Subscribe {
            connection,
            after,
            limit,
            follow,
            kinds,
        } => subscribe(&connection, after, limit, follow, &kinds).await,
        Command::Retract {
            connection,
            id,
            reason,
        } => {
            let mut client = indicator_client(&connection.endpoint, &connection.identity).await?;
            let response = client
                .retract(RetractRequest {
                    id: id.clone(),
                    reason,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            println!(
                "{}",
                serde_json::json!({"id": id, "sequence": response.sequence})
            );
            Ok(())
        }
        Command::Get { connection, id } => {
            let mut client = indicator_client(&connection.endpoint, &connection.identity).await?;
            let response = client
                .get(GetRequest { id })
                .await
                .map_err(status_error)?
                .into_inner();
            println!("{}", serde_json::to_string(&response)?);
            Ok(())
        }
        Command::Policy(command) => crate::cli::policy::run(command).await,
        Command::Decisions(args) => crate::cli::policy::decisions(args).await,
        Command::Peers { connection, json } => peers(&connection, json).await,
        Command::Demo { json } => crate::cli::demo::run(json).await,
    }
}

fn init(args: InitArgs) -> Result<()> {
    if !is_member_id(&args.member) {
        bail!(
            "--member: {:?} is not a member id (2-16 of A-Z, 0-9, '-')",
            args.member
        );
    }
    let config_path = args.dir.join(CONFIG_FILE);
    if config_path.exists() {
        bail!(
            "{} already exists; refusing to overwrite it",
            config_path.display()
        );
    }
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let ca_dir = match args.ca {
        Some(dir) => dir,
        None => {
            let dir = args.dir.join("ca");
            ca::init_ca(&dir, DEFAULT_FEDERATION)?;
            dir
        }
    };
    let federation = ca::read_federation(&ca_dir)?;
    ca::issue(&ca_dir, &args.member, &args.dir.join("identity"))?;
    let signing_key_path = args
        .dir
        .join("identity")
        .join(crate::signing::SIGNING_KEY_FILE);
    crate::signing::generate_signing_key(&signing_key_path)?;
    let signing_key = crate::signing::SigningKey::load(&signing_key_path, &args.member)?;
    let public_key_hex = hex::encode(signing_key.public_key());
    std::fs::write(
        args.dir
            .join("identity")
            .join(crate::signing::PUBLIC_KEY_FILE),
        format!("{public_key_hex}\n"),
    )?;
    for (relative, contents) in cordon_policy::reference_policy_files() {
        let path = args.dir.join("policy").join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    let file = ConfigFile {
        member: args.member.clone(),
        federation,
        listen: args.listen,
        database: "sqlite:cordon.db".into(),
        policy: PathBuf::from("policy"),
        tls: TlsFile {
            cert: PathBuf::from("identity/cert.pem"),
            key: PathBuf::from("identity/key.pem"),
            ca: PathBuf::from("identity/ca.pem"),
        },
        signing_key: PathBuf::from("identity").join(crate::signing::SIGNING_KEY_FILE),
        limits: LimitsFile::default(),
        decision_log: DecisionLogFile::default(),
        watch_policy: true,
        members: Vec::new(),
        peers: Vec::new(),
        admin: None,
    };
    // Validate before writing, so init never leaves a config serve would refuse.
    GatewayConfig::from_file(file.clone(), &args.dir, &HashMap::new())?;
    let text = format!(
        "# Cordon gateway of member {}. Paths are relative to this file.\n# database may also be postgres://user@host/db (or set CORDON_DATABASE_URL).\n{}",
        args.member,
        toml::to_string_pretty(&file)?
    );
    std::fs::write(&config_path, text)
        .with_context(|| format!("writing {}", config_path.display()))?;
    println!("member {} set up in {}", args.member, args.dir.display());
    println!("  config:   {}", config_path.display());
    println!("  identity: {}", args.dir.join("identity").display());
    println!(
        "  policy:   {} (reference policy with tests)",
        args.dir.join("policy").display()
    );
    println!("  CA:       {}", ca_dir.display());
    println!(
        "  signing:  key {} (public key {public_key_hex}; partners verify {}'s indicators with it)",
        signing_key.key_id(),
        args.member
    );
    println!(
        "  partners add to their cordon.toml:\n    [[members]]\n    id = \"{}\"\n    signing_keys = [\"{public_key_hex}\"]",
        args.member
    );
    println!("next: cordon serve --config {}", config_path.display());
    Ok(())
}

/// `cordon circle …`: administration of circles at this member's gateway.
#[derive(Debug, clap::Subcommand)]
pub enum CircleCommand {
    /// Create a circle with this gateway as its hub.
    Create {
        #[command(flatten)]
        connection: Connection,
        name: String,
    },
    /// Add a member gateway (the hub fetches and checks its KeyPackage).
    Add {
        #[command(flatten)]
        connection: Connection,
        name: String,
        member: String,
    },
    /// Remove a member gateway; it can read nothing sent after the removal.
    Remove {
        #[command(flatten)]
        connection: Connection,
        name: String,
        member: String,
    },
    /// The circles this gateway hubs or belongs to.
    List {
        #[command(flatten)]
        connection: Connection,
    },
    /// One circle's members, epoch and log position.
    Members {
        #[command(flatten)]
        connection: Connection,
        name: String,
    },
    /// Rotate this gateway's own keys in a circle (an MLS self-update commit).
    Rotate {
        #[command(flatten)]
        connection: Connection,
        name: String,
    },
}

async fn circle(command: CircleCommand) -> Result<()> {
    use cordon_proto::v1::circle_service_client::CircleServiceClient;
    let connection = match &command {
        CircleCommand::Create { connection, .. }
        | CircleCommand::Add { connection, .. }
        | CircleCommand::Remove { connection, .. }
        | CircleCommand::List { connection }
        | CircleCommand::Members { connection, .. }
        | CircleCommand::Rotate { connection, .. } => connection.clone(),
    };
    let mut client = CircleServiceClient::new(
        crate::cli::client::channel(&connection.endpoint, &connection.identity).await?,
    );
    let output = match command {
        CircleCommand::Create { name, .. } => serde_json::to_string(
            &client
                .create(cordon_proto::v1::CreateCircleRequest { name })
                .await
                .map_err(status_error)?
                .into_inner(),
        )?,
        CircleCommand::Add { name, member, .. } => serde_json::to_string(
            &client
                .add(cordon_proto::v1::AddMemberRequest {
                    circle: name,
                    member,
                })
                .await
                .map_err(status_error)?
                .into_inner(),
        )?,
        CircleCommand::Remove { name, member, .. } => serde_json::to_string(
            &client
                .remove(cordon_proto::v1::RemoveMemberRequest {
                    circle: name,
                    member,
                })
                .await
                .map_err(status_error)?
                .into_inner(),
        )?,
        CircleCommand::List { .. } => serde_json::to_string(
            &client
                .list(cordon_proto::v1::ListCirclesRequest {})
                .await
                .map_err(status_error)?
                .into_inner(),
        )?,
        CircleCommand::Members { name, .. } => serde_json::to_string(
            &client
                .members(cordon_proto::v1::MembersRequest { circle: name })
                .await
                .map_err(status_error)?
                .into_inner(),
        )?,
        CircleCommand::Rotate { name, .. } => serde_json::to_string(
            &client
                .rotate(cordon_proto::v1::RotateRequest { circle: name })
                .await
                .map_err(status_error)?
                .into_inner(),
        )?,
    };
    println!("{output}");
    Ok(())
}

async fn peers(connection: &Connection, json: bool) -> Result<()> {
    use cordon_proto::v1::federation_service_client::FederationServiceClient;
    let mut client = FederationServiceClient::new(
        crate::cli::client::channel(&connection.endpoint, &connection.identity).await?,
    );
    let peers = client
        .peers(cordon_proto::v1::PeersRequest {})
        .await
        .map_err(status_error)?
        .into_inner()
        .peers;
    if json {
        println!("{}", serde_json::to_string_pretty(&peers)?);
        return Ok(());
    }
    if peers.is_empty() {
        println!("no peers configured");
        return Ok(());
    }
    println!(
        "{:<8} {:<11} {:>10} {:>10} {:>8} {:>8} {:>7}  last error",
        "peer", "state", "cursor", "head", "lag", "stored", "refused"
    );
    for peer in peers {
        println!(
            "{:<8} {:<11} {:>10} {:>10} {:>8} {:>8} {:>7}  {}",
            peer.id,
            peer.state,
            peer.cursor,
            peer.peer_head,
            peer.lag,
            peer.stored,
            peer.refused,
            if peer.last_error.is_empty() {
                "-"
            } else {
                &peer.last_error
            }
        );
    }
    Ok(())
}

async fn serve(config_path: &Path) -> Result<()> {
    let environment: HashMap<String, String> = std::env::vars().collect();
    let config = GatewayConfig::load(config_path, &environment)?;
    // Registered before the address is announced: a SIGTERM sent as soon as a script or test
    // reads it must shut the gateway down cleanly, not kill it with the default action.
    let shutdown = shutdown_signal().context("registering signal handlers")?;
    let gateway = crate::server::start(&config, Vec::new()).await?;
    // Tests and scripts read the bound addresses (the config may say port 0).
    let mut first_line =
        serde_json::json!({"listening": gateway.address.to_string(), "member": config.member});
    if let Some(admin) = gateway.admin_address {
        first_line["admin"] = serde_json::Value::String(admin.to_string());
    }
    println!("{first_line}");
    std::io::stdout().flush()?;
    gateway.run_until(shutdown).await
}

/// Resolves on SIGINT or SIGTERM; the handlers are installed when this is called.
#[cfg(unix)]
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down");
    })
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    })
}

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

async fn publish(connection: &Connection, file: &str, circle: String) -> Result<()> {
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
                        let line = item_index(&violation.field)
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

fn item_index(field: &str) -> Option<usize> {
    field
        .strip_prefix("indicators[")?
        .split(']')
        .next()?
        .parse()
        .ok()
}

async fn subscribe(
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

/// A gRPC status as a CLI error: its code and message.
pub fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
}

/// Used by the demo and tests to name identity directories.
pub fn identity_dir(base: &Path, identity: &Identity) -> PathBuf {
    base.join(identity.to_string().replace('/', "-"))
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
        assert_eq!(item_index("indicators[12].vessel.imo"), Some(12));
        assert_eq!(item_index("indicators"), None);
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
