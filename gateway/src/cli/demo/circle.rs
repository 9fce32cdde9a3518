//! The demo's circle: GH hubs it, NG joins and is removed, SN stays outside.

use super::*;

/// GH creates the circle and adds NG; GH/customs publishes a source-protected indicator
/// into it; NG's gateway decrypts it and NG/customs sees it; SN, which follows both GH's
/// and NG's feeds, holds nothing of it. GH removes NG and publishes a second one: NG
/// receives nothing new.
pub(super) async fn circle_part(
    members: &[Member],
    agencies: &Path,
    keys: &FederationKeys,
) -> Result<CircleReport> {
    let member = |id: &str| {
        members
            .iter()
            .find(|member| member.id == id)
            .context(id.to_string())
    };
    let (hub, joining) = (member(CIRCLE_HUB)?, member(CIRCLE_MEMBER)?);
    let publisher = agency_of(CIRCLE_HUB)?;
    let (indicators, _) =
        crate::cli::read_indicators(CIRCLE_EXAMPLES.as_bytes(), "circle indicators")?;
    let [first, second]: [Indicator; 2] = indicators
        .try_into()
        .map_err(|_| anyhow::anyhow!("demo/circle.jsonl holds two indicators"))?;

    // Administration is for the hub's own gateway identity, over the Circles API.
    let mut admin = circle_client(hub).await?;
    admin
        .create(CreateCircleRequest {
            name: CIRCLE.into(),
        })
        .await
        .map_err(crate::cli::status_error)?;
    // The hub fetches NG's KeyPackage, commits the add and hands NG its Welcome before
    // it answers: NG is a member when this returns.
    let added = admin
        .add(AddMemberRequest {
            circle: CIRCLE.into(),
            member: CIRCLE_MEMBER.into(),
        })
        .await
        .map_err(crate::cli::status_error)?
        .into_inner();
    let shared = publish_to_circle(hub, agencies, publisher, first, &added.members).await?;

    // NG's follower of the hub's log decrypts it, checks GH's signature and stores it;
    // NG's policy releases it to NG/customs on channel "circle".
    let joining_agency = agency_dir(agencies, agency_of(CIRCLE_MEMBER)?)?;
    wait_for("NG's agency receiving the circle indicator", || async {
        let feed = agency_feed(&joining.endpoint, &joining_agency).await?;
        Ok(feed.iter().any(|(indicator, _)| indicator.id == shared.id))
    })
    .await?;
    // Every feed follower at its peer's head, so past where GH and NG stored the
    // indicator: had either released it to SN, SN would hold it now.
    wait_for("followers catching up after the circle indicator", || {
        settled(members)
    })
    .await?;
    let (_, outsider_follows) = FOLLOWS
        .iter()
        .find(|(id, _)| *id == OUTSIDER)
        .context("the outsider's peers")?;
    let mut withheld_from_outsider = BTreeMap::new();
    for id in outsider_follows.iter() {
        let followed = member(id)?;
        let reasons = followed
            .decisions
            .records()
            .into_iter()
            .rev()
            .find(|record| record.recipient == OUTSIDER && record.indicator_id == shared.id)
            .map(|record| record.reasons)
            .unwrap_or_else(|| vec![format!("{id} made no release decision for {OUTSIDER}")]);
        withheld_from_outsider.insert(id.to_string(), reasons);
    }

    // GH removes NG; NG's follower reads the commit that removed it and stops.
    let removal = admin
        .remove(RemoveMemberRequest {
            circle: CIRCLE.into(),
            member: CIRCLE_MEMBER.into(),
        })
        .await
        .map_err(crate::cli::status_error)?
        .into_inner();
    wait_for("NG processing its removal from the circle", || async {
        Ok(circle_info(joining)
            .await?
            .is_some_and(|info| info.status == crate::circle::STATUS_REMOVED))
    })
    .await?;
    let after = publish_to_circle(hub, agencies, publisher, second, &removal.members).await?;
    wait_for(
        "followers catching up after the second circle indicator",
        || settled(members),
    )
    .await?;

    let items = vec![shared, after];
    let mut views = Vec::new();
    for member in members {
        let info = circle_info(member).await?;
        let agency = agency_of(member.id)?;
        let feed = agency_feed(&member.endpoint, &agency_dir(agencies, agency)?).await?;
        let mut sightings = Vec::new();
        for item in &items {
            let held = member.gateway.state.store.indicator(&item.id).await?;
            let signature_verified = match &held {
                Some(held) => keys
                    .verify_indicator(&Indicator::decode(held.payload.as_slice())?)
                    .is_ok(),
                None => false,
            };
            sightings.push(CircleSighting {
                id: item.id.clone(),
                gateway_holds: held.is_some(),
                via: held.and_then(|held| held.via),
                signature_verified,
                agency_sees: feed.iter().any(|(indicator, _)| indicator.id == item.id),
                in_database_file: None,
            });
        }
        views.push(CircleView {
            member: member.id.into(),
            status: info
                .as_ref()
                .map_or("not a member".to_string(), |info| info.status.clone()),
            position: info.map_or(0, |info| info.position),
            agency: agency.into(),
            items: sightings,
        });
    }
    Ok(CircleReport {
        name: CIRCLE.into(),
        hub: CIRCLE_HUB.into(),
        members: added.members,
        outsider: OUTSIDER.into(),
        removed: CIRCLE_MEMBER.into(),
        members_after_removal: removal.members,
        removed_at_position: removal.position,
        items,
        withheld_from_outsider,
        views,
    })
}

