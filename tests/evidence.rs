//! Evidence that holds up (issue 18), on SQLite and PostgreSQL: a keyed chain
//! that covers the alert's own facts, its findings and the readings they were
//! judged on; `verify` names what changed — a forged actor with a recomputed
//! unkeyed chain, an edited alert value, an edited or deleted reading in the
//! window, a deleted last row (against the anchor); triggers refuse UPDATE and
//! DELETE on the append-only tables; retention is the one logged way out.

#[macro_use]
mod common;

use chrono::{DateTime, Duration, Utc};
use pollwatch::evidence::anchor;
use pollwatch::rules::{Evidence, Finding, LimitRef, RuleName, Severity};
use pollwatch::seal::Keyring;
use pollwatch::store::chain::{hash_v2, Fields};
use pollwatch::store::{
    AlertPolicy, AlertState, Batch, FindingOnAlert, NewAlert, Received, Store, StoreOptions,
    Verdict,
};

const KEY: [u8; 32] = [0x5a; 32];

fn t0() -> DateTime<Utc> {
    common::t0()
}

async fn open(url: &str, keys: Keyring) -> Store {
    Store::open(
        url,
        &StoreOptions {
            keys,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

fn finding(value: f64) -> Finding {
    Finding {
        rule: RuleName::Exceedance,
        severity: Severity::Violation,
        enterprise: "E1".into(),
        location: Some(pollwatch::model::Location::Outlet("DA001".into())),
        factor: "a21026".into(),
        window_start: t0(),
        window_end: t0() + Duration::hours(1),
        at: t0() + Duration::hours(1),
        value: Some(value),
        threshold: Some(35.0),
        detail: "outlets[0].limits[0]".into(),
        message: format!("a21026 小时均值 {value} mg/m³，限值 35"),
        evidence: Evidence {
            average: Some(value),
            limit: Some(LimitRef {
                min: None,
                max: Some(35.0),
                basis: "hour".into(),
                warn_at: None,
                o2_reference: None,
                file: "enterprises/e1.toml".into(),
                key: "outlets[0].limits[0]".into(),
            }),
            ..Default::default()
        },
    }
}

/// Readings every 10 minutes of the hour, a finding on them, its alert, and an
/// acknowledgement by token `op1` for `zhangwei`. Returns the alert id.
async fn seed(store: &Store) -> i64 {
    let readings = (0..6)
        .map(|i| common::reading("DA001", "a21026", i * 600, 40.0 + i as f64))
        .collect();
    store
        .commit(&[Received {
            at: t0() + Duration::minutes(55),
            batch: Batch::readings(readings),
        }])
        .await
        .unwrap();
    let f = finding(42.5);
    let now = t0() + Duration::hours(1);
    let fid = store
        .insert_findings(std::slice::from_ref(&f), now)
        .await
        .unwrap()[0]
        .unwrap();
    let evidence = serde_json::json!({
        "finding_id": fid,
        "rule": f.rule.as_str(),
        "factor": f.factor,
        "window_start": f.window_start,
        "window_end": f.window_end,
        "value": f.value,
        "threshold": f.threshold,
        "message": f.message,
        "evidence": f.evidence,
    })
    .to_string();
    let item = FindingOnAlert {
        alert: NewAlert {
            key: "E1|outlet:DA001|a21026|exceedance".into(),
            enterprise: "E1".into(),
            location: "outlet:DA001".into(),
            factor: "a21026".into(),
            rule: "exceedance".into(),
            severity: "violation".into(),
            rank: 2,
            value: f.value,
            threshold: f.threshold,
            message: f.message.clone(),
            facts: serde_json::json!({"window_start": f.window_start}).to_string(),
        },
        finding_id: Some(fid),
        evidence,
        window_start: f.window_start,
        window_end: f.window_end,
        first_steps: vec!["L1R0".into()],
        inhibited_by: None,
    };
    let policy = AlertPolicy {
        flap_window: Duration::hours(1),
        flap_limit: 10,
        rank_of: |s| u8::from(s == "violation") * 2,
    };
    let rec = store.record_findings(&[item], &policy, now).await.unwrap();
    let id = rec[0].alert_id;
    store
        .transition_alert_for(
            id,
            AlertState::Acknowledged,
            "op1",
            Some("zhangwei"),
            "已电话核实",
            now + Duration::minutes(5),
        )
        .await
        .unwrap()
        .expect("acknowledged");
    id
}

/// Runs raw SQL as the database's owner would (the daemon's role cannot).
async fn sql(url: &str, stmts: &[&str]) -> Result<(), String> {
    use sqlx::Connection;
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        for s in stmts {
            sqlx::query(s)
                .execute(&mut c)
                .await
                .map_err(|e| e.to_string())?;
        }
        c.close().await.ok();
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        for s in stmts {
            sqlx::query(s)
                .execute(&mut c)
                .await
                .map_err(|e| e.to_string())?;
        }
        c.close().await.ok();
    }
    Ok(())
}

fn pg(url: &str) -> bool {
    !url.starts_with("sqlite:")
}

async fn drop_event_triggers(url: &str) {
    if pg(url) {
        sql(
            url,
            &["ALTER TABLE alert_events DISABLE TRIGGER alert_events_append_only"],
        )
        .await
    } else {
        sql(
            url,
            &[
                "DROP TRIGGER alert_events_append_only_u",
                "DROP TRIGGER alert_events_append_only_d",
            ],
        )
        .await
    }
    .unwrap();
}

async fn drop_reading_triggers(url: &str) {
    if pg(url) {
        sql(
            url,
            &[
                "ALTER TABLE readings DISABLE TRIGGER readings_append_only_u",
                "ALTER TABLE readings DISABLE TRIGGER readings_append_only_d",
            ],
        )
        .await
    } else {
        sql(
            url,
            &[
                "DROP TRIGGER readings_append_only_u",
                "DROP TRIGGER readings_append_only_d",
                "DROP TRIGGER readings_recent_append_only_u",
                "DROP TRIGGER readings_recent_append_only_d",
            ],
        )
        .await
    }
    .unwrap();
}

async fn reading_tables(url: &str) -> Vec<&'static str> {
    if pg(url) {
        vec!["readings"]
    } else {
        vec!["readings", "readings_recent"]
    }
}

async fn intact_and_keyed(url: &str) {
    let store = open(url, Keyring::from_bytes(KEY, &[])).await;
    let id = seed(&store).await;
    let r = store.verify_alert(id).await.unwrap().unwrap();
    assert_eq!(r.verdict, Verdict::Intact, "{r:#?}");
    assert_eq!(r.keyed_rows, r.rows);
    let events = store.alert_events(id).await.unwrap();
    let opened = &events[0];
    assert_eq!(opened.kind, "opened");
    assert!(opened.readings.contains("a21026"), "{}", opened.readings);
    assert_eq!(opened.readings_digest.len(), 64);
    // True actor: the token; the client's word apart.
    let ack = events.iter().find(|e| e.kind == "acknowledged").unwrap();
    assert_eq!(ack.actor, "op1");
    assert_eq!(ack.on_behalf_of.as_deref(), Some("zhangwei"));
    assert_eq!(
        store.alert(id).await.unwrap().unwrap().acked_by.as_deref(),
        Some("op1")
    );

    // Without the key the same rows are "not keyed"... no: they are under a key
    // this ring lacks, which verify says rather than calling them intact.
    store.close().await;
    let other = open(url, Keyring::default()).await;
    let r = other.verify_alert(id).await.unwrap().unwrap();
    assert_eq!(r.verdict, Verdict::NotKeyed, "{r:#?}");
    assert_eq!(r.unknown_key_rows.len(), r.rows);
    other.close().await;

    // After a rotation the old key still verifies the old rows.
    let rotated = open(url, Keyring::from_bytes([0x33; 32], &[KEY])).await;
    let r = rotated.verify_alert(id).await.unwrap().unwrap();
    assert_eq!(r.verdict, Verdict::Intact, "{r:#?}");
    rotated.close().await;
}

/// The attacker can write the database but not read the key: they change who
/// acknowledged and recompute the chain from that row on, without a key.
async fn forged_actor_with_recomputed_unkeyed_chain_fails(url: &str) {
    let store = open(url, Keyring::from_bytes(KEY, &[])).await;
    let id = seed(&store).await;
    let events = store.alert_events(id).await.unwrap();
    store.close().await;
    drop_event_triggers(url).await;
    let ack = events
        .iter()
        .find(|e| e.kind == "acknowledged")
        .unwrap()
        .clone();
    let prev = &events[(ack.seq - 2) as usize].hash;
    let plain = Keyring::default();
    let hash = hash_v2(
        &plain,
        &Fields {
            key_id: "",
            prev,
            alert: id,
            seq: ack.seq,
            at: ack.at.timestamp_millis(),
            kind: &ack.kind,
            actor: "zhangwei",
            on_behalf_of: None,
            detail: &ack.detail,
            facts: &ack.facts.replace("op1", "zhangwei"),
            readings_digest: &ack.readings_digest,
        },
    )
    .unwrap();
    sql(
        url,
        &[
            &format!("UPDATE alert_events SET actor = 'zhangwei', on_behalf_of = NULL, key_id = '', facts = replace(facts, 'op1', 'zhangwei'), hash = '{hash}' WHERE alert_id = {id} AND seq = {}", ack.seq),
            &format!("UPDATE alerts SET acked_by = 'zhangwei' WHERE id = {id}"),
        ],
    )
    .await
    .unwrap();
    let store = open(url, Keyring::from_bytes(KEY, &[])).await;
    let r = store.verify_alert(id).await.unwrap().unwrap();
    assert_eq!(r.verdict, Verdict::Altered, "{r:#?}");
    let row = format!("row {} ", ack.seq);
    assert!(
        r.problems
            .iter()
            .any(|p| p.starts_with(&row) && p.contains("WITHOUT a key")),
        "{r:#?}"
    );

    // Keeping the key id and forging the HMAC without the key fails too.
    sql(
        url,
        &[&format!(
            "UPDATE alert_events SET key_id = '{}' WHERE alert_id = {id} AND seq = {}",
            pollwatch::seal::key_id(&KEY),
            ack.seq
        )],
    )
    .await
    .unwrap();
    let r = store.verify_alert(id).await.unwrap().unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.starts_with(&row) && p.contains("HMAC")),
        "{r:#?}"
    );
    store.close().await;
}

