//! Table-driven tests of the server-side apply operations: field sets of configurations,
//! ownership after updates, and apply's merge, prune, conflict and force rules.

use serde_json::{json, Value};

use super::*;

const T0: &str = "2026-01-01T00:00:00Z";
const T1: &str = "2026-01-01T00:01:00Z";

fn deploy_types() -> TypeInfo {
    TypeInfo::for_kind("apps", "v1", "Deployment")
}

fn writer(manager: &str) -> Writer<'_> {
    Writer {
        manager,
        subresource: "",
        time: T1,
        ignored: &[],
    }
}

fn entry(manager: &str, op: Operation, fields: Value, time: Option<&str>) -> ManagedFieldsEntry {
    ManagedFieldsEntry {
        manager: manager.into(),
        operation: op,
        api_version: "apps/v1".into(),
        time: time.map(Into::into),
        subresource: String::new(),
        fields: FieldSet::from_fields_v1(&fields).expect("fieldsV1"),
    }
}

fn deployment(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "nginx", "image": image,
                    "ports": [{"containerPort": 80}],
                    "env": [{"name": "A", "value": "1"}]
                }]}
            }
        }
    })
}

#[test]
fn field_set_of_configurations() {
    let pod = TypeInfo::for_kind("", "v1", "Pod");
    let deploy = deploy_types();
    let widget = TypeInfo::from_list_fn(|path| match path {
        ["spec", "ports"] => ListType::Map(vec![ListKey::required("port")]),
        ["spec", "tags"] => ListType::Set,
        _ => ListType::Atomic,
    });
    let cases: Vec<(&str, &TypeInfo, Value, Value)> = vec![
        (
            "deployment as kubectl applies it",
            &deploy,
            deployment(2, "nginx:1"),
            json!({
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {},
                    "f:selector": {},
                    "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                            ".": {},
                            "f:env": {"k:{\"name\":\"A\"}": {".": {}, "f:name": {}, "f:value": {}}},
                            "f:image": {},
                            "f:name": {},
                            "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                                ".": {}, "f:containerPort": {}
                            }}
                        }}}
                    }
                }
            }),
        ),
        (
            "set list, atomic list, empty map, null",
            &pod,
            json!({"metadata": {"name": "p", "finalizers": ["a", "b"]},
                   "spec": {"tolerations": [{"key": "k"}], "nodeSelector": {"x": "y"},
                            "securityContext": {}, "hostname": null}}),
            json!({
                "f:metadata": {"f:finalizers": {"v:\"a\"": {}, "v:\"b\"": {}}},
                "f:spec": {"f:hostname": {}, "f:nodeSelector": {}, "f:tolerations": {}}
            }),
        ),
        (
            "custom resource through a resolver",
            &widget,
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
                   "spec": {"ports": [{"port": 1, "x": true}], "tags": ["t"], "args": ["a"]}}),
            json!({"f:spec": {
                "f:args": {},
                "f:ports": {"k:{\"port\":1}": {".": {}, "f:port": {}, "f:x": {}}},
                "f:tags": {"v:\"t\"": {}}
            }}),
        ),
    ];
    for (name, types, obj, want) in cases {
        let got = field_set(&obj, types).expect(name);
        assert_eq!(got.to_fields_v1(), want, "{name}");
    }
}

#[test]
fn invalid_configurations_are_rejected() {
    let types = TypeInfo::for_kind("", "v1", "Pod");
    let cases = [
        (
            json!({"spec": {"containers": [{"name": "a"}, {"name": "a"}]}}),
            r#".spec.containers: duplicate entries for key [name="a"]"#,
        ),
        (
            json!({"spec": {"containers": [{"image": "x"}]}}),
            r#".spec.containers: associative list with keys has an element that omits key field "name" (and doesn't have default value)"#,
        ),
        (
            json!({"metadata": {"managedFields": [{"manager": "x"}]}}),
            "metadata.managedFields must be nil",
        ),
    ];
    for (obj, want) in cases {
        let err = apply(
            None,
            &obj,
            &writer("m"),
            false,
            &ManagedFields::default(),
            &types,
        )
        .expect_err("invalid");
        assert_eq!(err.code(), 422);
        assert_eq!(err.to_string(), want);
    }
}

