//! The verifiable record with a real gateway: `cordon audit verify` passes on an honest log,
//! names the entry whose content was changed by hand in the SQLite file, and tells a log
//! rewritten from an older copy of the database from one that only grew.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use cordon_integration_tests::{Federation, MemberDir, cordon, indicator_client, vessel};
use cordon_proto::v1::{RetractRequest, Tlp};

fn audit(args: &[&str]) -> Result<serde_json::Value> {
    Ok(serde_json::from_str(&cordon(args)?)?)
}

fn verify(
    endpoint: &str,
    identity: &Path,
    key: &str,
    checkpoint: &Path,
) -> Result<serde_json::Value> {
    verify_with(
        endpoint,
        identity,
        key,
        &["--checkpoint", checkpoint.to_str().context("path")?],
    )
}

/// `cordon audit verify` with `extra` arguments, its JSON summary.
fn verify_with(
    endpoint: &str,
    identity: &Path,
    key: &str,
    extra: &[&str],
) -> Result<serde_json::Value> {
    let mut args = vec![
        "audit",
        "verify",
        "--endpoint",
        endpoint,
        "--identity",
        identity.to_str().context("path")?,
        "--key",
        key,
    ];
    args.extend_from_slice(extra);
    audit(&args)
}

async fn publish(endpoint: &str, agency: &Path, label: &str, count: usize) -> Result<Vec<String>> {
    let indicators = (0..count)
        .map(|index| vessel(Tlp::Green, format!("{label} {index}")))
        .collect();
    cordon_integration_tests::publish_ids(endpoint, agency, indicators).await
}

/// The SQLite files of a member's database (the database and its WAL files).
fn database_files(member: &MemberDir) -> Vec<PathBuf> {
    ["cordon.db", "cordon.db-wal", "cordon.db-shm"]
        .iter()
        .map(|name| member.dir.join(name))
        .collect()
}

/// Copies a stopped gateway's database files aside; returns where.
fn back_up(member: &MemberDir) -> Result<PathBuf> {
    let backup = member.dir.join("backup");
    std::fs::create_dir_all(&backup)?;
    for file in database_files(member) {
        if file.exists() {
            std::fs::copy(&file, backup.join(file.file_name().context("name")?))?;
        }
    }
    Ok(backup)
}

