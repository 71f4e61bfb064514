//! Rules engine: readings/s through every rule for a city-sized config, one core.
//! Same code as `pollwatch bench rules`.

fn main() {
    for (enterprises, hours) in [(900, 2), (3000, 1)] {
        match pollwatch::bench::rules::rules(enterprises, hours) {
            Ok(r) => println!("{r}"),
            Err(e) => eprintln!("rules bench with {enterprises} enterprises failed: {e}"),
        }
    }
}