#[test]
fn update_tracks_ownership() {
    let types = deploy_types();
    let created = deployment(1, "nginx:1");
    // Create: the creator owns everything it set, with `.` on items and on new maps.
    let after_create = update_managed_fields(
        None,
        &created,
        &writer("kubectl-create"),
        &ManagedFields::default(),
        &types,
    );
    assert_eq!(after_create.entries.len(), 1);
    let e = &after_create.entries[0];
    assert_eq!(
        (e.operation, e.time.as_deref()),
        (Operation::Update, Some(T1))
    );
    assert_eq!(e.api_version, "apps/v1");
    let fields = e.fields.to_fields_v1();
    assert_eq!(
        fields["f:metadata"],
        json!({"f:labels": {".": {}, "f:app": {}}})
    );
    assert_eq!(fields["f:spec"]["f:replicas"], json!({}));
    assert_eq!(
        fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"]["f:env"],
        json!({".": {}, "k:{\"name\":\"A\"}": {".": {}, "f:name": {}, "f:value": {}}})
    );
    assert!(fields.get("f:apiVersion").is_none() && fields.get("f:kind").is_none());

    let mut scaled = created.clone();
    scaled["spec"]["replicas"] = json!(5);
    let mut relabeled = created.clone();
    relabeled["metadata"]["labels"] = json!({"tier": "x"});
    let owners = |mf: &ManagedFields, path: &[&str]| -> Vec<String> {
        mf.entries
            .iter()
            .filter(|e| e.fields.has(&Path::fields(path).0))
            .map(|e| e.manager.clone())
            .collect()
    };
    type Case<'a> = (&'a str, Value, Vec<&'a str>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "scaling moves replicas",
            scaled,
            vec!["spec", "replicas"],
            vec!["scaler"],
        ),
        (
            "relabeling takes the new label",
            relabeled.clone(),
            vec!["metadata", "labels", "tier"],
            vec!["scaler"],
        ),
        (
            "relabeling drops the removed label",
            relabeled,
            vec!["metadata", "labels", "app"],
            vec![],
        ),
        (
            "untouched fields stay",
            created.clone(),
            vec!["spec", "replicas"],
            vec!["kubectl-create"],
        ),
    ];
    for (name, new, path, want) in cases {
        let mf = update_managed_fields(
            Some(&created),
            &new,
            &writer("scaler"),
            &after_create,
            &types,
        );
        assert_eq!(owners(&mf, &path), want, "{name}");
    }
    // A no-op write leaves the entries alone (no empty entry for the writer, no new time).
    let same = update_managed_fields(
        Some(&created),
        &created,
        &writer("noop"),
        &after_create,
        &types,
    );
    assert_eq!(same, after_create);
}

#[test]
fn update_drops_emptied_entries_and_keys_per_version() {
    let types = TypeInfo::for_kind("", "v1", "ConfigMap");
    let old = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                     "data": {"a": "1"}});
    let new = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                     "data": {"a": "2"}});
    let mut managed = ManagedFields {
        entries: vec![entry(
            "m1",
            Operation::Update,
            json!({"f:data": {"f:a": {}}}),
            Some(T0),
        )],
    };
    managed.entries[0].api_version = "v1".into();
    let mf = update_managed_fields(Some(&old), &new, &writer("m2"), &managed, &types);
    assert_eq!(mf.entries.len(), 1);
    assert_eq!(mf.entries[0].manager, "m2");
    assert_eq!(
        mf.entries[0].fields.to_fields_v1(),
        json!({"f:data": {"f:a": {}}})
    );
    // The same manager writing through another subresource gets its own entry.
    let status = Writer {
        subresource: "status",
        ..writer("m2")
    };
    let newer = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                       "data": {"a": "2", "b": "3"}});
    let mf = update_managed_fields(Some(&new), &newer, &status, &mf, &types);
    let subs: Vec<&str> = mf.entries.iter().map(|e| e.subresource.as_str()).collect();
    assert_eq!(subs, ["", "status"]);
}