/// Puts a stopped gateway's database back as [`back_up`] copied it.
fn restore(member: &MemberDir, backup: &Path) -> Result<()> {
    for file in database_files(member) {
        let _ = std::fs::remove_file(&file);
        let copy = backup.join(file.file_name().context("name")?);
        if copy.exists() {
            std::fs::copy(&copy, &file)?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_passes_names_a_changed_entry_and_detects_a_rewritten_log() -> Result<()> {
    let federation = Federation::new()?;
    let member = federation.member("GH")?;
    let key = member.public_key()?;
    let gateway_identity = member.identity();
    let customs = federation.identity("GH/customs")?;
    let saved = member.dir.join("checkpoint.txt");
    let gateway = member.start(&[]).await?;

    let first = publish(&gateway.endpoint, &customs, "first", 3).await?;
    indicator_client(&gateway.endpoint, &customs)
        .await?
        .retract(RetractRequest {
            id: first[0].clone(),
            reason: "wrong vessel".into(),
        })
        .await?;
    // The log: the policy's activation at start, three publications, one retraction.
    let report = verify(&gateway.endpoint, &gateway_identity, &key, &saved)?;
    ensure!(report["size"] == 5 && report["verified"] == 5, "{report}");
    ensure!(report["origin"] == "cordon-test/GH", "{report}");
    ensure!(report["consistentWith"].is_null(), "{report}");

    // An outsider may watch the log (checkpoint, consistency) but not read its entries.
    let outsider = federation.identity("CI/police")?;
    let refused = verify(
        &gateway.endpoint,
        &outsider,
        &key,
        &member.dir.join("other.txt"),
    )
    .expect_err("an outsider reads no entries");
    ensure!(
        format!("{refused:#}").contains("administrator"),
        "{refused:#}"
    );

    // A proof for one indicator, checked offline against the checkpoint it comes with.
    let proof = audit(&[
        "audit",
        "prove",
        "--endpoint",
        &gateway.endpoint,
        "--identity",
        gateway_identity.to_str().context("path")?,
        "--indicator",
        &first[1],
    ])?;
    check_offline(&proof, &key)?;

    // The log grows; the saved checkpoint is a prefix of it.
    gateway.stop().await?;
    let backup = back_up(&member)?;
    let gateway = member.start(&[]).await?;
    let second = publish(&gateway.endpoint, &customs, "second", 2).await?;
    // The policy's activation at the restart, and two publications.
    let report = verify(&gateway.endpoint, &gateway_identity, &key, &saved)?;
    ensure!(
        report["size"] == 8 && report["verified"] == 8 && report["consistentWith"] == 5,
        "{report}"
    );
    let changed_position = audit(&[
        "audit",
        "prove",
        "--endpoint",
        &gateway.endpoint,
        "--identity",
        gateway_identity.to_str().context("path")?,
        "--indicator",
        &second[1],
    ])?["position"]
        .as_u64()
        .context("position")?;
    let sampled = verify_with(
        &gateway.endpoint,
        &gateway_identity,
        &key,
        &["--sample", "3"],
    )?;
    ensure!(
        sampled["verified"]
            .as_u64()
            .is_some_and(|n| (1..=3).contains(&n)),
        "{sampled}"
    );
    gateway.stop().await?;

    // Someone changes a stored indicator by hand: verification names its entry.
    let database = member.dir.join("cordon.db");
    {
        use sqlx::Connection;
        let mut connection =
            sqlx::SqliteConnection::connect(&format!("sqlite:{}", database.display())).await?;
        let changed = sqlx::query(
            "UPDATE indicators SET payload = CAST(payload || X'00' AS BLOB) WHERE id = ?",
        )
        .bind(&second[1])
        .execute(&mut connection)
        .await?;
        ensure!(changed.rows_affected() == 1);
        connection.close().await?;
    }
    let gateway = member.start(&[]).await?;
    let error = verify(
        &gateway.endpoint,
        &gateway_identity,
        &key,
        &member.dir.join("fresh.txt"),
    )
    .expect_err("a changed indicator fails verification");
    let message = format!("{error:#}");
    ensure!(
        message.contains(&format!("entry {changed_position} ")) && message.contains(&second[1]),
        "{message}"
    );
    gateway.stop().await?;

    // The operator restores the older copy and publishes other indicators: the log of the
    // same or a larger size is not the one the saved checkpoint signed.
    restore(&member, &backup)?;
    let gateway = member.start(&[]).await?;
    publish(&gateway.endpoint, &customs, "rewritten", 3).await?;
    let error = verify(&gateway.endpoint, &gateway_identity, &key, &saved)
        .expect_err("a rewritten log is detected");
    ensure!(format!("{error:#}").contains("rewritten"), "{error:#}");

    // A policy reload is in the log before it takes effect.
    let data_path = member.dir.join("policy").join("data.json");
    let mut data: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&data_path)?)?;
    data["crisis"]["active"] = serde_json::json!(true);
    std::fs::write(&data_path, data.to_string())?;
    let reloaded = cordon(&[
        "policy",
        "reload",
        "--endpoint",
        &gateway.endpoint,
        "--identity",
        gateway_identity.to_str().context("path")?,
    ])?;
    let entries = entries_of(&gateway.endpoint, &gateway_identity).await?;
    let activations: Vec<&String> = entries
        .iter()
        .filter(|entry| entry.contains("\"entry\":\"policyActivated\""))
        .collect();
    ensure!(activations.len() == 3, "{activations:?}");
    let newest = activations.last().context("an activation")?;
    let revision = newest
        .split("\"revision\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .context("a revision")?;
    ensure!(reloaded.contains(revision), "{reloaded} / {newest}");

    // Release decisions are in the log by batch: an agency reads the feed, the batch's entry
    // verifies, and once a decision is slipped into the batch by hand it no longer does.
    cordon_integration_tests::read_all(&gateway.endpoint, &customs, 0, 0).await?;
    cordon_integration_tests::wait_until("a batch of decisions in the log", || async {
        let entries = entries_of(&gateway.endpoint, &gateway_identity).await?;
        Ok((
            entries
                .iter()
                .any(|entry| entry.contains("\"entry\":\"decisions\"")),
            format!("{} entries", entries.len()),
        ))
    })
    .await?;
    let fresh = member.dir.join("after-decisions.txt");
    let report = verify(&gateway.endpoint, &gateway_identity, &key, &fresh)?;
    ensure!(report["verified"] == report["size"], "{report}");
    gateway.stop().await?;
    let batch_position: i64 = {
        use sqlx::Connection;
        let mut connection =
            sqlx::SqliteConnection::connect(&format!("sqlite:{}", database.display())).await?;
        let position: i64 = sqlx::query_scalar(
            "SELECT audit_position FROM decision_batches \
             WHERE audit_position IS NOT NULL LIMIT 1",
        )
        .fetch_one(&mut connection)
        .await?;
        // A row as the decision log stored them before its compact form, read with the
        // batch it names (as recent as the batch, so that retention keeps it).
        sqlx::query(
            "INSERT INTO decisions (decision_id, at_micros, recipient, indicator_id, channel, \
             policy_revision, allow, redact, reasons, error, audit_position) \
             SELECT '0196f1a2-0000-7000-8000-00000000f00d', first_micros, 'GH/customs', \
             'forged', 'subscribe', 'r', 1, '[]', '[]', NULL, audit_position \
             FROM decision_batches WHERE audit_position = ?",
        )
        .bind(position)
        .execute(&mut connection)
        .await?;
        connection.close().await?;
        position
    };
    let gateway = member.start(&[]).await?;
    let error = verify(&gateway.endpoint, &gateway_identity, &key, &fresh)
        .expect_err("a changed decision fails verification");
    let message = format!("{error:#}");
    ensure!(
        message.contains(&format!("entry {batch_position} ")) && message.contains("decision batch"),
        "{message}"
    );
    gateway.stop().await?;

    // The batch's decisions purged (as retention does): verification names it unless the
    // auditor accepts purged batches, which are then counted.
    {
        use sqlx::Connection;
        let mut connection =
            sqlx::SqliteConnection::connect(&format!("sqlite:{}", database.display())).await?;
        for table in ["decisions", "decision_batches"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE audit_position = ?"
            )))
            .bind(batch_position)
            .execute(&mut connection)
            .await?;
        }
        connection.close().await?;
    }
    let gateway = member.start(&[]).await?;
    let error = verify(&gateway.endpoint, &gateway_identity, &key, &fresh)
        .expect_err("a purged batch fails without --allow-purged-decisions");
    ensure!(format!("{error:#}").contains("purged"), "{error:#}");
    let accepted = verify_with(
        &gateway.endpoint,
        &gateway_identity,
        &key,
        &["--allow-purged-decisions"],
    )?;
    ensure!(
        accepted["contentGone"].as_u64() >= Some(1) && accepted["verified"] == accepted["size"],
        "{accepted}"
    );
    gateway.stop().await
}