async fn edited_alert_value_fails(url: &str) {
    let store = open(url, Keyring::from_bytes(KEY, &[])).await;
    let id = seed(&store).await;
    sql(
        url,
        &[&format!("UPDATE alerts SET value = 34.9 WHERE id = {id}")],
    )
    .await
    .unwrap();
    let r = store.verify_alert(id).await.unwrap().unwrap();
    assert_eq!(r.verdict, Verdict::Altered, "{r:#?}");
    assert!(
        r.problems
            .iter()
            .any(|p| p.contains("value: recorded 42.5") && p.contains("34.9")),
        "{r:#?}"
    );
    store.close().await;
}

async fn edited_or_deleted_reading_in_the_window_fails(url: &str) {
    let store = open(url, Keyring::from_bytes(KEY, &[])).await;
    let id = seed(&store).await;
    drop_reading_triggers(url).await;
    let t10 = (t0() + Duration::minutes(10)).timestamp_millis();
    let t20 = (t0() + Duration::minutes(20)).timestamp_millis();
    for table in reading_tables(url).await {
        sql(
            url,
            &[
                &format!("UPDATE {table} SET value = 30.0 WHERE ts = {t10}"),
                &format!("DELETE FROM {table} WHERE ts = {t20}"),
            ],
        )
        .await
        .unwrap();
    }
    let r = store.verify_alert(id).await.unwrap().unwrap();
    assert_eq!(r.verdict, Verdict::Altered, "{r:#?}");
    assert!(
        r.problems
            .iter()
            .any(|p| p.contains("reading EDITED") && p.contains("recorded 41 N, now 30 N")),
        "{r:#?}"
    );
    assert!(
        r.problems.iter().any(|p| p.contains("reading DELETED")),
        "{r:#?}"
    );
    store.close().await;
}

