//! Store throughput: readings/s committed through the batched writer.
//!
//! `cargo bench --bench store` runs the SQLite case always and PostgreSQL when
//! `PW_TEST_DATABASE_URL` is set. The same measurement is `pollwatch bench store`.

use pollwatch::bench::{store, StoreBench};

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut urls = Vec::new();
    for outlets in [100, 1000] {
        urls.push((
            format!("sqlite://{}/bench-{outlets}.db", dir.path().display()),
            outlets,
        ));
    }
    if let Ok(pg) = std::env::var("PW_TEST_DATABASE_URL") {
        urls.push((pg, 1000));
    }
    for (url, outlets) in urls {
        for (per_request, senders) in [(10, 64), (1000, 16)] {
            let opts = StoreBench {
                url: url.clone(),
                readings: 1_000_000,
                per_request,
                senders,
                outlets,
            };
            match rt.block_on(store(&opts)) {
                Ok(r) => println!("{per_request:>5} readings/request, {senders:>3} senders: {r}"),
                Err(e) => eprintln!("bench failed for {url}: {e}"),
            }
        }
    }
}