/// The size of the gateway's audit log now (its checkpoint, asked as `identity`).
async fn checkpoint_size(endpoint: &str, identity: &Path) -> Result<u64> {
    use cordon_proto::v1::CheckpointRequest;
    use cordon_proto::v1::audit_service_client::AuditServiceClient;
    let mut client =
        AuditServiceClient::new(cordon_gateway::cli::client::channel(endpoint, identity).await?);
    Ok(client
        .checkpoint(CheckpointRequest {})
        .await?
        .into_inner()
        .size)
}

/// Every entry of the gateway's audit log, as text.
async fn entries_of(endpoint: &str, gateway_identity: &Path) -> Result<Vec<String>> {
    use cordon_proto::v1::AuditEntriesRequest;
    use cordon_proto::v1::audit_service_client::AuditServiceClient;
    let mut client = AuditServiceClient::new(
        cordon_gateway::cli::client::channel(endpoint, gateway_identity).await?,
    );
    let entries = client
        .entries(AuditEntriesRequest { from: 0, limit: 0 })
        .await?
        .into_inner()
        .entries;
    Ok(entries
        .into_iter()
        .map(|entry| String::from_utf8_lossy(&entry.entry).into_owned())
        .collect())
}

/// Checks `cordon audit prove`'s output with nothing but the public key.
fn check_offline(proof: &serde_json::Value, key_hex: &str) -> Result<()> {
    use base64::Engine as _;
    let decode = |value: &serde_json::Value| -> Result<[u8; 32]> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().context("base64 text")?)?;
        bytes.try_into().map_err(|_| anyhow::anyhow!("32 bytes"))
    };
    let key: [u8; 32] = hex::decode(key_hex)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("32 bytes"))?;
    let note = proof["checkpoint"].as_str().context("checkpoint")?;
    let origin = note.lines().next().context("origin line")?;
    let checkpoint = cordon_tlog::verify_checkpoint(note, origin, &key)?;
    let hashes: Vec<[u8; 32]> = proof["hashes"]
        .as_array()
        .context("hashes")?
        .iter()
        .map(decode)
        .collect::<Result<_>>()?;
    let entry = proof["entry"].as_str().context("entry")?;
    let leaf = cordon_tlog::leaf_hash(entry.as_bytes());
    ensure!(leaf == decode(&proof["leafHash"])?);
    ensure!(proof["size"].as_u64() == Some(checkpoint.size), "{proof}");
    cordon_tlog::verify_inclusion(
        proof["position"].as_u64().context("position")?,
        checkpoint.size,
        &leaf,
        &hashes,
        &checkpoint.root,
    )?;
    Ok(())
}

