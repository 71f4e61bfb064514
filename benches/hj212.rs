//! HJ 212: codec frames/s on one core (2017 frames, and 2025 frames with SM4 data
//! areas), and end to end from simulated loggers to
//! durable SQLite with 9014 answers. Same code as `pollwatch bench hj212-codec` and
//! `pollwatch bench hj212`.

fn main() {
    println!("{}", pollwatch::bench::hj212::codec(2_000_000, false));
    println!("{}", pollwatch::bench::hj212::codec(500_000, true));
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    for (loggers, per, sm4) in [
        (50, 400, false),
        (200, 200, false),
        (1000, 40, false),
        (200, 200, true),
    ] {
        let url = format!("sqlite://{}/e2e-{loggers}-{sm4}.db", dir.path().display());
        match rt.block_on(pollwatch::bench::hj212::end_to_end(&url, loggers, per, sm4)) {
            Ok(r) => println!("{r}"),
            Err(e) => eprintln!("end-to-end bench with {loggers} loggers failed: {e}"),
        }
    }
}
