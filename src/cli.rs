//! argv → an HVR mode (or `--help`); an error → one `F_JX0D03:` line on stderr and exit 1.

use std::collections::HashMap;

use crate::call::agent;
use crate::settings::SETTINGS;
use crate::storage;

/// mimalloc's `mi_option_purge_delay` (v2's `mimalloc.h`): how long freed memory stays with the
/// process before it is given back, in milliseconds.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Sets mimalloc up as the binary runs it, for a call in `mode` (`argv[1]`; a program whose
/// global allocator is mimalloc calls this first: `src/main.rs`, and the benches so they time
/// what it does). The default purge delay of 10 ms gives a piece's buffers back to the kernel
/// between one wave and the next, which then faults and zeroes them in again: 1 s keeps them
/// for reuse (a 1 GB refresh: system time 0.60 -> 0.48 s, CPU 0.976, peak RSS +25 MiB;
/// docs/benchmarks.md, "Allocator"). MIMALLOC_PURGE_DELAY still decides when it is set.
///
/// An integrate of many rows (or of a count HVR does not give) also gets a 1 GiB arena
/// (address space; pages are backed as they are first written) that mimalloc marks for
/// transparent huge pages (`MADV_HUGEPAGE`, which Linux's default THP mode `madvise` waits for):
/// its buffers then fault in 2 MiB at a time instead of 4 KiB (page faults 67k -> 14k; 11 pairs
/// without it: CPU 1.13, wall 1.13). A refresh reuses its buffers wave after wave, so the
/// few faults it saves cost more than the extra memory the kernel must zero (15 pairs without
/// it: system time 0.79 -> 0.50 s, CPU 0.899, wall 0.918, peak 270 -> 236 MiB); so does a
/// small cycle, whose tables each touch a few pages of many 2 MiB ones (200 tables x 20 rows:
/// 2.1 -> 1.1 s, peak 254 -> 143 MiB): calls of fewer than [`ARENA_ROWS`] rows by HVR's own
/// count (`HVR_TBL_NROWS`, else `HVR_FILE_NROWS`) go without it (docs/benchmarks.md,
/// "Allocator"). MIMALLOC_RESERVE_OS_MEMORY, when set, decides instead (mimalloc reserves it
/// itself at start-up).
pub fn tune_allocator(mode: Option<&str>) {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one of mimalloc's options, which it reads when it purges.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, 1000) };
    }
    let rows = |name: &str| std::env::var(name).ok();
    let rows = rows("HVR_TBL_NROWS").or_else(|| rows("HVR_FILE_NROWS"));
    if std::env::var_os("MIMALLOC_RESERVE_OS_MEMORY").is_none()
        && wants_arena(mode, rows.as_deref())
    {
        // SAFETY: asks mimalloc for one more arena; on failure (ENOMEM under strict
        // overcommit, say) it returns an error code and allocation goes on as before.
        let _ = unsafe {
            libmimalloc_sys::mi_reserve_os_memory_ex(
                1 << 30,
                true,
                true,
                false,
                std::ptr::null_mut(),
            )
        };
    }
}

/// Rows from which a call is big enough for the huge-page arena of [`tune_allocator`].
pub const ARENA_ROWS: u64 = 100_000;

/// Whether a call in `mode`, whose files hold `rows` (a colon-separated count per table or file,
/// as HVR gives it; absent or abbreviated with `...` when not known), gets the huge-page arena.
fn wants_arena(mode: Option<&str>, rows: Option<&str>) -> bool {
    if refreshes(mode) {
        return false;
    }
    let total = rows.and_then(|r| {
        r.split(':')
            .map(|n| n.trim().parse::<u64>().ok())
            .sum::<Option<u64>>()
    });
    total.is_none_or(|n| n >= ARENA_ROWS)
}

/// Whether `mode` is one of HVR's refresh calls (`refr_write_begin`, `refr_write_end`).
fn refreshes(mode: Option<&str>) -> bool {
    mode.is_some_and(|m| m.starts_with("refr_"))
}

