//! Diagnostics, a leaf every stage may use: stage timings with CPU and memory
//! (`HVRLAKE_TIMINGS`) and crash-test failpoints (`HVRLAKE_FAILPOINT`).

use std::time::Instant;

/// Crash-test hook: when the environment variable `HVRLAKE_FAILPOINT` equals `name`, the
/// process dies on the spot (abort, like a kill), so tests can stop hvrlake at exact points
/// (`after_commit:TABLE`, `before_remove`). Without the variable it does nothing.
pub fn failpoint(name: &str) {
    if std::env::var("HVRLAKE_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("hvrlake: failpoint {name}: stopping the process");
        std::process::abort();
    }
}

/// With `HVRLAKE_TIMINGS` set, prints how long a stage of a table took (on stderr).
pub fn stage_time(table: &str, stage: &str, since: Instant) {
    timing(format_args!("{table}: {stage}"), since);
}

/// With `HVRLAKE_TIMINGS` set, prints `what` (a stage's metrics) on stderr.
pub fn note(what: impl std::fmt::Display) {
    if std::env::var_os("HVRLAKE_TIMINGS").is_some() {
        eprintln!("hvrlake: timing: {what}");
    }
}

/// With `HVRLAKE_TIMINGS` set, prints how long `what` took and the process's CPU time so
/// far (on stderr).
pub fn timing(what: impl std::fmt::Display, since: Instant) {
    if std::env::var_os("HVRLAKE_TIMINGS").is_some() {
        eprintln!(
            "hvrlake: timing: {what} {:.3}s (process CPU so far {}, memory {})",
            since.elapsed().as_secs_f64(),
            cpu_so_far(),
            memory_so_far()
        );
    }
}

/// The CPU time (user + system, all threads) the process has used so far, for
/// `HVRLAKE_TIMINGS` ("?" where `/proc` does not say).
fn cpu_so_far() -> String {
    let ticks = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // The fields after the command's closing parenthesis: utime is the 12th,
            // stime the 13th.
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        });
    // Linux counts them in USER_HZ, which is 100 on every architecture it runs on here.
    ticks.map_or("?".into(), |t| format!("{:.2}s", t as f64 / 100.0))
}

/// The process's resident memory now and at its peak so far, for `HVRLAKE_TIMINGS`
/// ("?" where `/proc` does not say): which stage an integrate's memory grows in.
fn memory_so_far() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    // Anonymous memory is what the process had to have zeroed; the resident total also
    // counts the mapped input and data files.
    match (kb("RssAnon:"), kb("VmRSS:"), kb("VmHWM:")) {
        (Some(anon), Some(now), Some(peak)) => format!(
            "{} MiB anonymous, {} MiB resident, peak {} MiB",
            anon / 1024,
            now / 1024,
            peak / 1024
        ),
        _ => "?".into(),
    }
}