#[test]
fn apply_creates_and_reapplies() {
    let types = deploy_types();
    let cfg = deployment(2, "nginx:1");
    let none = ManagedFields::default();
    let (obj, mf) = apply(None, &cfg, &writer("kubectl"), false, &none, &types).expect("create");
    assert_eq!(obj, cfg);
    assert_eq!(mf.entries.len(), 1);
    assert_eq!(mf.entries[0].operation, Operation::Apply);
    assert_eq!(mf.entries[0].fields, field_set(&cfg, &types).expect("set"));

    // Re-applying without the label and the env var removes them.
    let mut smaller = cfg.clone();
    smaller["metadata"]
        .as_object_mut()
        .expect("meta")
        .remove("labels");
    smaller["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .expect("container")
        .remove("env");
    let (obj2, mf2) =
        apply(Some(&obj), &smaller, &writer("kubectl"), false, &mf, &types).expect("reapply");
    assert!(obj2["metadata"].get("labels").is_none());
    assert!(obj2["spec"]["template"]["spec"]["containers"][0]
        .get("env")
        .is_none());
    assert_eq!(obj2["spec"]["replicas"], json!(2));
    assert_eq!(mf2.entries.len(), 1);
    assert_eq!(
        mf2.entries[0].fields,
        field_set(&smaller, &types).expect("set")
    );

    // The same apply again is a no-op that keeps the entry's time.
    let later = Writer {
        time: "2026-01-02T00:00:00Z",
        ..writer("kubectl")
    };
    let (obj3, mf3) = apply(Some(&obj2), &smaller, &later, false, &mf2, &types).expect("noop");
    assert_eq!(obj3, obj2);
    assert_eq!(mf3, mf2);
}

#[test]
fn apply_keeps_fields_others_own() {
    let types = deploy_types();
    let cfg = deployment(2, "nginx:1");
    let none = ManagedFields::default();
    let (obj, mf) = apply(None, &cfg, &writer("a"), false, &none, &types).expect("a");
    // b applies the same label value: shared ownership, no conflict.
    let b_cfg = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": "web", "labels": {"app": "web"}}});
    let (obj, mf) = apply(Some(&obj), &b_cfg, &writer("b"), false, &mf, &types).expect("b");
    assert_eq!(mf.entries.len(), 2);
    // a stops applying the label: b still owns it, so it stays.
    let mut a_cfg = cfg.clone();
    a_cfg["metadata"]
        .as_object_mut()
        .expect("meta")
        .remove("labels");
    let (obj, mf) = apply(Some(&obj), &a_cfg, &writer("a"), false, &mf, &types).expect("a2");
    assert_eq!(obj["metadata"]["labels"], json!({"app": "web"}));
    let b = mf.find("b", Operation::Apply, "", "").expect("b entry");
    assert!(b
        .fields
        .has(&Path::fields(&["metadata", "labels", "app"]).0));
    // b stops too: now nobody owns it and it goes.
    let b_cfg = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}});
    let (obj, mf) = apply(Some(&obj), &b_cfg, &writer("b"), false, &mf, &types).expect("b2");
    assert!(obj["metadata"].get("labels").is_none());
    assert!(mf.find("b", Operation::Apply, "", "").is_none());
}

