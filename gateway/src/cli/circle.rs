//! `cordon circle …` and `cordon peers`: a gateway's circles and followers, asked as its own
//! identity.

use anyhow::Result;

use super::{Connection, status_error};

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

pub(super) async fn circle(command: CircleCommand) -> Result<()> {
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

pub(super) async fn peers(connection: &Connection, json: bool) -> Result<()> {
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
        if !peer.log_alarm.is_empty() {
            println!("{:<8} ALARM: its audit log: {}", peer.id, peer.log_alarm);
        }
    }
    Ok(())
}
