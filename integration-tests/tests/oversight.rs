//! The public oversight page of a real `cordon serve` (`/oversight`, `/oversight.json` on the
//! admin listener): aggregate figures that grow with what the gateway does, small counts
//! suppressed, and nothing of any indicator on it (canary strings in every field that could
//! leak). Then the page in headless Chromium (Debian's `chromium`, which `.ci/run` installs):
//! its charts are in the DOM and drawn on screen, at a desktop's width and a phone's; the
//! screenshots are kept in `target/test-artefacts/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cordon_integration_tests::{
    Federation, MemberDir, broker, http, patience, publish_ids, read_all, vessel, wait_until,
};
use cordon_proto::v1::{Indicator, Source, Tlp};

/// The bars' colour on the page (`cordon_gateway::oversight::page::BAR_COLOUR`).
const BAR: (u8, u8, u8) = (0x1f, 0x6f, 0xb4);

/// Strings that must never reach the page: narratives, a source, identifiers.
const CANARY_NARRATIVE: &str = "CANARY-NARRATIVE-7f3a";
const CANARY_SOURCE: &str = "CANARY-SOURCE-informant-91";
const CANARY_BROKER: &str = "Canary Trading FZE";
const IMO: &str = "9234563";

async fn get(address: &str, path: &str) -> Result<(u16, String)> {
    let (status, _, body) = http(address, "GET", path).await?;
    Ok((status, body))
}

fn enable_admin(member: &MemberDir, suppress_below: u64) -> Result<()> {
    let config = member.config();
    // `cordon init` writes `[oversight] suppress_below = 5`.
    let text = std::fs::read_to_string(&config)?;
    if !text.contains("suppress_below = 5\n") {
        bail!("no suppress_below in {}", config.display());
    }
    let mut text = text.replace(
        "suppress_below = 5\n",
        &format!("suppress_below = {suppress_below}\n"),
    );
    text.push_str("\n[admin]\nlisten = \"127.0.0.1:0\"\n");
    std::fs::write(config, text)?;
    Ok(())
}

fn with_canaries(mut indicator: Indicator) -> Indicator {
    indicator.source = Some(Source {
        description: CANARY_SOURCE.into(),
        reliability: "B".into(),
        credibility: 2,
        ..Default::default()
    });
    indicator
}

fn canary_broker(tlp: Tlp) -> Indicator {
    let mut indicator = broker(tlp, format!("{CANARY_NARRATIVE} broker"));
    if let Some(cordon_proto::v1::indicator::Kind::Entity(entity)) = indicator.kind.as_mut() {
        entity.name = CANARY_BROKER.into();
    }
    with_canaries(indicator)
}

/// The cells of one breakdown as (label, count) pairs; `None` for a suppressed count.
fn cells(figures: &serde_json::Value, pointer: &str) -> Vec<(String, Option<u64>)> {
    figures
        .pointer(pointer)
        .and_then(|cells| cells.as_array())
        .unwrap_or_else(|| panic!("no {pointer} in {figures}"))
        .iter()
        .map(|cell| {
            assert_eq!(
                cell["suppressed"].as_bool(),
                Some(cell["count"].is_null()),
                "{cell}"
            );
            (
                cell["label"].as_str().unwrap_or_default().to_string(),
                cell["count"].as_u64(),
            )
        })
        .collect()
}

