//! HVR's call after an interrupted integrate job: `integ_end` with empty table and file
//! lists (or `-1`), while the earlier cycles' files may still lie in the file location.
//! hvrlake then finds those files, groups them by cycle (the `{hvr_integ_tstamp}` of their
//! names) and applies the cycles in order, each exactly once.
//!
//! The call names no tables, so every call remembers the channel's tables (names, keys,
//! columns) in the lake, at `_hvrlake/registry/<channel>/<location>.json`.

use std::collections::BTreeMap;
use std::path::Path;

use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;

use super::Call;
use super::spec::Kind;
use crate::error::{Context, Error, Result};
use crate::hvr::env::HvrTable;
use crate::hvr::files::cycle_order;
use crate::storage;
use crate::table::{self, progress};

/// The registry object of a channel's location, and the store it is in.
fn registry(
    call: &Call<'_>,
) -> Result<(std::sync::Arc<dyn object_store::ObjectStore>, ObjectPath)> {
    let lake = storage::lake_url(&call.settings.target)?;
    let root = lake
        .join("_hvrlake/registry/")
        .map_err(|e| Error::msg(format!("registry URL: {e}")))?;
    if root.scheme() == "file"
        && let Ok(dir) = root.to_file_path()
    {
        std::fs::create_dir_all(&dir)?;
    }
    let store = crate::input::store_at(&root, &call.settings.storage)?;
    let path = ObjectPath::from_iter([call.channel, &format!("{}.json", call.location)]);
    Ok((store, path))
}

async fn load(call: &Call<'_>) -> Result<Vec<HvrTable>> {
    let (store, path) = registry(call)?;
    match store.get(&path).await {
        Ok(got) => {
            let bytes = got.bytes().await?;
            serde_json::from_slice(&bytes)
                .map_err(|e| Error::msg(format!("table registry {path}: {e}")))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// Records `tables` (as this call's environment describes them) in the channel's registry,
/// when they are not there yet or changed.
pub(super) async fn remember(call: &Call<'_>, tables: &[HvrTable]) -> Result<()> {
    if tables.is_empty() {
        return Ok(());
    }
    let mut known = load(call).await.context("table registry")?;
    let before = known.clone();
    for t in tables {
        match known
            .iter_mut()
            .find(|k| k.name.eq_ignore_ascii_case(&t.name))
        {
            Some(k) => *k = t.clone(),
            None => known.push(t.clone()),
        }
    }
    if known != before {
        let (store, path) = registry(call)?;
        let text = serde_json::to_vec_pretty(&known)?;
        store
            .put(&path, bytes::Bytes::from(text).into())
            .await
            .context("table registry")?;
    }
    Ok(())
}

/// Applies the cycles whose files are still in the location, oldest first. A table whose
/// progress already records a cycle at least as recent is not applied again (its files are
/// only removed).
pub(super) async fn leftover_cycles(call: &Call<'_>, state_dir: Option<&Path>) -> Result<()> {
    let known = load(call).await.context("table registry")?;
    let Some(loc) = call.loc else {
        println!(
            "hvrlake: {}: no file location, nothing to recover",
            call.mode
        );
        return Ok(());
    };
    let mut cycles: BTreeMap<(bool, usize, String), Vec<String>> = BTreeMap::new();
    for (name, _) in loc.list(state_dir).await? {
        let Some(table) = call.pattern.table_of(&name) else {
            continue;
        };
        if !known.iter().any(|t| t.name.eq_ignore_ascii_case(table)) {
            continue;
        }
        let stamp = call.pattern.cycle_of(&name).unwrap_or("");
        let (digits, len, text) = cycle_order(stamp);
        cycles
            .entry((digits, len, text.to_string()))
            .or_default()
            .push(name);
    }
    if cycles.is_empty() {
        println!(
            "hvrlake: {}: no files left by an interrupted cycle",
            call.mode
        );
        return Ok(());
    }
    println!(
        "hvrlake: {}: recovering {} cycle(s) left in the file location",
        call.mode,
        cycles.len()
    );
    let lake = storage::lake_url(&call.settings.target)?;
    for mut files in cycles.into_values() {
        files.sort();
        let listed: Vec<(String, Option<u64>)> = files.iter().map(|f| (f.clone(), None)).collect();
        let specs = call.specs(&known, &listed)?;
        let (mut apply, mut done) = (Vec::new(), Vec::new());
        for spec in specs.into_iter().filter(|s| !s.files.is_empty()) {
            let url = storage::table_url(&lake, &spec.base_name)?;
            let table = table::open(&url, &call.settings.storage)
                .await
                .context(&spec.base_name)?;
            let app = spec.app_id.clone().unwrap_or_default();
            let recorded = progress::last_entry(&table, &app)
                .await
                .context(&spec.base_name)?
                .and_then(|e| e["cycle"].as_str().map(str::to_string));
            let applied = match (&recorded, &spec.cycle) {
                (Some(r), Some(c)) => cycle_order(r) >= cycle_order(c),
                _ => false,
            };
            if applied {
                println!(
                    "hvrlake: {}: {}: skipped: cycle {} was committed by an earlier call",
                    call.mode,
                    spec.base_name,
                    spec.cycle.as_deref().unwrap_or("")
                );
                done.push(spec);
            } else {
                apply.push(spec);
            }
        }
        call.apply(Kind::Integrate, apply).await?;
        if !call.settings.keep_files {
            crate::input::remove(done.iter().flat_map(|s| &s.files)).await;
        }
    }
    Ok(())
}