/// A Circles API client as the member's own gateway identity.
async fn circle_client(member: &Member) -> Result<CircleServiceClient<Channel>> {
    Ok(CircleServiceClient::new(
        crate::cli::client::channel(&member.endpoint, &member.identity).await?,
    ))
}

/// The demo circle as `member`'s gateway sees it, if it has it.
async fn circle_info(member: &Member) -> Result<Option<CircleInfo>> {
    let circles = circle_client(member)
        .await?
        .list(ListCirclesRequest {})
        .await
        .map_err(crate::cli::status_error)?
        .into_inner()
        .circles;
    Ok(circles.into_iter().find(|circle| circle.name == CIRCLE))
}

/// Publishes one source-protected indicator into the demo circle, its narrative's
/// `{ref}` replaced by a marker unique to this run.
async fn publish_to_circle(
    member: &Member,
    agencies: &Path,
    agency: &str,
    mut indicator: Indicator,
    circle_members: &[String],
) -> Result<CircleItem> {
    let marker = format!(
        "GOG-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12].to_uppercase()
    );
    indicator.narrative = indicator.narrative.replace("{ref}", &marker);
    let mut client = indicator_client(&member.endpoint, &agency_dir(agencies, agency)?).await?;
    let accepted = client
        .publish(PublishRequest {
            indicators: vec![indicator],
            circle: CIRCLE.into(),
        })
        .await
        .map_err(crate::cli::status_error)?
        .into_inner()
        .accepted;
    let [accepted] = &accepted[..] else {
        bail!("the circle accepted {} indicators, not one", accepted.len());
    };
    // As the gateway signed and stored it (it marks circle indicators source-protected).
    let held = member
        .gateway
        .state
        .store
        .indicator(&accepted.id)
        .await?
        .context("the hub holds what it published into its circle")?;
    let stored = Indicator::decode(held.payload.as_slice())?;
    Ok(CircleItem {
        id: accepted.id.clone(),
        publisher: agency.into(),
        kind: kind_of(&stored),
        handling: handling_label(&stored),
        protection: protection_of(&stored),
        narrative: stored.narrative,
        marker,
        sent_to: circle_members
            .iter()
            .filter(|id| *id != member.id)
            .cloned()
            .collect(),
    })
}
