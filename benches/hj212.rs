//! HJ 212: codec frames/s on one core, and end to end from simulated loggers to
//! durable SQLite with 9014 answers. Same code as `pollwatch bench hj212-codec` and
//! `pollwatch bench hj212`.

fn main() {
    println!("{}", pollwatch::bench::hj212::codec(2_000_000));
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    for (loggers, per) in [(50, 400), (200, 200), (1000, 40)] {
        let url = format!("sqlite://{}/e2e-{loggers}.db", dir.path().display());
        match rt.block_on(pollwatch::bench::hj212::end_to_end(&url, loggers, per)) {
            Ok(r) => println!("{r}"),
            Err(e) => eprintln!("end-to-end bench with {loggers} loggers failed: {e}"),
        }
    }
}