#[test]
fn apply_conflicts_and_force() {
    let types = deploy_types();
    let live = deployment(3, "nginx:1");
    let csa = |time: Option<&str>| ManagedFields {
        entries: vec![entry(
            "kubectl-client-side-apply",
            Operation::Update,
            json!({"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"nginx\"}": {"f:image": {}}
            }}}}}),
            time,
        )],
    };
    let applier = |replicas, image| {
        let mut c = deployment(replicas, image);
        c["metadata"]
            .as_object_mut()
            .expect("meta")
            .remove("labels");
        c
    };
    type Case<'a> = (&'a str, Value, Option<&'a str>, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "one conflict",
            applier(2, "nginx:1"),
            None,
            Some(
                r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas"#,
            ),
        ),
        (
            "one conflict, entry with a time (never printed, as upstream)",
            applier(2, "nginx:1"),
            Some(T0),
            Some(
                r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas"#,
            ),
        ),
        (
            "two conflicts",
            applier(2, "nginx:2"),
            None,
            Some(
                "Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" using apps/v1:\n- .spec.replicas\n- .spec.template.spec.containers[name=\"nginx\"].image",
            ),
        ),
        ("same values share", applier(3, "nginx:1"), None, None),
    ];
    for (name, cfg, time, want) in cases {
        let managed = csa(time);
        let got = apply(Some(&live), &cfg, &writer("mgr"), false, &managed, &types);
        match (got, want) {
            (Err(err), Some(msg)) => {
                assert_eq!(err.code(), 409, "{name}");
                assert_eq!(err.to_string(), msg, "{name}");
            }
            (Ok((obj, mf)), None) => {
                assert_eq!(obj, live, "{name}");
                let owners = mf
                    .entries
                    .iter()
                    .filter(|e| e.fields.has(&Path::fields(&["spec", "replicas"]).0))
                    .count();
                assert_eq!(owners, 2, "{name}");
            }
            (got, _) => panic!("{name}: unexpected {got:?}"),
        }
    }
    let ApplyError::Conflicts(c) = apply(
        Some(&live),
        &applier(2, "nginx:1"),
        &writer("mgr"),
        false,
        &csa(None),
        &types,
    )
    .expect_err("conflict") else {
        panic!("not a conflict");
    };
    assert_eq!(
        c.causes(),
        vec![(
            r#"conflict with "kubectl-client-side-apply" using apps/v1"#.to_owned(),
            ".spec.replicas".to_owned()
        )]
    );

    // Force takes the fields over; the other manager keeps only what was not contested.
    let (obj, mf) = apply(
        Some(&live),
        &applier(2, "nginx:1"),
        &writer("mgr"),
        true,
        &csa(None),
        &types,
    )
    .expect("force");
    assert_eq!(obj["spec"]["replicas"], json!(2));
    let old = mf
        .find(
            "kubectl-client-side-apply",
            Operation::Update,
            "apps/v1",
            "",
        )
        .expect("old owner keeps image");
    assert!(!old.fields.has(&Path::fields(&["spec", "replicas"]).0));
    assert_eq!(old.fields.len(), 1);
    // Apply entries sort before Update entries.
    assert_eq!(mf.entries[0].manager, "mgr");
}

#[test]
fn apply_merges_lists_by_type() {
    let types = TypeInfo::for_kind("", "v1", "Pod");
    let live = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "finalizers": ["keep"]},
        "spec": {"containers": [
            {"name": "sidecar", "image": "s:1"},
            {"name": "app", "image": "a:1", "args": ["x", "y"],
             "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}]}
        ]}
    });
    let cfg = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "finalizers": ["mine"]},
        "spec": {"containers": [
            {"name": "app", "image": "a:2", "args": ["z"], "ports": [{"containerPort": 80}]},
            {"name": "new", "image": "n:1"}
        ]}
    });
    // The live object is untracked, so its fields belong to before-first-apply: force.
    let (obj, mf) = apply(
        Some(&live),
        &cfg,
        &writer("m"),
        true,
        &ManagedFields::default(),
        &types,
    )
    .expect("apply");
    let before = mf
        .find(BEFORE_FIRST_APPLY, Operation::Update, "v1", "")
        .expect("before-first-apply keeps the sidecar");
    assert!(before
        .fields
        .node(&Path::fields(&["spec", "containers"]).0)
        .is_some_and(|n| n.children.len() == 2));
    assert_eq!(obj["metadata"]["finalizers"], json!(["keep", "mine"]));
    assert_eq!(
        obj["spec"]["containers"],
        json!([
            {"name": "sidecar", "image": "s:1"},
            // Atomic `args` replaced; the port merged by containerPort+protocol (TCP default).
            {"name": "app", "image": "a:2", "args": ["z"],
             "ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}]},
            {"name": "new", "image": "n:1"}
        ])
    );
}

