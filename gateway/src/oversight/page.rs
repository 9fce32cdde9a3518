//! The oversight page: one self-contained HTML document (no script, nothing loaded from
//! elsewhere) whose charts are SVG drawn on the server by `plotters`, scaled to the screen's
//! width so that the page reads on a phone. Every text on it comes from [`Figures`] and is
//! escaped.

use std::fmt::Write as _;

use plotters::prelude::*;

use super::figures::{Cell, Checkpoint, Figures};

/// The bars' colour (also what the browser test looks for in the screenshot).
pub const BAR_COLOUR: RGBColor = RGBColor(0x1f, 0x6f, 0xb4);

const CHART_SIZE: (u32, u32) = (640, 300);

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// A bar chart of the shown cells of `cells` (suppressed ones have no bar), as SVG.
fn bar_chart(cells: &[Cell]) -> Result<String, String> {
    let shown: Vec<(&str, u64)> = cells
        .iter()
        .filter_map(|cell| Some((cell.label.as_str(), cell.count?)))
        .collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, CHART_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|error| error.to_string())?;
        let highest = shown.iter().map(|(_, count)| *count).max().unwrap_or(1);
        let top = highest + highest.div_ceil(10).max(1);
        let labels: Vec<String> = shown.iter().map(|(label, _)| label.to_string()).collect();
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(56)
            .build_cartesian_2d((0..shown.len().max(1)).into_segmented(), 0..top)
            .map_err(|error| error.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(shown.len().max(1))
            .x_label_style(("sans-serif", 20))
            .y_label_style(("sans-serif", 20))
            .x_label_formatter(&|value| match value {
                SegmentValue::CenterOf(index) => labels.get(*index).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .draw()
            .map_err(|error| error.to_string())?;
        chart
            .draw_series(
                Histogram::vertical(&chart)
                    .style(BAR_COLOUR.filled())
                    .margin(8)
                    .data(
                        shown
                            .iter()
                            .enumerate()
                            .map(|(index, (_, count))| (index, *count)),
                    ),
            )
            .map_err(|error| error.to_string())?;
        root.present().map_err(|error| error.to_string())?;
    }
    Ok(svg)
}

/// A table of `cells` under the chart: the figures themselves, suppressed ones marked.
fn cell_table(cells: &[Cell], below: u64, heading: &str) -> String {
    let mut table = format!(
        "<table><thead><tr><th>{}</th><th>count</th></tr></thead><tbody>",
        escape(heading)
    );
    for cell in cells {
        let count = match cell.count {
            Some(count) => count.to_string(),
            None => format!(
                "<span class=\"suppressed\">suppressed (&lt; {below} or to protect one that is)</span>"
            ),
        };
        let _ = write!(
            table,
            "<tr><td>{}</td><td>{count}</td></tr>",
            escape(&cell.label)
        );
    }
    table.push_str("</tbody></table>");
    table
}

/// One chart with its title and table; `id` names it for tests (`data-chart`).
fn section(id: &str, title: &str, heading: &str, cells: &[Cell], below: u64) -> String {
    let chart = if cells.iter().any(|cell| cell.count.is_some()) {
        bar_chart(cells).unwrap_or_else(|error| {
            tracing::warn!(%error, chart = id, "an oversight chart could not be drawn");
            String::from("<p>The chart could not be drawn.</p>")
        })
    } else if cells.is_empty() {
        String::from("<p class=\"empty\">Nothing to count yet.</p>")
    } else {
        String::from("<p class=\"empty\">Every count here is suppressed.</p>")
    };
    format!(
        "<figure class=\"chart\" data-chart=\"{id}\"><figcaption>{}</figcaption>{chart}{}</figure>",
        escape(title),
        cell_table(cells, below, heading)
    )
}

fn checkpoint_row(checkpoint: &Checkpoint) -> String {
    format!(
        "<tr><td>{}</td><td>{}</td><td class=\"hash\">{}</td><td>{}</td></tr>",
        escape(&checkpoint.log),
        checkpoint.size,
        escape(&checkpoint.root),
        escape(&checkpoint.at)
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0 auto;max-width:72rem;\
padding:1rem;line-height:1.4;color:#1b1b1b}h1{font-size:1.5rem}h2{font-size:1.2rem;\
margin-top:2rem}.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(18rem,1fr));\
gap:1rem}figure.chart{margin:0;border:1px solid #ddd;border-radius:6px;padding:.5rem;\
min-width:0}figcaption{font-weight:600}figure.chart svg{width:100%;height:auto;display:block}\
table{border-collapse:collapse;width:100%;font-size:.9rem}td,th{text-align:left;\
padding:.2rem .4rem;border-bottom:1px solid #eee}.suppressed,.empty{color:#666}\
.hash{font-family:monospace;word-break:break-all}pre{white-space:pre-wrap;word-break:break-all;\
font-size:.8rem;background:#f6f6f6;padding:.5rem}.scroll{overflow-x:auto}";

/// The whole page.
pub fn render(figures: &Figures) -> String {
    let below = figures.suppress_below;
    let indicators = &figures.indicators;
    let mut page = String::with_capacity(64 * 1024);
    let _ = write!(
        page,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Cordon oversight: {member}</title><style>{STYLE}</style></head><body>\
         <h1>Oversight of the Cordon gateway of {member}</h1>\
         <p>Aggregate figures only, computed {generated}. Counts below {below} are suppressed, \
         with as many others as it takes so that none can be worked out from the rest. \
         Indicators held in circles of trusted partners, and decisions inside them, are not \
         counted. The same figures as JSON: <a href=\"/oversight.json\">/oversight.json</a>.</p>",
        member = escape(&figures.member),
        generated = escape(&figures.generated_at),
    );
    page.push_str("<h2>Indicators</h2><div class=\"charts\">");
    for (direction, figures) in [
        ("published", &indicators.published),
        ("received", &indicators.received),
    ] {
        page.push_str(&section(
            &format!("{direction}-by-month"),
            &format!("Indicators {direction}, by month"),
            "month",
            &figures.by_month,
            below,
        ));
        page.push_str(&section(
            &format!("{direction}-by-kind"),
            &format!("Indicators {direction}, by kind"),
            "kind",
            &figures.by_kind,
            below,
        ));
        page.push_str(&section(
            &format!("{direction}-by-tlp"),
            &format!("Indicators {direction}, by TLP"),
            "TLP",
            &figures.by_tlp,
            below,
        ));
    }
    page.push_str("</div><h2>Release decisions</h2><div class=\"charts\">");
    page.push_str(&section(
        "decisions-by-outcome",
        "Release decisions, by outcome",
        "outcome",
        &figures.decisions.by_outcome,
        below,
    ));
    page.push_str(&section(
        "decisions-by-recipient-class",
        "Release decisions, by recipient class",
        "recipients",
        &figures.decisions.by_recipient_class,
        below,
    ));
    page.push_str("</div><h2>Alerts</h2><div class=\"charts\">");
    page.push_str(&section(
        "alerts-by-month",
        "Alerts raised by screening, by month",
        "month",
        &figures.alerts.by_month,
        below,
    ));
    page.push_str(
        "</div><h2>Policy revisions</h2><p>Each revision of the sharing policy and the days \
         (UTC) between its first and last release decision in the decision log.</p>\
         <div class=\"scroll\"><table data-table=\"policy-revisions\"><thead><tr>\
         <th>revision</th><th>first decision</th><th>last decision</th><th>decisions</th>\
         </tr></thead><tbody>",
    );
    for revision in &figures.policy_revisions {
        let count = match revision.decisions.count {
            Some(count) => count.to_string(),
            None => "<span class=\"suppressed\">suppressed</span>".to_string(),
        };
        let _ = write!(
            page,
            "<tr><td class=\"hash\">{}</td><td>{}</td><td>{}</td><td>{count}</td></tr>",
            escape(&revision.revision),
            escape(revision.first_decision.as_deref().unwrap_or("suppressed")),
            escape(revision.last_decision.as_deref().unwrap_or("suppressed"))
        );
    }
    page.push_str(
        "</tbody></table></div><h2>Verifiable record</h2><p>The latest checkpoint of this \
         gateway's audit log, and the latest checkpoint of each partner gateway's log that \
         this gateway checked (each one proven to extend the one before). Anyone with the \
         gateway's public key can check the signed note with <code>cordon audit verify</code>.\
         </p><div class=\"scroll\"><table data-table=\"checkpoints\"><thead><tr><th>log</th>\
         <th>entries</th><th>root (base64)</th><th>at</th></tr></thead><tbody>",
    );
    page.push_str(&checkpoint_row(&figures.checkpoints.own));
    for peer in &figures.checkpoints.peers {
        page.push_str(&checkpoint_row(peer));
    }
    let _ = write!(
        page,
        "</tbody></table></div><p>This gateway's signed checkpoint:</p><pre>{}</pre></body></html>",
        escape(&figures.checkpoints.own.note)
    );
    page
}

#[cfg(test)]
mod tests {
    use super::super::figures::*;
    use super::*;

    fn cell(label: &str, count: Option<u64>) -> Cell {
        Cell {
            label: label.to_string(),
            count,
            suppressed: count.is_none(),
        }
    }

    fn figures() -> Figures {
        let checkpoint = Checkpoint {
            log: "cordon.example/GH".into(),
            size: 12,
            root: "AAAA".into(),
            note: "cordon.example/GH\n12\nAAAA\n\n— sig\n".into(),
            at: "2026-12-06T10:00:00Z".into(),
        };
        Figures {
            member: "GH".into(),
            generated_at: "2026-12-06T10:00:00Z".into(),
            suppress_below: 5,
            indicators: Indicators {
                published: IndicatorFigures {
                    by_kind: vec![cell("vessel", Some(7)), cell("<b>", None)],
                    by_tlp: vec![cell("TLP:GREEN", Some(9))],
                    by_month: vec![cell("2026-12", Some(9))],
                },
                received: IndicatorFigures {
                    by_kind: vec![],
                    by_tlp: vec![],
                    by_month: vec![],
                },
            },
            decisions: Decisions {
                by_outcome: vec![cell("released", Some(20)), cell("denied", Some(6))],
                by_recipient_class: vec![cell("own agencies", Some(26))],
            },
            alerts: Alerts { by_month: vec![] },
            policy_revisions: vec![],
            checkpoints: Checkpoints {
                own: checkpoint,
                peers: vec![],
            },
        }
    }

    #[test]
    fn the_page_draws_a_chart_per_shown_breakdown_and_escapes_its_text() {
        let page = render(&figures());
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert_eq!(page.matches("<svg").count(), 5, "{page}");
        assert!(page.contains("data-chart=\"published-by-kind\""));
        assert!(page.contains("&lt;b&gt;"));
        assert!(!page.contains("<b>"));
        assert!(page.contains("Nothing to count yet."));
        assert!(!page.contains("<script"), "the page runs no script");
        assert!(
            !page.contains(" src=") && !page.contains("<link") && !page.contains("url("),
            "the page loads nothing from elsewhere"
        );
        let colour = format!(
            "#{:02X}{:02X}{:02X}",
            BAR_COLOUR.0, BAR_COLOUR.1, BAR_COLOUR.2
        );
        assert!(page.to_uppercase().contains(&colour), "bars in {colour}");
    }
}
