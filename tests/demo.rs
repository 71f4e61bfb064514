//! `pollwatch demo` as a newcomer runs it: the built binary, its own temporary
//! state, simulators and duty-officer receiver. The test reads what the officer
//! received (stdout) and checks each scenario's alert by enterprise and rule.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Kills the demo if the test fails before it exits, so none is left behind.
struct Running(Option<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Output {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `pollwatch demo ARGS` to its end; a demo still running after `limit`
/// is a failure (it must stop by itself).
fn demo(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pollwatch"))
        .arg("demo")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
    let mut running = Running(Some(child));
    let deadline = Instant::now() + limit;
    let status = loop {
        let c = running.0.as_mut().unwrap();
        if let Some(s) = c.try_wait().unwrap() {
            running.0 = None;
            break s;
        }
        if Instant::now() > deadline {
            drop(running);
            panic!(
                "demo still running after {limit:?}; stdout so far:\n{}",
                out.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// The officer's messages: the printed cards, one string each.
fn cards(stdout: &str) -> Vec<String> {
    stdout
        .split("┌─")
        .skip(1)
        .map(|c| c.split("\n\n").next().unwrap_or("").to_string())
        .collect()
}

fn state_dir(stdout: &str) -> PathBuf {
    let line = stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("state "))
        .unwrap_or_else(|| panic!("no state line in:\n{stdout}"));
    PathBuf::from(line.split_whitespace().next().unwrap())
}

const POWER: &str = "91320506MA1PW0001A";
const WWTP: &str = "12320506MB1PW0002B";
const DYEING: &str = "91320507MA1PW0003C";
const CHEMICAL: &str = "91320508MA1PW0004D";
const CEMENT: &str = "91320509MA1PW0005E";

fn has_alert(cards: &[String], enterprise: &str, rule: &str, factor: Option<&str>) -> bool {
    cards.iter().any(|c| {
        c.contains(&format!("企业代码 {enterprise}"))
            && c.contains(&format!("（{rule}）"))
            && factor.is_none_or(|f| c.contains(&format!(" {f}\n")))
    })
}

#[test]
fn every_scenario_reaches_the_duty_officer_and_the_state_is_removed() {
    let out = demo(
        &["--exit-when-done", "--timeout", "120s"],
        Duration::from_secs(180),
    );
    let context = format!("stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    assert!(out.status.success(), "exit {:?}\n{context}", out.status);
    let cards = cards(&out.stdout);

    // The four scenarios, each by its enterprise, rule and (where it has one) factor.
    assert!(
        has_alert(&cards, POWER, "exceedance", Some("a21026")),
        "power plant SO2 exceedance\n{context}"
    );
    assert!(
        has_alert(&cards, WWTP, "exceedance", Some("w01001")),
        "wastewater pH\n{context}"
    );
    assert!(
        has_alert(&cards, DYEING, "treatment_not_running", None),
        "dyeing factory linkage\n{context}"
    );
    assert!(
        has_alert(&cards, CHEMICAL, "offline", None),
        "silent logger\n{context}"
    );
    // The exceedance card carries the numbers the officer needs.
    let so2 = cards
        .iter()
        .find(|c| c.contains(POWER) && c.contains("（exceedance）"))
        .unwrap();
    assert!(so2.contains("小时均值(折算)"), "{so2}");
    assert!(so2.contains("mg/m³，限值 35"), "{so2}");

    // Near cases: the normal enterprise and the power plant's normal NOx stay quiet.
    assert!(
        !cards.iter().any(|c| c.contains(CEMENT)),
        "西山水泥 is within limits and must not alert\n{context}"
    );
    assert!(
        !has_alert(&cards, POWER, "exceedance", Some("a21002")),
        "{context}"
    );
    assert!(
        out.stdout.contains("from 西山水泥 (all normal): 0"),
        "{context}"
    );
    for key in ["so2", "ph", "linkage", "offline"] {
        assert!(
            out.stdout.contains(&format!("✔ {key} ")),
            "summary lacks {key}\n{context}"
        );
    }

    let dir = state_dir(&out.stdout);
    assert!(
        dir.to_string_lossy().contains("pollwatch-demo-"),
        "{}",
        dir.display()
    );
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

#[test]
fn keep_state_leaves_the_config_and_database_behind() {
    let out = demo(
        &["--duration", "2s", "--keep-state"],
        Duration::from_secs(60),
    );
    let context = format!("stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    assert!(out.status.success(), "exit {:?}\n{context}", out.status);
    let dir = state_dir(&out.stdout);
    assert!(
        out.stdout
            .contains(&format!("state kept in {}", dir.display())),
        "{context}"
    );
    let kept = (
        dir.join("config/pollwatch.toml").is_file(),
        dir.join("config/enterprises/dongshan-power.toml").is_file(),
        dir.join("state/pollwatch.db").is_file(),
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(kept, (true, true, true), "{context}");
}

/// 西山水泥's logger loses its link from simulated minute 56 to 72 (at 300×,
/// 11 to 14 s); once back it is asked for the first hour, whose hourly mean it
/// kept, and sends it: the summary lists the filled gap, and no alert came of it.
#[test]
fn a_logger_whose_link_drops_has_its_gap_filled_after_it_returns() {
    let out = demo(
        &["--speed", "300", "--duration", "25s"],
        Duration::from_secs(90),
    );
    let context = format!("stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    assert!(out.status.success(), "exit {:?}\n{context}", out.status);
    assert!(
        out.stdout.contains(
            "西山水泥's logger lost its link and, once back, sent what was missing on request:"
        ),
        "{context}"
    );
    let filled: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("CN 2061"))
        .collect();
    assert_eq!(filled.len(), 1, "{context}");
    assert!(filled[0].contains(": 4 values stored"), "{context}");
    assert!(
        out.stdout.contains("from 西山水泥 (all normal): 0"),
        "{context}"
    );
}

#[test]
fn a_speed_out_of_range_is_refused_before_anything_starts() {
    let out = demo(&["--speed", "1000"], Duration::from_secs(30));
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("--speed must be between 1 and 300"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}
