//! Writing the dev cluster's entry into a kubeconfig file without disturbing anything else in it.

use std::path::Path;

use serde_yaml_ng::{Mapping, Value};

use crate::{Error, Result};

/// Add or replace the cluster, user and context named `name` (pointing at `server`) in the
/// kubeconfig at `path` and make it the current context. Other entries are kept as they were.
/// The file is written atomically (temp file + rename) so a crash never leaves half a config.
pub fn upsert(path: &Path, name: &str, server: &str) -> Result<()> {
    let mut doc = match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => serde_yaml_ng::from_str::<Value>(&text)
            .map_err(|e| Error::Kubeconfig(format!("{}: {e}", path.display())))?,
        Ok(_) => Value::Mapping(Mapping::new()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Value::Mapping(Mapping::new()),
        Err(e) => return Err(Error::Kubeconfig(format!("{}: {e}", path.display()))),
    };
    let Value::Mapping(root) = &mut doc else {
        return Err(Error::Kubeconfig(format!(
            "{}: not a YAML mapping",
            path.display()
        )));
    };
    set(root, "apiVersion", Value::from("v1"));
    set(root, "kind", Value::from("Config"));
    if !root.contains_key("preferences") {
        set(root, "preferences", Value::Mapping(Mapping::new()));
    }

    let mut cluster = Mapping::new();
    set(&mut cluster, "server", Value::from(server));
    upsert_named(root, "clusters", name, "cluster", cluster)?;
    upsert_named(root, "users", name, "user", Mapping::new())?;
    let mut context = Mapping::new();
    set(&mut context, "cluster", Value::from(name));
    set(&mut context, "user", Value::from(name));
    upsert_named(root, "contexts", name, "context", context)?;
    set(root, "current-context", Value::from(name));

    let text = serde_yaml_ng::to_string(&doc).map_err(|e| Error::Kubeconfig(e.to_string()))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("kubelite-tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn set(map: &mut Mapping, key: &str, value: Value) {
    map.insert(Value::from(key), value);
}

/// Replace the `{name: <name>, <field>: ...}` entry of the list `list` or append one.
fn upsert_named(
    root: &mut Mapping,
    list: &str,
    name: &str,
    field: &str,
    body: Mapping,
) -> Result<()> {
    let entries = root
        .entry(Value::from(list))
        .or_insert_with(|| Value::Sequence(Vec::new()));
    if entries.is_null() {
        *entries = Value::Sequence(Vec::new());
    }
    let Value::Sequence(items) = entries else {
        return Err(Error::Kubeconfig(format!("`{list}` is not a list")));
    };
    let mut entry = Mapping::new();
    set(&mut entry, "name", Value::from(name));
    set(&mut entry, field, Value::Mapping(body));
    let entry = Value::Mapping(entry);
    match items
        .iter_mut()
        .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
    {
        Some(existing) => *existing = entry,
        None => items.push(entry),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_a_fresh_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/config");
        upsert(&path, "kubelite", "http://127.0.0.1:6443").expect("upsert");
        let doc: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&path).expect("read")).expect("yaml");
        assert_eq!(doc["current-context"].as_str(), Some("kubelite"));
        assert_eq!(
            doc["clusters"][0]["cluster"]["server"].as_str(),
            Some("http://127.0.0.1:6443")
        );
        assert_eq!(
            doc["contexts"][0]["context"]["user"].as_str(),
            Some("kubelite")
        );
    }

    #[test]
    fn keeps_other_entries_and_replaces_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster:\n    server: https://prod:6443\n\
             contexts:\n- name: prod\n  context:\n    cluster: prod\n    user: admin\ncurrent-context: prod\nusers:\n- name: admin\n  user:\n    token: secret\n",
        )
        .expect("write");
        upsert(&path, "kubelite", "http://127.0.0.1:1").expect("first");
        upsert(&path, "kubelite", "http://127.0.0.1:2").expect("second");
        let doc: Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(&path).expect("read")).expect("yaml");
        let clusters = doc["clusters"].as_sequence().expect("clusters");
        assert_eq!(
            clusters.len(),
            2,
            "prod kept, kubelite replaced not duplicated"
        );
        assert_eq!(
            clusters[1]["cluster"]["server"].as_str(),
            Some("http://127.0.0.1:2")
        );
        assert_eq!(doc["users"][0]["user"]["token"].as_str(), Some("secret"));
        assert_eq!(doc["current-context"].as_str(), Some("kubelite"));
    }

    #[test]
    fn refuses_to_overwrite_a_file_that_is_not_a_kubeconfig() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config");
        std::fs::write(&path, "- just\n- a list\n").expect("write");
        assert!(upsert(&path, "kubelite", "http://x").is_err());
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "- just\n- a list\n"
        );
    }
}
