//! What a process has cost so far, read from /proc (Linux): CPU seconds (user +
//! system, in the kernel's 1/100 s ticks), peak resident memory and context
//! switches summed over its threads. Benchmarks read these for themselves and for
//! the peer programs they run beside pollwatch, so both sides are measured the
//! same way — process CPU time, not wall time, which a shared machine distorts.

use std::time::Duration;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcStats {
    pub cpu: Duration,
    /// Peak resident set (VmHWM), KiB.
    pub peak_rss_kib: u64,
    /// Voluntary + involuntary context switches of every thread alive now.
    pub context_switches: u64,
}

impl ProcStats {
    /// `pid` = None: this process.
    pub fn read(pid: Option<u32>) -> Option<ProcStats> {
        let dir = match pid {
            Some(p) => format!("/proc/{p}"),
            None => "/proc/self".to_string(),
        };
        let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
        let peak_rss_kib = field_kib(&status, "VmHWM:").unwrap_or(0);
        let mut context_switches = 0;
        if let Ok(tasks) = std::fs::read_dir(format!("{dir}/task")) {
            for t in tasks.flatten() {
                let Ok(s) = std::fs::read_to_string(t.path().join("status")) else {
                    continue;
                };
                context_switches += field_kib(&s, "voluntary_ctxt_switches:").unwrap_or(0)
                    + field_kib(&s, "nonvoluntary_ctxt_switches:").unwrap_or(0);
            }
        }
        Some(ProcStats {
            cpu: Duration::from_millis((utime + stime) * 10),
            peak_rss_kib,
            context_switches,
        })
    }

    /// Cost between `earlier` and `self` (the peak is this reading's).
    pub fn since(&self, earlier: &ProcStats) -> ProcStats {
        ProcStats {
            cpu: self.cpu.saturating_sub(earlier.cpu),
            peak_rss_kib: self.peak_rss_kib,
            context_switches: self
                .context_switches
                .saturating_sub(earlier.context_switches),
        }
    }
}

/// The number after `name` on its line of a /proc status file.
fn field_kib(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(name))?;
    line.get(name.len()..)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        // Burn CPU until the kernel has counted a tick of it (bounded: a machine
        // that never schedules us for 10 s fails the test, as it should).
        let start = ProcStats::read(None).expect("/proc/self readable");
        let t = std::time::Instant::now();
        let mut x = 0u64;
        let mut now = start;
        while now.cpu == start.cpu && t.elapsed() < Duration::from_secs(10) {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
            now = ProcStats::read(None).expect("/proc/self readable");
        }
        assert!(now.cpu > start.cpu, "no CPU counted: {now:?}");
        assert!(now.peak_rss_kib > 0);
        assert_eq!(ProcStats::read(Some(u32::MAX)), None);
    }

    #[test]
    fn status_fields() {
        let s = "Name:\tx\nVmHWM:\t  1234 kB\nvoluntary_ctxt_switches:\t7\n";
        assert_eq!(field_kib(s, "VmHWM:"), Some(1234));
        assert_eq!(field_kib(s, "voluntary_ctxt_switches:"), Some(7));
        assert_eq!(field_kib(s, "VmRSS:"), None);
    }
}
