//! The layering `src/lib.rs` promises: its module list is in the order a cycle flows, and a
//! module imports only modules listed after it (or after it in the same line). The test reads
//! that list and every `crate::` path of the sources, so the doc and the code cannot drift.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The tiers of lib.rs's list: each `//! - [`a`], [`b`]: ...` line, top first.
fn tiers(lib: &str) -> Vec<Vec<String>> {
    lib.lines()
        .filter_map(|l| l.strip_prefix("//! - "))
        .map(|l| {
            let head = l.split(':').next().unwrap_or("");
            head.split(',')
                .filter_map(|m| {
                    let m = m.trim().strip_prefix("[`")?.strip_suffix("`]")?;
                    Some(m.to_string())
                })
                .collect()
        })
        .filter(|t: &Vec<String>| !t.is_empty())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The modules of the crate a source names with `crate::` (or `$crate::` in a macro),
/// outside comments and unit tests.
fn imports(source: &str) -> Vec<String> {
    let code = source.split("#[cfg(test)]\nmod tests").next().unwrap();
    let mut out = Vec::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap();
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

#[test]
fn modules_import_only_modules_below_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(root.join("lib.rs")).unwrap();
    let tiers = tiers(&lib);
    let mut place: HashMap<String, (usize, usize)> = HashMap::new();
    for (t, mods) in tiers.iter().enumerate() {
        for (k, m) in mods.iter().enumerate() {
            place.insert(m.clone(), (t, k));
        }
    }
    // Every module lib.rs declares is in the list.
    for l in lib.lines() {
        if let Some(m) = l.trim().strip_prefix("pub mod ") {
            let m = m.trim_end_matches(';');
            assert!(place.contains_key(m), "module {m} is not in lib.rs's list");
        }
    }
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut wrong = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let from = place[&module];
        for to in imports(&std::fs::read_to_string(f).unwrap()) {
            // `bail!` is the error module's macro.
            let to = if to == "bail" {
                "error".to_string()
            } else {
                to
            };
            if to == module {
                continue;
            }
            let Some(&at) = place.get(&to) else {
                wrong.push(format!(
                    "{}: crate::{to} is no module of the list",
                    rel.display()
                ));
                continue;
            };
            if at <= from {
                wrong.push(format!(
                    "{} ({module}) imports {to}, which is above it",
                    rel.display()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The check can fail: a reversed list has every import pointing up.
    assert!(tiers.len() > 10, "{tiers:?}");
}

#[test]
fn the_list_is_read_as_tiers() {
    let lib = "//! intro\n//! - [`a`]: top;\n//! - [`b`], [`c`]: shared\n//!   more text: here\n";
    assert_eq!(tiers(lib), vec![vec!["a"], vec!["b", "c"]]);
    assert_eq!(
        imports(
            "use crate::x::Y; // crate::z\nfn f() { crate::w::g(); }\n#[cfg(test)]\nmod tests { crate::t }"
        ),
        ["x", "w"]
    );
}