#[test]
fn apply_removes_list_items_it_gave_up() {
    let types = TypeInfo::for_kind("", "v1", "Pod");
    let cfg = |names: &[&str]| {
        let containers: Vec<Value> = names
            .iter()
            .map(|n| json!({"name": n, "image": "i"}))
            .collect();
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
               "spec": {"containers": containers}})
    };
    let none = ManagedFields::default();
    let (obj, mf) =
        apply(None, &cfg(&["a", "b"]), &writer("m"), false, &none, &types).expect("create");
    // Another writer adds an env var to `a` by update: it owns only that field.
    let mut updated = obj.clone();
    updated["spec"]["containers"][0]["env"] = json!([{"name": "E", "value": "1"}]);
    let mf = update_managed_fields(Some(&obj), &updated, &writer("u"), &mf, &types);
    let (obj, mf) = apply(
        Some(&updated),
        &cfg(&["a"]),
        &writer("m"),
        false,
        &mf,
        &types,
    )
    .expect("drop b");
    assert_eq!(
        obj["spec"]["containers"],
        json!([{"name": "a", "image": "i", "env": [{"name": "E", "value": "1"}]}])
    );
    assert!(mf.find("u", Operation::Update, "v1", "").is_some());
}

#[test]
fn untracked_objects() {
    let types = deploy_types();
    let live = deployment(3, "nginx:1");
    let none = ManagedFields::default();
    // Updates of an existing untracked object stay untracked.
    let scaled = deployment(4, "nginx:1");
    let mf = update_managed_fields(Some(&live), &scaled, &writer("edit"), &none, &types);
    assert!(mf.entries.is_empty());
    // The first apply finds every field owned by before-first-apply.
    let err = apply(
        Some(&live),
        &deployment(2, "nginx:1"),
        &writer("kubectl"),
        false,
        &none,
        &types,
    )
    .expect_err("conflict");
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "before-first-apply" using apps/v1: .spec.replicas"#
    );
    // Re-applying the live values shares everything and conflicts with nothing.
    let (obj, mf) =
        apply(Some(&live), &live, &writer("kubectl"), false, &none, &types).expect("same values");
    assert_eq!(obj, live);
    let managers: Vec<&str> = mf.entries.iter().map(|e| e.manager.as_str()).collect();
    assert_eq!(managers, ["kubectl", BEFORE_FIRST_APPLY]);
}

#[test]
fn ignored_subtrees_are_never_owned() {
    let types = deploy_types();
    let status = [Path::fields(&["status"])];
    let main = Writer {
        ignored: &status,
        ..writer("kubectl")
    };
    let mut cfg = deployment(2, "nginx:1");
    cfg["status"] = json!({"replicas": 9});
    let (_, mf) =
        apply(None, &cfg, &main, false, &ManagedFields::default(), &types).expect("apply");
    assert!(mf.entries[0]
        .fields
        .child(&PathElement::Field("status".into()))
        .is_none());
    // A status writer on the main resource gains nothing there either.
    let old = deployment(2, "nginx:1");
    let mut new = old.clone();
    new["status"] = json!({"replicas": 2});
    let mf = update_managed_fields(Some(&old), &new, &main, &mf, &types);
    assert_eq!(mf.entries.len(), 1);
    assert_eq!(mf.entries[0].manager, "kubectl");
}