/// Runs the program and returns its exit code: 0 done, 1 error, 2 mode not handled.
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().collect();
    let env: HashMap<String, String> = std::env::vars().collect();
    storage::register_secrets(&env);
    let Some(mode) = args.get(1) else {
        eprintln!("{}", usage());
        return 2;
    };
    match mode.as_str() {
        "-h" | "--help" | "help" => {
            print!("{}", help());
            return 0;
        }
        "-V" | "--version" => {
            println!("hvrlake {}", env!("CARGO_PKG_VERSION"));
            return 0;
        }
        "backfill" => return backfill(&args[2..], &env),
        "optimize" | "vacuum" | "inspect" => return upkeep(mode, &args[2..], &env),
        m if !agent::handles(m) => return 2,
        _ => {}
    }
    if args.len() < 4 || args.len() > 5 {
        eprintln!("F_JX0D03: {mode}: expected `hvrlake {mode} <channel> <location> [userarg]`");
        return 1;
    }
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let result = runtime.block_on(agent::run(
        mode,
        &args[2],
        &args[3],
        args.get(4).map(String::as_str),
        &env,
    ));
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{}", agent::error_line(&e));
            1
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, i32> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("F_JX0D03: cannot start the async runtime: {e}");
            1
        })
}

/// `hvrlake backfill ...`: see [`crate::call::backfill`].
fn backfill(words: &[String], env: &HashMap<String, String>) -> i32 {
    let run = || -> crate::error::Result<()> {
        let args = crate::call::backfill::Args::parse(words)?;
        let rt = runtime().map_err(|_| crate::error::Error::msg("no async runtime"))?;
        rt.block_on(crate::call::backfill::run(args, env))
    };
    match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{}", agent::error_line(&e));
            1
        }
    }
}

/// Usage of the upkeep subcommands.
const UPKEEP_USAGE: &str = "hvrlake optimize --target URL TABLE [--zorder] | hvrlake vacuum --target URL TABLE [--retention-hours H] [--dry-run] | hvrlake inspect --target URL TABLE   (plus NAME=VALUE settings)";

/// `hvrlake optimize|vacuum|inspect`: see [`crate::upkeep`].
fn upkeep(mode: &str, words: &[String], env: &HashMap<String, String>) -> i32 {
    let run = || -> crate::error::Result<()> {
        let (mut settings, mut table, mut zorder, mut hours, mut dry) =
            (Vec::new(), None, false, None, false);
        let mut it = words.iter();
        while let Some(w) = it.next() {
            match w.as_str() {
                "--target" => match it.next() {
                    Some(t) => settings.push(format!("target={t}")),
                    None => crate::bail!("{mode}: --target needs a URL; usage: {UPKEEP_USAGE}"),
                },
                "--zorder" => zorder = true,
                "--dry-run" => dry = true,
                "--retention-hours" => {
                    let v = it.next().and_then(|v| v.parse::<u64>().ok());
                    let Some(v) = v else {
                        crate::bail!("{mode}: --retention-hours needs a whole number of hours");
                    };
                    hours = Some(v);
                }
                f if f.starts_with("--") => {
                    crate::bail!("{mode}: unknown option {f}; usage: {UPKEEP_USAGE}")
                }
                s if s.contains('=') => settings.push(s.to_string()),
                t if table.is_none() => table = Some(t.to_string()),
                extra => crate::bail!("{mode}: one TABLE only ({extra}); usage: {UPKEEP_USAGE}"),
            }
        }
        let Some(table) = table else {
            crate::bail!("{mode}: no TABLE given; usage: {UPKEEP_USAGE}");
        };
        let settings = crate::settings::Settings::from_sources(Some(&settings.join(" ")), env)?;
        let rt = runtime().map_err(|_| crate::error::Error::msg("no async runtime"))?;
        rt.block_on(async {
            crate::storage::register_stores();
            let lake = storage::lake_url(&settings.target)?;
            let url = storage::table_url(&lake, &table)?;
            let t = crate::table::open(&url, &settings.storage).await?;
            if mode != "inspect" && !crate::table::exists(&t) {
                crate::bail!("{table}: no Delta table at {}", storage::redact(url.as_str()));
            }
            match mode {
                "optimize" => {
                    let z = zorder.then(|| crate::table::recorded_keys(&t)).transpose()?.flatten();
                    if zorder && z.is_none() {
                        crate::bail!("{table}: --zorder orders by the key columns, and the table records none");
                    }
                    let c = crate::upkeep::compact(t, z).await?;
                    println!(
                        "hvrlake: optimize: {table}: files removed={} added={} version={}",
                        c.removed,
                        c.added,
                        c.version.map_or("none".into(), |v| v.to_string())
                    );
                }
                "vacuum" => {
                    let gone = crate::upkeep::vacuum(t, hours, dry).await?;
                    let verb = if dry { "would delete" } else { "deleted" };
                    println!("hvrlake: vacuum: {table}: {verb} {} file(s)", gone.len());
                    for f in gone {
                        println!("  {f}");
                    }
                }
                _ => print!("{}", crate::upkeep::inspect(&t).await?),
            }
            Ok(())
        })
    };
    match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{}", agent::error_line(&e));
            1
        }
    }
}

