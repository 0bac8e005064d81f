//! Batches run behind live traffic. While live requests are in flight and the machine's CPU is busy
//! (less than a quarter idle, from `/proc/stat`), the runner sends one line at a time and
//! rests nineteen times as long as that line took (at least 20 ms, at most 1 s): a batch then
//! takes about 5 % of one core from live requests. Otherwise it runs at full concurrency. Away
//! from Linux (no `/proc/stat`) the CPU counts as busy whenever live requests are in flight.

use std::time::{Duration, Instant};

/// How often the CPU and the live requests are looked at.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Below this share of idle CPU, the machine is busy.
const BUSY_BELOW_IDLE: f64 = 0.25;
/// Rest after each line while trickling, as a multiple of the line's time (5 % duty).
const REST_FACTOR: u32 = 19;
const MIN_REST: Duration = Duration::from_millis(20);
const MAX_REST: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Full,
    /// One line at a time, resting between lines.
    Trickle,
}

pub struct Pacer {
    sampled: Option<Instant>,
    cpu: Option<(u64, u64)>,
    mode: Mode,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer {
            sampled: None,
            cpu: None,
            mode: Mode::Full,
        }
    }
}

impl Pacer {
    /// The mode now, given the live requests in flight (`Metrics::in_flight`: every HTTP
    /// request; a batch's lines never pass the HTTP layer).
    pub fn mode(&mut self, live_in_flight: u64) -> Mode {
        let now = Instant::now();
        if self.sampled.is_some_and(|at| now - at < SAMPLE_EVERY) {
            return self.mode;
        }
        self.sampled = Some(now);
        let live = live_in_flight > 0;
        let cpu = cpu_times();
        let busy = match (self.cpu, cpu) {
            (Some((idle0, total0)), Some((idle1, total1))) if total1 > total0 => {
                ((idle1.saturating_sub(idle0)) as f64 / (total1 - total0) as f64) < BUSY_BELOW_IDLE
            }
            (_, None) => true,
            _ => false,
        };
        self.cpu = cpu;
        self.mode = if live && busy {
            Mode::Trickle
        } else {
            Mode::Full
        };
        self.mode
    }

    /// How long to rest after a line that took `took`, while trickling.
    pub fn rest(took: Duration) -> Duration {
        (took * REST_FACTOR).clamp(MIN_REST, MAX_REST)
    }
}

/// The machine's idle and total CPU time (jiffies), from the first line of `/proc/stat`.
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_line(stat.lines().next()?)
}

fn parse_cpu_line(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.split_ascii_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let values: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user already).
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3)? + values.get(4).copied().unwrap_or(0);
    Some((idle, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cpu_line_is_read() {
        assert_eq!(
            parse_cpu_line("cpu  100 5 50 800 45 0 0 0 0 0"),
            Some((845, 1000))
        );
        assert_eq!(parse_cpu_line("cpu0 1 2 3 4"), None);
    }

    #[test]
    fn rests_are_bounded() {
        assert_eq!(Pacer::rest(Duration::from_micros(100)), MIN_REST);
        assert_eq!(
            Pacer::rest(Duration::from_millis(10)),
            Duration::from_millis(190)
        );
        assert_eq!(Pacer::rest(Duration::from_secs(5)), MAX_REST);
    }

    #[test]
    fn without_live_requests_it_runs_full() {
        let mut pacer = Pacer::default();
        assert_eq!(pacer.mode(0), Mode::Full);
        pacer.sampled = None;
        assert_eq!(pacer.mode(0), Mode::Full);
    }
}
