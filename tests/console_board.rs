//! The alert board's store query on SQLite and PostgreSQL: live alerts before
//! resolved ones, most severe then newest first; filters; counts over every
//! page; recently resolved only; the change mark moves on every change.

#[macro_use]
mod common;

use chrono::{Duration, TimeZone, Utc};
use common::console::seed_alert;
use pollwatch::store::{AlertState, BoardQuery, Store, StoreOptions};

async fn board(url: &str) {
    let store = Store::open(url, &StoreOptions::default()).await.unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 11, 27, 1, 0, 0).unwrap();
    let at = |m: i64| t0 + Duration::minutes(m);
    let mark0 = store.board_mark().await.unwrap();
    let minor = seed_alert(
        &store,
        "E1",
        "outlet:A",
        "a21026",
        "exceedance",
        "minor",
        1.0,
        at(0),
    )
    .await;
    let crit_old = seed_alert(
        &store,
        "E1",
        "outlet:B",
        "a21026",
        "exceedance",
        "critical",
        1.0,
        at(1),
    )
    .await;
    let major = seed_alert(
        &store,
        "E2",
        "outlet:C",
        "a21002",
        "offline",
        "major",
        1.0,
        at(2),
    )
    .await;
    let crit_new = seed_alert(
        &store,
        "E2",
        "outlet:D",
        "a21026",
        "exceedance",
        "critical",
        1.0,
        at(3),
    )
    .await;
    let gone = seed_alert(
        &store,
        "E3",
        "outlet:E",
        "a21026",
        "exceedance",
        "critical",
        1.0,
        at(4),
    )
    .await;
    let old_resolved = seed_alert(
        &store,
        "E3",
        "outlet:F",
        "a21026",
        "exceedance",
        "critical",
        1.0,
        at(5),
    )
    .await;
    let mark1 = store.board_mark().await.unwrap();
    assert_ne!(mark0, mark1);
    assert_eq!((mark1.alerts, mark1.last_id), (6, old_resolved));

    store
        .transition_alert(major, AlertState::Acknowledged, "desk", "", at(10))
        .await
        .unwrap()
        .unwrap();
    let mark2 = store.board_mark().await.unwrap();
    assert_ne!(mark1, mark2, "an acknowledgement moves the mark");
    store
        .transition_alert(old_resolved, AlertState::Resolved, "desk", "", at(11))
        .await
        .unwrap()
        .unwrap();
    store
        .transition_alert(gone, AlertState::Resolved, "desk", "", at(30))
        .await
        .unwrap()
        .unwrap();

    let q = BoardQuery {
        resolved_since: at(20),
        limit: 100,
        ..Default::default()
    };
    let page = store.board(&q).await.unwrap();
    let ids: Vec<i64> = page.rows.iter().map(|a| a.id).collect();
    assert_eq!(
        ids,
        vec![crit_new, crit_old, major, minor, gone],
        "live by severity and age, then resolved; the old resolved one is gone"
    );
    assert_eq!(
        (page.open, page.acknowledged, page.resolved, page.total()),
        (3, 1, 1, 5)
    );

    // One row per page; the counts are over all pages.
    let p2 = store
        .board(&BoardQuery {
            offset: 1,
            limit: 1,
            ..q.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        p2.rows.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![crit_old]
    );
    assert_eq!(p2.total(), 5);

    let district = store
        .board(&BoardQuery {
            enterprises: Some(vec!["E1".into(), "E3".into()]),
            ..q.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        district.rows.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![crit_old, minor, gone]
    );
    let none = store
        .board(&BoardQuery {
            enterprises: Some(vec![]),
            ..q.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        (none.rows.len(), none.total()),
        (0, 0),
        "a district without enterprises"
    );
    let narrowed = store
        .board(&BoardQuery {
            enterprise: Some("E2".into()),
            severity: Some("critical".into()),
            rule: Some("exceedance".into()),
            ..q.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        narrowed.rows.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![crit_new]
    );
    assert_eq!(
        store.alert_rules().await.unwrap(),
        vec!["exceedance", "offline"]
    );
}

both_backends!(board);
