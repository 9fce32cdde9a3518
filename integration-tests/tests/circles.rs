//! Circles with real gateway processes: a hub (GH) and a member (NG) share a
//! source-protected indicator under MLS; a third gateway (SN), which follows GH's
//! feed, never sees it; after NG's removal NG receives nothing new.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use cordon_integration_tests::{
    Federation, MemberDir, cordon, indicator_client, published, read_all, vessel, wait_until,
};
use cordon_proto::v1::{PublishRequest, Tlp};

fn members(federation: &Federation, ids: &[&str]) -> Result<Vec<MemberDir>> {
    let members = ids
        .iter()
        .map(|id| federation.member(id))
        .collect::<Result<Vec<_>>>()?;
    for member in &members {
        for other in &members {
            if other.member != member.member {
                member.trust_member(other)?;
            }
        }
    }
    Ok(members)
}

async fn circle(member: &MemberDir, endpoint: &str, args: &[&str]) -> Result<serde_json::Value> {
    let identity = member.identity();
    let mut all: Vec<String> = vec!["circle".into(), args[0].into()];
    all.extend([
        "--endpoint".into(),
        endpoint.to_string(),
        "--identity".into(),
        identity.to_str().context("path")?.to_string(),
    ]);
    all.extend(args[1..].iter().map(|arg| arg.to_string()));
    let output = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        cordon(&refs)
    })
    .await??;
    Ok(serde_json::from_str(&output)?)
}

async fn narratives(endpoint: &str, identity: &Path) -> Result<Vec<String>> {
    let events = read_all(endpoint, identity, 0, 0).await?;
    Ok(published(&events)
        .into_iter()
        .map(|(_, indicator, _)| indicator.narrative)
        .collect())
}

fn file_contains(path: &Path, marker: &str) -> Result<bool> {
    let mut found = false;
    for suffix in ["", "-wal"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        if let Ok(bytes) = std::fs::read(&file) {
            found |= bytes
                .windows(marker.len())
                .any(|window| window == marker.as_bytes());
        }
    }
    Ok(found)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circle_members_decrypt_outsiders_and_removed_members_get_nothing() -> Result<()> {
    let federation = Federation::new()?;
    let [ghana, nigeria, senegal] = &members(&federation, &["GH", "NG", "SN"])?[..] else {
        bail!("three members")
    };
    let endpoints: Vec<String> = [ghana, nigeria, senegal]
        .iter()
        .map(|member| member.fix_listen_port())
        .collect::<Result<_>>()?;
    let (gh_endpoint, ng_endpoint, sn_endpoint) = (&endpoints[0], &endpoints[1], &endpoints[2]);
    // Peers give the hub its members' endpoints and the members their hub's; SN follows
    // GH's feed, so it would see anything GH released to it.
    ghana.follow(nigeria, ng_endpoint)?;
    ghana.follow(senegal, sn_endpoint)?;
    nigeria.follow(ghana, gh_endpoint)?;
    senegal.follow(ghana, gh_endpoint)?;
    let gh = ghana.start(&[]).await?;
    let ng = nigeria.start(&[]).await?;
    let sn = senegal.start(&[]).await?;
    let gh_customs = federation.identity("GH/customs")?;
    let ng_customs = federation.identity("NG/customs")?;
    let sn_police = federation.identity("SN/police")?;

    let created = circle(ghana, &gh.endpoint, &["create", "alpha"]).await?;
    assert_eq!(created["hub"], "GH");
    let added = circle(ghana, &gh.endpoint, &["add", "alpha", "NG"]).await?;
    assert_eq!(added["members"], serde_json::json!(["GH", "NG"]), "{added}");

    let marker = format!(
        "CIRCLE-MARKER-{}",
        std::process::id()
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(7)
    );
    let mut client = indicator_client(&gh.endpoint, &gh_customs).await?;
    let accepted = client
        .publish(PublishRequest {
            indicators: vec![vessel(Tlp::Green, format!("informant: {marker}"))],
            circle: "alpha".into(),
        })
        .await?
        .into_inner()
        .accepted;
    ensure!(accepted.len() == 1, "one accepted: {accepted:?}");

    // NG's gateway decrypts it, checks GH's signature and holds it; NG's own agency sees
    // it because NG's policy allows it inside the circle.
    wait_until("NG/customs to see the circle indicator", || async {
        let seen = narratives(&ng.endpoint, &ng_customs).await?;
        Ok((
            seen.iter().any(|text| text.contains(&marker)),
            format!("{seen:?}"),
        ))
    })
    .await?;
    let at_ng = circle(nigeria, &ng.endpoint, &["members", "alpha"]).await?;
    assert_eq!(at_ng["hub"], "GH");
    assert_eq!(at_ng["status"], "active");

    // Remove NG, then publish a second marker: NG must not receive it.
    let removed = circle(ghana, &gh.endpoint, &["remove", "alpha", "NG"]).await?;
    assert_eq!(removed["members"], serde_json::json!(["GH"]), "{removed}");
    wait_until("NG to process its removal", || async {
        let info = circle(nigeria, &ng.endpoint, &["members", "alpha"]).await?;
        Ok((info["status"] == "removed", info.to_string()))
    })
    .await?;
    let after = format!(
        "AFTER-REMOVAL-{}",
        std::process::id()
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(7)
    );
    client
        .publish(PublishRequest {
            indicators: vec![vessel(Tlp::Green, format!("informant: {after}"))],
            circle: "alpha".into(),
        })
        .await?;
    let at_gh = narratives(&gh.endpoint, &gh_customs).await?;
    ensure!(
        at_gh.iter().any(|text| text.contains(&after)),
        "GH holds its own: {at_gh:?}"
    );

    // SN follows GH's feed: neither marker ever reaches SN or its agencies.
    let at_sn = narratives(&sn.endpoint, &sn_police).await?;
    ensure!(
        !at_sn.iter().any(|text| text.contains("informant")),
        "SN saw a circle indicator: {at_sn:?}"
    );
    let seen_by_ng = narratives(&ng.endpoint, &ng_customs).await?;
    ensure!(
        !seen_by_ng.iter().any(|text| text.contains(&after)),
        "NG received an indicator sent after its removal"
    );
    let sn_log = sn.log_text();
    let ng_log = ng.log_text();
    gh.stop().await?;
    ng.stop().await?;
    sn.stop().await?;
    let db = |member: &MemberDir| member.dir.join("cordon.db");
    ensure!(
        !file_contains(&db(senegal), &marker)?,
        "marker in SN's database"
    );
    ensure!(!sn_log.contains(&marker), "marker in SN's log");
    ensure!(
        file_contains(&db(nigeria), &marker)?,
        "NG holds the first marker"
    );
    ensure!(
        !file_contains(&db(nigeria), &after)?,
        "NG's database holds the later marker"
    );
    ensure!(!ng_log.contains(&after), "NG's log holds the later marker");
    Ok(())
}
