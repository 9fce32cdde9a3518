//! The `cordon` command line: the development CA, member setup, the gateway, the client
//! commands of every service, and the demo.
//!
//! This room only talks to gateways through their gRPC APIs (and starts one, `serve`); it
//! holds no gateway logic of its own.

mod audit;
pub mod ca;
mod circle;
pub mod client;
pub mod demo;
mod feed;
mod interop;
pub mod policy;
pub(crate) mod screen;
mod setup;

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use cordon_proto::v1::{GetRequest, RetractRequest};

pub use circle::CircleCommand;
pub use feed::read_indicators;
pub use screen::{WatchCommand, read_declarations};

use crate::config::{CONFIG_FILE, DEFAULT_LISTEN};
use crate::identity::Identity;
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
    /// The verifiable record: check a gateway's audit log with its public key, or print the
    /// proof that an indicator's entry is in it.
    #[command(subcommand)]
    Audit(crate::cli::audit::AuditCommand),
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
    /// Screen declarations (proto3 JSON of cordon.v1.Declaration, one per line) against the
    /// indicators the gateway holds and may show this agency: one JSON result per line
    /// (reference, score, level, matches, reasons, policyRevision).
    Screen {
        #[command(flatten)]
        connection: Connection,
        /// A file of declarations, or `-` for standard input.
        #[arg(long)]
        file: String,
        /// Declarations per call (each call is screened and stored on its own).
        #[arg(long, default_value_t = screen::DEFAULT_BATCH)]
        batch: usize,
    },
    /// Import a STIX 2.1 bundle or a MISP event: what maps is published (validated and signed
    /// like any publish), the rest reported.
    #[command(subcommand)]
    Import(interop::ImportCommand),
    /// Export what the gateway releases to this identity as a STIX 2.1 bundle.
    #[command(subcommand)]
    Export(interop::ExportCommand),
    /// Print this agency's alerts, one JSON object per line; resume with --after CURSOR.
    Alerts {
        #[command(flatten)]
        connection: Connection,
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Keep waiting for new alerts.
        #[arg(long)]
        follow: bool,
        /// Stop after this many alerts.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// The agency's watchlist: identifiers and names whose new intelligence raises alerts.
    Watch {
        #[command(subcommand)]
        command: WatchCommand,
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
        /// Another name the certificate's holder is reached by (a DNS name or an IP address),
        /// besides loopback; repeat for several.
        #[arg(long = "san", value_name = "HOST")]
        san: Vec<String>,
    },
    /// Revoke the certificate at CERT (a `cert.pem` the CA issued): its serial is added to the
    /// CA's list and `crl.pem` in the CA directory is signed again. Gateways whose
    /// `[tls] crl` names a copy of it refuse the certificate from their next start.
    Revoke {
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        cert: PathBuf,
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
    /// Another name the gateway is reached by (a DNS name or an IP address), written into its
    /// certificate besides loopback; repeat for several.
    #[arg(long = "san", value_name = "HOST")]
    san: Vec<String>,
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
            san,
        }) => {
            let identity = ca::issue_for(&ca_dir, &name, &out, &san)?;
            println!("identity {identity} written to {}", out.display());
            Ok(())
        }
        Command::Ca(CaCommand::Revoke { ca: ca_dir, cert }) => {
            let revoked = ca::revoke(&ca_dir, &cert)?;
            println!(
                "{} revoked; {} lists {revoked} certificates",
                cert.display(),
                ca_dir.join(ca::CRL_FILE).display()
            );
            Ok(())
        }
        Command::Init(args) => setup::init(args),
        Command::Serve { config } => setup::serve(&config).await,
        Command::Publish {
            connection,
            file,
            circle,
        } => feed::publish(&connection, &file, circle.unwrap_or_default()).await,
        Command::Circle { command } => circle::circle(command).await,
        Command::Subscribe {
            connection,
            after,
            limit,
            follow,
            kinds,
        } => feed::subscribe(&connection, after, limit, follow, &kinds).await,
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
        Command::Audit(command) => crate::cli::audit::run(command).await,
        Command::Peers { connection, json } => circle::peers(&connection, json).await,
        Command::Screen {
            connection,
            file,
            batch,
        } => screen::screen(&connection, &file, batch).await,
        Command::Import(command) => interop::import(command).await,
        Command::Export(command) => interop::export(command).await,
        Command::Alerts {
            connection,
            after,
            follow,
            limit,
        } => screen::alerts(&connection, after, follow, limit).await,
        Command::Watch { command } => screen::watch(command).await,
        Command::Demo { json } => crate::cli::demo::run(json).await,
    }
}

/// A gRPC status as a CLI error: its code and message.
pub fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
}

/// Used by the demo and tests to name identity directories.
pub fn identity_dir(base: &Path, identity: &Identity) -> PathBuf {
    base.join(identity.to_string().replace('/', "-"))
}

/// Line `number` of `source`, one JSON object, as `T` (`what` names its type); an error names
/// the line and the field path: `input.jsonl line 3: vessel.imo: invalid type: ...`.
pub(crate) fn parse_json_line<T: serde::de::DeserializeOwned>(
    line: &str,
    source: &str,
    number: usize,
    what: &str,
) -> Result<T> {
    let mut deserializer = serde_json::Deserializer::from_str(line);
    let parsed = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let error = error.into_inner();
        if path.is_empty() || path == "." {
            anyhow::anyhow!("{source} line {number}: not a {what} in proto3 JSON: {error}")
        } else {
            anyhow::anyhow!("{source} line {number}: {path}: {error} (not a {what} in proto3 JSON)")
        }
    })?;
    deserializer.end().map_err(|error| {
        anyhow::anyhow!("{source} line {number}: not a {what} in proto3 JSON: {error}")
    })?;
    Ok(parsed)
}
