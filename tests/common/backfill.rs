//! The backfill tests' config and their wait for the request recorder.

use std::path::Path;
use std::time::Duration;

use pollwatch::config::Config;
use pollwatch::store::{BackfillRow, BackfillState, Store};

/// A config in `dir` storing at `url`, HJ 212 on a free port with the
/// `[hj212]` backfill keys `backfill_max_age` and `backfill_timeout`, and
/// `enterprise` as `enterprises/e1.toml`.
pub fn config(dir: &Path, url: &str, max_age: &str, timeout: &str, enterprise: &str) -> Config {
    let c = dir.join("config");
    std::fs::create_dir_all(c.join("enterprises")).unwrap();
    std::fs::write(
        c.join("pollwatch.toml"),
        format!(
            "[daemon]\ntimezone = \"Asia/Shanghai\"\nstate_dir = {:?}\n\n[storage]\nurl = {url:?}\n\n\
             [hj212]\nlisten = \"127.0.0.1:0\"\nbackfill_max_age = {max_age:?}\nbackfill_timeout = {timeout:?}\n",
            dir.join("state").display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(c.join("enterprises/e1.toml"), enterprise).unwrap();
    Config::load(&c, &Default::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// The requests recorded for `mn` (all of E1's when `None`) once at least `n`
/// are and none is still `sent`: the recorder writes behind the connection.
pub async fn requests(store: &Store, mn: Option<&str>, n: usize) -> Vec<BackfillRow> {
    let enterprise = mn.is_none().then_some("E1");
    let mut last = Vec::new();
    for _ in 0..100 {
        last = store
            .backfill_requests(enterprise, mn, None, 100)
            .await
            .unwrap();
        if last.len() >= n && last.iter().all(|r| r.state != BackfillState::Sent) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last
}