fn usage() -> String {
    "usage: hvrlake <mode> <channel> <location> [userarg]   (hvrlake --help for more)".to_string()
}

/// The complete help text: modes, settings and exit codes.
pub fn help() -> String {
    let mut h = String::new();
    h.push_str("hvrlake: loads the files of an HVR channel into Delta Lake tables, exactly as HVR's AgentPlugin calls it.\n\n");
    h.push_str("USAGE\n    hvrlake <mode> <channel> <location> [userarg]\n    ");
    h.push_str(crate::call::backfill::USAGE);
    h.push_str("\n    ");
    h.push_str(UPKEEP_USAGE);
    h.push_str("\n    hvrlake --help | --version\n\n");
    h.push_str("MODES\n");
    for (m, d) in agent::MODES {
        h.push_str(&format!("    {m:<18} {d}\n"));
    }
    h.push_str("    (any other mode)   exit 2 without output, as HVR expects\n\n");
    h.push_str("SETTINGS\n    The userarg is a list of name=value pairs (quote values with spaces). Each setting can also\n");
    h.push_str("    be given as the environment variable HVRLAKE_<NAME> or in a TOML file named by config=PATH.\n");
    h.push_str("    Precedence: userarg > environment > file.\n\n");
    for s in SETTINGS {
        let default = if s.default.is_empty() {
            String::new()
        } else {
            format!(" [default: {}]", s.default)
        };
        h.push_str(&format!("    {:<18} {}{default}\n", s.name, s.doc));
    }
    h.push_str("\nENVIRONMENT\n    HVR_TBL_NAMES, HVR_BASE_NAMES, HVR_TBL_KEYS[_BASE], HVR_COL_NAMES[_BASE], HVR_FILE_LOC,\n");
    h.push_str(
        "    HVR_FILE_NAMES, HVR_LOC_STATEDIR and HVR_LONG_ENVIRONMENT, as HVR sets them.\n\n",
    );
    h.push_str("EXIT CODES\n    0 done, 1 error (one F_JX0D03: line on stderr; nothing committed for bad input, no file removed),\n    2 mode not handled\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_and_small_cycles_go_without_the_huge_page_arena() {
        assert!(!wants_arena(Some("refr_write_end"), None));
        assert!(!wants_arena(Some("refr_write_begin"), Some("5000000")));
        assert!(wants_arena(Some("integ_end"), None));
        assert!(wants_arena(Some("integ_end"), Some("60000:40000")));
        assert!(!wants_arena(Some("integ_end"), Some("60000:39999")));
        assert!(!wants_arena(Some("integ_end"), Some("20:20:20")));
        // HVR abbreviates a very long list: not known, so a big call.
        assert!(wants_arena(Some("integ_end"), Some("20:20...")));
        assert!(wants_arena(Some("backfill"), None));
        assert!(wants_arena(None, None));
    }
}
