//! The steady-rate HJ 212 benchmark's machinery at a tiny scale: a child fleet of
//! five loggers uploading every second through a real server into SQLite, the
//! window's frames and readings counted from what was stored, and both idle floors
//! taken. No CPU or wall-clock figure is asserted — only that the counting works.

use std::time::Duration;

use pollwatch::bench::hj212_steady::{steady, SteadyOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_stored_frames_and_takes_both_floors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = SteadyOptions {
        url: format!("sqlite://{}/steady.db", dir.path().display()),
        loggers: 5,
        interval_secs: 1,
        seconds: 3,
        idle_seconds: 1,
        factors: 10,
        min_warmup: Duration::from_secs(1),
        fleet_exe: env!("CARGO_BIN_EXE_pollwatch").into(),
    };
    let r = steady(&opts).await.expect("benchmark runs");
    assert!(r.frames > 0, "no frames stored: {r}");
    // Every stored frame was a new DataTime: ten readings each, none duplicate
    // (a frame committed at the window's edge may be answered after it).
    assert!(r.readings > 0 && r.readings % 10 == 0, "{r}");
    assert!(r.readings.abs_diff(r.frames * 10) <= 5 * 10, "{r}");
    assert_eq!(r.duplicates, 0, "{r}");
    assert_eq!(r.rejected, 0, "{r}");
    assert!(r.fleet.acked > 0 && r.fleet.failed == 0, "{r}");
    assert_eq!(r.idle.connected, 5, "{r}");
    assert_eq!(r.idle.frames, 0, "the fleet kept sending while idle: {r}");
    assert_eq!(r.empty.connected, 0, "{r}");
    assert_eq!(r.empty.frames, 0, "{r}");
    let text = r.to_string();
    assert!(text.contains("per stored frame") && text.contains("idle floor"));
}