/// A late reading in the window is late data, not tampering.
async fn late_reading_is_a_note(url: &str) {
    let store = open(url, Keyring::from_bytes(KEY, &[])).await;
    let id = seed(&store).await;
    store
        .commit(&[Received {
            at: t0() + Duration::hours(3),
            batch: Batch::readings(vec![common::reading("DA001", "a21026", 3300, 39.0)]),
        }])
        .await
        .unwrap();
    let r = store.verify_alert(id).await.unwrap().unwrap();
    assert_eq!(r.verdict, Verdict::Intact, "{r:#?}");
    assert!(r.notes.iter().any(|n| n.contains("late data")), "{r:#?}");
    store.close().await;
}

async fn deleted_last_row_fails_against_the_anchor(url: &str) {
    let store = open(url, Keyring::from_bytes(KEY, &[])).await;
    let id = seed(&store).await;
    let dir = tempfile::tempdir().unwrap();
    let tz: chrono_tz::Tz = "Asia/Shanghai".parse().unwrap();
    let date = t0().with_timezone(&tz).date_naive();
    let (path, a) = anchor::write(&store, dir.path(), date, tz, Utc::now())
        .await
        .unwrap();
    assert!(a.consistent());
    assert!(a.leaves.iter().any(|l| l.alert == id && l.kind == "head"));
    // Writing it again is a no-op; the file is there.
    let (again, _) = anchor::write(&store, dir.path(), date, tz, Utc::now())
        .await
        .unwrap();
    assert_eq!(path, again);
    let events = store.alert_events(id).await.unwrap();
    let anchors = anchor::read_dir(dir.path());
    assert!(anchor::check(id, &events, &anchors).problems.is_empty());
    // The export's proofs check without the key or the database.
    let proofs = anchor::proofs(id, &anchors);
    let (lines, ok) = anchor::check_export(&events, &proofs);
    assert!(ok, "{lines:#?}");

    let last = events.last().unwrap().seq;
    drop_event_triggers(url).await;
    sql(
        url,
        &[&format!(
            "DELETE FROM alert_events WHERE alert_id = {id} AND seq = {last}"
        )],
    )
    .await
    .unwrap();
    let events = store.alert_events(id).await.unwrap();
    let check = anchor::check(id, &events, &anchors);
    assert!(
        check
            .problems
            .iter()
            .any(|p| p.contains(&format!("row {last} anchored")) && p.contains("MISSING")),
        "{check:#?}"
    );
    // An exported copy with the row edited no longer matches the published root.
    let mut forged = store.alert_events(id).await.unwrap();
    forged[0].actor = "someone".into();
    let (_, ok) = anchor::check_export(&forged, &proofs);
    assert!(!ok);
    store.close().await;
}

