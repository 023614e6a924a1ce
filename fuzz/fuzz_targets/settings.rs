//! The settings parser on arbitrary text: a userarg and `HVRLAKE_*` values must give settings
//! or one error line, never a panic.
//!
//! Input: text split at the first NUL into the userarg and the rest; the rest's lines of the
//! form `NAME=VALUE` become `HVRLAKE_NAME` environment variables.

#![no_main]

use std::collections::HashMap;

use hvrlake::settings::Settings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (userarg, rest) = text.split_once('\0').unwrap_or((&text, ""));
    let mut env = HashMap::new();
    for line in rest.lines() {
        if let Some((k, v)) = line.split_once('=') {
            env.insert(format!("HVRLAKE_{}", k.to_ascii_uppercase()), v.to_string());
        }
    }
    // Never a file: a `config=` naming one would make the run depend on this machine.
    if userarg.contains("config") || env.keys().any(|k| k.contains("CONFIG")) {
        return;
    }
    if let Err(e) = Settings::from_sources(Some(userarg), &env) {
        let line = e.to_string();
        assert!(!line.is_empty() && !line.contains('\n'), "error is not one line: {line:?}");
    }
});