/// NG follows GH. GH's operator restores an older copy of GH's database and publishes other
/// indicators: GH's log of the same or a larger size no longer extends the checkpoint NG
/// checked before, and NG raises the alarm within one check interval of reconnecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_detects_its_peers_rewritten_log() -> Result<()> {
    use cordon_integration_tests::wait_until;
    let federation = Federation::new()?;
    let [ghana, nigeria] = &federation.members(&["GH", "NG"])?[..] else {
        anyhow::bail!("two members")
    };
    let gh_endpoint = ghana.fix_listen_port()?;
    nigeria.follow(ghana, &gh_endpoint)?;
    let customs = federation.identity("GH/customs")?;
    let gh = ghana.start(&[]).await?;
    publish(&gh.endpoint, &customs, "first", 3).await?;
    let ng = nigeria.start(&[]).await?;
    let peer_status = || async {
        let peers = cordon_integration_tests::peer_statuses(nigeria, &ng.endpoint).await?;
        anyhow::Ok(peers.get("GH").cloned().unwrap_or_default())
    };
    // NG has checked GH's log at its present size (GH's log grows with the decisions it
    // makes for NG's follower, and then stays once NG is caught up).
    let checked_up_to_now = |gh_endpoint: String| {
        let peer_status = &peer_status;
        let ghana = ghana.clone();
        async move {
            let status = peer_status().await?;
            let size = checkpoint_size(&gh_endpoint, &ghana.identity()).await?;
            let checked = status["logSize"]
                .as_str()
                .and_then(|text| text.parse::<u64>().ok())
                .or_else(|| status["logSize"].as_u64());
            Ok((checked == Some(size), format!("GH at {size}; {status}")))
        }
    };
    wait_until("NG to check GH's log", || {
        checked_up_to_now(gh.endpoint.clone())
    })
    .await?;

    gh.stop().await?;
    let backup = back_up(ghana)?;
    let gh = ghana.start(&[]).await?;
    publish(&gh.endpoint, &customs, "second", 2).await?;
    wait_until("NG to check GH's grown log", || {
        checked_up_to_now(gh.endpoint.clone())
    })
    .await?;
    let kept = peer_status().await?["logSize"].clone();
    gh.stop().await?;

    restore(ghana, &backup)?;
    let gh = ghana.start(&[]).await?;
    publish(&gh.endpoint, &customs, "rewritten", 6).await?;
    wait_until("NG to raise the alarm on GH's log", || async {
        let status = peer_status().await?;
        let alarm = status["logAlarm"].as_str().unwrap_or_default().to_string();
        Ok((alarm.contains("rewritten"), status.to_string()))
    })
    .await?;
    // The kept checkpoint is still the one checked before the rewrite: the evidence stays.
    let status = peer_status().await?;
    ensure!(status["logSize"] == kept, "{status} (kept {kept})");
    ensure!(
        ng.log_text().contains("rewritten or forked"),
        "NG's log says why"
    );
    gh.stop().await?;
    ng.stop().await
}