async fn triggers_refuse_update_and_delete(url: &str) {
    let store = open(url, Keyring::from_bytes(KEY, &[])).await;
    let id = seed(&store).await;
    store.close().await;
    if !pg(url) {
        // New readings sit in the recent tier until they are moved.
        for stmt in [
            "UPDATE readings_recent SET value = 1",
            "DELETE FROM readings_recent",
        ] {
            let e = sql(url, &[stmt]).await.expect_err(stmt);
            assert!(e.contains("readings_recent"), "{stmt}: {e}");
        }
    }
    // Moving the recent tier into the archive still works.
    let store = open(url, Keyring::from_bytes(KEY, &[])).await;
    store.compact().await.unwrap();
    assert_eq!(store.count_readings().await.unwrap(), 6);
    store.close().await;
    for stmt in [
        format!("UPDATE alert_events SET actor = 'x' WHERE alert_id = {id}"),
        format!("DELETE FROM alert_events WHERE alert_id = {id}"),
        "UPDATE findings SET value = 1".to_string(),
        "DELETE FROM findings".to_string(),
        "UPDATE readings SET value = 1".to_string(),
        "DELETE FROM readings".to_string(),
    ] {
        let e = sql(url, &[&stmt]).await.expect_err(&stmt);
        assert!(e.contains("append-only"), "{stmt}: {e}");
    }
    let store = open(url, Keyring::from_bytes(KEY, &[])).await;
    let r = store.verify_alert(id).await.unwrap().unwrap();
    assert_eq!(r.verdict, Verdict::Intact, "{r:#?}");
    store.close().await;
}

async fn retention_is_logged_and_explained(url: &str) {
    let store = open(url, Keyring::from_bytes(KEY, &[])).await;
    let id = seed(&store).await;
    let now = t0() + Duration::days(400);
    let e = store
        .retain_readings(now - Duration::days(1), "admin", now, Duration::days(30))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("less than 30 days ago"), "{e}");
    let rows = store
        .retain_readings(
            t0() + Duration::minutes(15),
            "admin",
            now,
            Duration::days(30),
        )
        .await
        .unwrap();
    assert_eq!(rows, 2);
    let runs = store.retention_runs().await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].actor.as_str(), runs[0].rows), ("admin", Some(2)));
    let r = store.verify_alert(id).await.unwrap().unwrap();
    assert_eq!(r.verdict, Verdict::Intact, "{r:#?}");
    assert!(
        r.notes
            .iter()
            .filter(|n| n.contains("removed by retention"))
            .count()
            == 2,
        "{r:#?}"
    );
    // Outside a retention run, a reading still cannot be deleted.
    store.compact().await.unwrap();
    let e = sql(url, &["DELETE FROM readings"]).await.unwrap_err();
    assert!(e.contains("append-only"), "{e}");
    store.close().await;
}

both_backends!(
    intact_and_keyed,
    forged_actor_with_recomputed_unkeyed_chain_fails,
    edited_alert_value_fails,
    edited_or_deleted_reading_in_the_window_fails,
    late_reading_is_a_note,
    deleted_last_row_fails_against_the_anchor,
    triggers_refuse_update_and_delete,
    retention_is_logged_and_explained,
);
