//! `pollwatch alerts export ID --out DIR`: an alert's record for a penalty case
//! file, as files an enforcement unit can archive and a court can check:
//!
//! - `alert-ID.json` — the alert, every finding with its evidence (values, flags,
//!   averages, the limit with the file and key it came from), the timeline with
//!   its hash chain and whether it verifies, every notification and delivery
//!   attempt, and the readings around the alert that the chart draws;
//! - `alert-ID.svg`, `alert-ID.png` — the evidence chart (absent for alerts with
//!   no single series, such as offline);
//! - `verification.md` — the verification report in Chinese: what was checked
//!   (keyed chain, alert facts, findings, readings, anchors) and what was found;
//! - `anchor-YYYY-MM-DD.json` — each daily anchor the alert's rows fall under,
//!   with the audit paths of its leaves in `alert-ID.json` (`anchors`), so that
//!   a third party checks the record against a published anchor without the key
//!   (`pollwatch evidence check DIR`);
//! - `SHA256SUMS` — `sha256sum -c` checks that the files match each other.
//!
//! The export reads; it changes nothing in the store.

use std::path::Path;

use anyhow::Context as _;
use pollwatch::config::Config;
use pollwatch::evidence;
use pollwatch::store::{FindingQuery, Store};
use pollwatch::timefmt::rfc3339_local;
use sha2::{Digest, Sha256};

/// Writes the files and returns their names with SHA-256, in the order written.
pub async fn export(
    store: &Store,
    cfg: &Config,
    id: i64,
    out: &Path,
) -> anyhow::Result<Vec<(String, String)>> {
    let now = chrono::Utc::now();
    let tz = cfg.timezone;
    let alert = store
        .alert(id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no alert #{id}"))?;
    let timeline = store.alert_events(id).await?;
    let checked = evidence::report::verify(store, &cfg.state_dir, id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no alert #{id}"))?;
    let anchors = evidence::anchor::read_dir(&evidence::anchor::anchor_dir(&cfg.state_dir));
    let findings = store
        .findings(&FindingQuery {
            alert: Some(id),
            limit: 100_000,
            ..Default::default()
        })
        .await?;
    let chart =
        match evidence::alert_chart(store, cfg, id, now, evidence::ChartWindow::default()).await {
            Ok(c) => c,
            Err(evidence::EvidenceError::NotChartable { .. }) => None,
            Err(e) => return Err(e.into()),
        };
    let readings: Vec<serde_json::Value> = chart
        .iter()
        .flat_map(|c| &c.points)
        .map(|p| {
            serde_json::json!({
                "ts": rfc3339_local(p.ts, tz),
                "value": p.value,
                "flag": p.flag.as_str(),
            })
        })
        .collect();
    // Conflicting resends in the chart's window: both values, both sources.
    let conflicts = match &chart {
        Some(c) => {
            let location = pollwatch::rules::finding::parse_location(&alert.location);
            match location {
                Some(loc) => {
                    store
                        .conflicts(&pollwatch::store::ReadingQuery {
                            from: Some(c.from),
                            to: Some(c.to),
                            ..pollwatch::store::ReadingQuery::new(
                                alert.enterprise.clone(),
                                loc.kind(),
                                loc.id().to_string(),
                            )
                            .factor(c.factor.clone())
                        })
                        .await?
                }
                None => Vec::new(),
            }
        }
        None => Vec::new(),
    };
    let record = serde_json::json!({
        "exported_at": rfc3339_local(now, tz),
        "alert": alert,
        "findings": findings.iter().map(|f| serde_json::json!({
            "id": f.id,
            "stored_at": rfc3339_local(f.created, tz),
            "rule": f.finding.rule.as_str(),
            "severity": f.finding.severity.as_str(),
            "window_start": rfc3339_local(f.finding.window_start, tz),
            "window_end": rfc3339_local(f.finding.window_end, tz),
            "value": f.finding.value,
            "threshold": f.finding.threshold,
            "message": f.finding.message,
            "evidence": f.finding.evidence,
        })).collect::<Vec<_>>(),
        "timeline": timeline,
        "timeline_intact": pollwatch::store::verify_chain_with(store.keys(), &timeline).is_ok(),
        "key_ids": checked.store.key_ids,
        "verification": checked,
        "anchors": evidence::anchor::proofs(id, &anchors),
        "notifications": store.outbox(None, Some(id), 10_000).await?,
        "attempts": store.alert_attempts(id).await?,
        "readings": {
            "factor": chart.as_ref().map(|c| c.factor.clone()),
            "unit": chart.as_ref().map(|c| c.unit.clone()),
            "from": chart.as_ref().map(|c| rfc3339_local(c.from, tz)),
            "to": chart.as_ref().map(|c| rfc3339_local(c.to, tz)),
            "values": readings,
            "conflicting_resends": conflicts.iter().map(|c| conflict_json(c, tz)).collect::<Vec<_>>(),
        },
    });
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut files = vec![
        (
            format!("alert-{id}.json"),
            serde_json::to_vec_pretty(&record)?,
        ),
        (
            "verification.md".to_string(),
            checked.report_zh().into_bytes(),
        ),
    ];
    for (path, a) in &anchors {
        if let Ok(a) = a {
            if a.leaves.iter().any(|l| l.alert == id) {
                let bytes =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                files.push((format!("anchor-{}.json", a.date), bytes));
            }
        }
    }
    if let Some(c) = &chart {
        let svg = evidence::render_svg(c);
        let png = evidence::render_png(&svg, &evidence::Fonts::system(), evidence::PNG_SCALE)?;
        files.push((format!("alert-{id}.svg"), svg.into_bytes()));
        files.push((format!("alert-{id}.png"), png));
    }
    let mut sums = Vec::new();
    for (name, bytes) in &files {
        let path = out.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        sums.push((name.clone(), hex(&Sha256::digest(bytes))));
    }
    let manifest: String = sums
        .iter()
        .map(|(name, hash)| format!("{hash}  {name}\n"))
        .collect();
    let path = out.join("SHA256SUMS");
    std::fs::write(&path, manifest).with_context(|| format!("writing {}", path.display()))?;
    Ok(sums)
}

/// One conflicting resend for the case file and `pollwatch readings --json`.
pub(crate) fn conflict_json(
    c: &pollwatch::store::Conflict,
    tz: chrono_tz::Tz,
) -> serde_json::Value {
    serde_json::json!({
        "factor": c.factor,
        "kind": c.kind.as_str(),
        "stat": c.stat.as_str(),
        "converted": c.converted,
        "ts": rfc3339_local(c.ts, tz),
        "stored": {
            "value": c.first_value,
            "flag": c.first_flag.as_str(),
            "source": {"protocol": c.first_protocol.as_str(), "device": c.first_device},
            "received": rfc3339_local(c.first_received, tz),
        },
        "resent": {
            "value": c.value,
            "flag": c.flag.as_str(),
            "source": {"protocol": c.protocol.as_str(), "device": c.device},
            "received": rfc3339_local(c.received, tz),
        },
    })
}

/// Lower-case hex, as `sha256sum` prints.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