fn assert_no_canary(text: &str, ids: &[String], what: &str) {
    for canary in [
        CANARY_NARRATIVE,
        CANARY_SOURCE,
        CANARY_BROKER,
        IMO,
        "informant",
    ] {
        assert!(!text.contains(canary), "{what} holds {canary:?}");
    }
    for id in ids {
        assert!(
            !text.contains(id.as_str()),
            "{what} holds the indicator id {id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oversight_page_shows_aggregates_suppresses_small_counts_and_leaks_nothing()
-> Result<()> {
    let federation = Federation::new()?;
    let [ghana, nigeria] = &federation.members(&["GH", "NG"])?[..] else {
        bail!("two members")
    };
    let ng_endpoint = nigeria.fix_listen_port()?;
    ghana.follow(nigeria, &ng_endpoint)?;
    enable_admin(ghana, 5)?;
    let ng = nigeria.start(&[]).await?;
    let gh = ghana.start(&[]).await?;
    let admin = gh.admin.clone().context("no admin address")?;

    // Published at GH: 8 GREEN vessels and 3 AMBER brokers, all with canaries; received from
    // NG: 6 GREEN vessels.
    let gh_customs = federation.identity("GH/customs")?;
    let mut ids = Vec::new();
    let vessels = (0..8)
        .map(|index| with_canaries(vessel(Tlp::Green, format!("{CANARY_NARRATIVE} {index}"))))
        .collect();
    ids.extend(publish_ids(&gh.endpoint, &gh_customs, vessels).await?);
    let brokers = (0..3).map(|_| canary_broker(Tlp::Amber)).collect();
    ids.extend(publish_ids(&gh.endpoint, &gh_customs, brokers).await?);
    let ng_customs = federation.identity("NG/customs")?;
    // Without a source: the reference policy withholds sources from partners, and until
    // selective disclosure a redaction for a partner gateway is a deny.
    let received = (0..6)
        .map(|index| vessel(Tlp::Green, format!("{CANARY_NARRATIVE} ng {index}")))
        .collect();
    ids.extend(publish_ids(&ng.endpoint, &ng_customs, received).await?);
    // Release decisions: GH's customs reads GH's feed.
    let read = read_all(&gh.endpoint, &gh_customs, 0, 0).await?;
    assert!(read.len() >= 11, "{} events", read.len());

    // The figures catch up with what happened (they are kept at most a few seconds).
    let figures_now = || async {
        let (status, body) = get(&admin, "/oversight.json").await?;
        if status != 200 {
            bail!("GET /oversight.json answered {status}: {body}");
        }
        Ok::<_, anyhow::Error>(serde_json::from_str::<serde_json::Value>(&body)?)
    };
    wait_until(
        "the oversight figures to count what GH received",
        || async {
            let figures = figures_now().await?;
            let months = cells(&figures, "/indicators/received/byMonth");
            Ok((
                months.iter().any(|(_, count)| *count == Some(6)),
                figures.to_string(),
            ))
        },
    )
    .await?;
    let figures = figures_now().await?;

    assert_eq!(figures["member"], "GH");
    assert_eq!(figures["suppressBelow"], 5);
    let month = cells(&figures, "/indicators/published/byMonth");
    assert_eq!(month.len(), 1, "{month:?}");
    assert_eq!(month[0].1, Some(11));
    // 3 brokers are fewer than 5: suppressed, and the vessels with them (else 11 - 8).
    let kinds = cells(&figures, "/indicators/published/byKind");
    assert_eq!(kinds.len(), 2, "{kinds:?}");
    assert!(kinds.iter().all(|(_, count)| count.is_none()), "{kinds:?}");
    let tlps = cells(&figures, "/indicators/published/byTlp");
    assert!(tlps.iter().all(|(_, count)| count.is_none()), "{tlps:?}");
    assert_eq!(
        cells(&figures, "/indicators/received/byKind"),
        [("vessel".to_string(), Some(6))]
    );
    assert_eq!(
        cells(&figures, "/indicators/received/byTlp"),
        [("TLP:GREEN".to_string(), Some(6))]
    );
    let classes = cells(&figures, "/decisions/byRecipientClass");
    assert!(
        classes
            .iter()
            .any(|(label, count)| label == "own agencies" && count.is_some_and(|n| n >= 11)),
        "{classes:?}"
    );
    assert!(
        figures["policyRevisions"]
            .as_array()
            .is_some_and(|revisions| !revisions.is_empty()),
        "{figures}"
    );
    let own = &figures["checkpoints"]["own"];
    assert!(own["size"].as_u64().is_some_and(|size| size >= 17), "{own}");
    let gh_key = ghana.public_key()?;
    let note = own["note"].as_str().context("own checkpoint note")?;
    cordon_tlog::verify_checkpoint(
        note,
        own["log"].as_str().context("origin")?,
        &hex::decode(&gh_key)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("key"))?,
    )
    .context("the page's checkpoint verifies with GH's key")?;
    let peers = figures["checkpoints"]["peers"]
        .as_array()
        .context("peer checkpoints")?;
    assert!(
        peers.iter().any(|peer| peer["log"] == "NG"),
        "GH checked NG's log: {figures}"
    );
    let json = figures.to_string();
    assert_no_canary(&json, &ids, "/oversight.json");

    let (status, html) = get(&admin, "/oversight").await?;
    assert_eq!(status, 200);
    assert_no_canary(&html, &ids, "/oversight");
    assert!(html.contains("data-chart=\"received-by-kind\""));
    assert!(html.contains("suppressed"));

    match chromium() {
        None => eprintln!(
            "skipped: the browser half (chromium is not installed; .ci/run installs Debian's \
             chromium, or set CORDON_CHROMIUM)"
        ),
        Some(browser) => {
            let url = format!("http://{admin}/oversight");
            let dom = run_chromium(&browser, &["--dump-dom", &url]).await?;
            assert_no_canary(&dom, &ids, "the rendered DOM");
            for chart in [
                "published-by-month",
                "received-by-kind",
                "received-by-tlp",
                "decisions-by-recipient-class",
            ] {
                let start = dom
                    .find(&format!("data-chart=\"{chart}\""))
                    .with_context(|| format!("chart {chart} is not in the DOM"))?;
                let figure = &dom[start..];
                let figure = &figure[..figure.find("</figure>").unwrap_or(figure.len())];
                assert!(figure.contains("<svg"), "chart {chart} has no SVG");
                assert!(
                    figure.matches("<rect").count() >= 2,
                    "chart {chart} draws no bar"
                );
            }
            let artefacts = artefact_dir()?;
            for (name, size) in [("desktop", "1280,2400"), ("phone", "390,5200")] {
                let path = artefacts.join(format!("oversight-{name}.png"));
                let _ = std::fs::remove_file(&path);
                run_chromium(
                    &browser,
                    &[
                        &format!("--screenshot={}", path.display()),
                        &format!("--window-size={size}"),
                        "--hide-scrollbars",
                        &url,
                    ],
                )
                .await?;
                let (width, bars) = bar_pixels(&path)?;
                assert!(
                    bars > 2_000,
                    "the {name} screenshot {} shows {bars} bar pixels",
                    path.display()
                );
                eprintln!(
                    "oversight page at {name} width {width}: {bars} bar pixels, screenshot {}",
                    path.display()
                );
            }
        }
    }
    gh.stop().await?;
    ng.stop().await?;
    Ok(())
}

fn chromium() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("CORDON_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
}

/// Where the screenshots are kept: `target/test-artefacts/`.
fn artefact_dir() -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("test-artefacts");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Runs headless Chromium with its own temporary profile; returns what it printed.
async fn run_chromium(browser: &Path, arguments: &[&str]) -> Result<String> {
    let profile = tempfile::tempdir()?;
    let mut command = tokio::process::Command::new(browser);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--virtual-time-budget=2000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(arguments)
        .kill_on_drop(true);
    let output = tokio::time::timeout(patience() + Duration::from_secs(30), command.output())
        .await
        .context("chromium did not finish in time")??;
    if !output.status.success() {
        bail!(
            "chromium {arguments:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The screenshot's width and how many of its pixels are the bars' colour.
fn bar_pixels(path: &Path) -> Result<(u32, usize)> {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(path).with_context(|| format!("no screenshot {}", path.display()))?,
    ));
    let mut reader = decoder.read_info()?;
    let mut buffer = vec![0; reader.output_buffer_size().context("screenshot size")?];
    let frame = reader.next_frame(&mut buffer)?;
    let channels = match frame.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => bail!("unexpected screenshot colour type {other:?}"),
    };
    let close = |a: u8, b: u8| a.abs_diff(b) <= 6;
    let bars = buffer[..frame.buffer_size()]
        .chunks_exact(channels)
        .filter(|pixel| close(pixel[0], BAR.0) && close(pixel[1], BAR.1) && close(pixel[2], BAR.2))
        .count();
    Ok((frame.width, bars))
}
