//! The standard `process_*` metrics (as Prometheus client libraries export them), read from
//! /proc at scrape time: nothing is sampled in the background and nothing is linked in.

use crate::Text;

/// Kernel clock ticks per second in /proc/<pid>/stat: USER_HZ, 100 on every Linux ABI.
const USER_HZ: f64 = 100.0;

/// Appends process_cpu_seconds_total, process_resident_memory_bytes,
/// process_virtual_memory_bytes, process_open_fds, process_max_fds and
/// process_start_time_seconds. Off Linux (no /proc) nothing is written.
pub fn render(t: &mut Text) {
    let Some(stat) = std::fs::read_to_string("/proc/self/stat").ok() else { return };
    // Fields after the command name, which is in parentheses and may contain spaces.
    let Some(fields) = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect::<Vec<_>>()) else {
        return;
    };
    // man 5 proc: field 3 is fields[0]; utime 14, stime 15, starttime 22, vsize 23.
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
    if let (Some(utime), Some(stime)) = (field(14), field(15)) {
        t.family("process_cpu_seconds_total", "counter", "User and system CPU time spent in seconds");
        t.sample("process_cpu_seconds_total", "", (utime + stime) / USER_HZ);
    }
    if let Some(rss) = status_kib("VmRSS:") {
        t.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes");
        t.sample("process_resident_memory_bytes", "", rss * 1024.0);
    }
    if let Some(vsize) = field(23) {
        t.family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes");
        t.sample("process_virtual_memory_bytes", "", vsize);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        t.family("process_open_fds", "gauge", "Number of open file descriptors");
        t.sample("process_open_fds", "", fds.count() as f64);
    }
    if let Some(max) = max_open_files() {
        t.family("process_max_fds", "gauge", "Maximum number of open file descriptors");
        t.sample("process_max_fds", "", max);
    }
    if let (Some(start_ticks), Some(boot)) = (field(22), boot_time_seconds()) {
        t.family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds");
        t.sample("process_start_time_seconds", "", boot + start_ticks / USER_HZ);
    }
}

fn status_kib(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

fn max_open_files() -> Option<f64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

fn boot_time_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn reads_this_process() {
        let mut t = crate::Text::new();
        super::render(&mut t);
        let out = t.finish();
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(out.lines().any(|l| l.starts_with(name)), "{name} missing in {out}");
        }
        let start: f64 = out
            .lines()
            .find_map(|l| l.strip_prefix("process_start_time_seconds "))
            .and_then(|v| v.parse().ok())
            .expect("a start time");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs_f64();
        assert!(start <= now + 1.0 && start > now - 86400.0 * 365.0, "{start} vs {now}");
    }
}
