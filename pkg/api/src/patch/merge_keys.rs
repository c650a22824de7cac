//! The strategic-merge-patch metadata of the built-in kinds: which lists merge (and by which
//! key) and which maps carry `retainKeys`, transcribed from the `patchStrategy` /
//! `patchMergeKey` struct tags of `k8s.io/api` (core/v1, apps/v1, batch/v1) and
//! `k8s.io/apimachinery` (meta/v1 ObjectMeta) as of Kubernetes 1.33.
//!
//! Only the struct types on a path to a tagged field are modelled; every other field has no
//! strategy, i.e. maps merge recursively and lists are replaced wholesale. Untagged lists that
//! are easy to get wrong: `tolerations`, `taints`, `resizePolicy`, `Endpoints.subsets` and
//! `EndpointSlice.endpoints` are all replaced, not merged.

/// A Go struct type that (transitively) contains a tagged field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    ObjectMeta,
    /// Any object whose only tagged field is `metadata` (ConfigMap, Secret, Event, Lease, ...).
    MetaOnly,
    Pod,
    PodSpec,
    PodStatus,
    PodTemplate,
    PodTemplateSpec,
    Container,
    ContainerStatus,
    Volume,
    EphemeralVolumeSource,
    PvcTemplate,
    /// A status struct whose only tagged field is `conditions` merged by `type`.
    ConditionsStatus,
    /// ReplicaSet, StatefulSet, DaemonSet, ReplicationController: `spec.template` is a pod
    /// template and `status.conditions` merge by type.
    Workload,
    Deployment,
    WorkloadSpec,
    DeploymentSpec,
    Job,
    JobSpec,
    CronJob,
    CronJobSpec,
    JobTemplateSpec,
    Service,
    ServiceSpec,
    Node,
    NodeSpec,
    NodeStatus,
    Namespace,
    ServiceAccount,
    PersistentVolumeClaim,
}

/// How a list field is patched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchStrategy {
    /// `patchStrategy:"merge"`: elements are merged by the merge key (or, for lists of
    /// primitives, as a set).
    Merge,
    /// `patchStrategy:"replace"`, or no tag: the patch value replaces the field.
    Replace,
}

/// The patch metadata of one field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldPatchMeta {
    /// Merge or replace.
    pub strategy: PatchStrategy,
    /// The `patchMergeKey` of a merged list of objects; `None` for primitive lists.
    pub merge_key: Option<&'static str>,
    /// The field also carries the `retainKeys` strategy.
    pub retain_keys: bool,
}

/// One field of a modelled struct: its JSON name, tags and (for objects and lists of objects)
/// the modelled element type.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Field {
    pub name: &'static str,
    pub meta: Option<FieldPatchMeta>,
    pub ty: Option<Ty>,
}

const fn obj(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        meta: None,
        ty: Some(ty),
    }
}

const fn merge(name: &'static str, key: &'static str, ty: Option<Ty>) -> Field {
    Field {
        name,
        meta: Some(FieldPatchMeta {
            strategy: PatchStrategy::Merge,
            merge_key: Some(key),
            retain_keys: false,
        }),
        ty,
    }
}

const fn merge_retain(name: &'static str, key: &'static str, ty: Option<Ty>) -> Field {
    Field {
        name,
        meta: Some(FieldPatchMeta {
            strategy: PatchStrategy::Merge,
            merge_key: Some(key),
            retain_keys: true,
        }),
        ty,
    }
}

const fn merge_primitive(name: &'static str) -> Field {
    Field {
        name,
        meta: Some(FieldPatchMeta {
            strategy: PatchStrategy::Merge,
            merge_key: None,
            retain_keys: false,
        }),
        ty: None,
    }
}

const fn retain(name: &'static str) -> Field {
    Field {
        name,
        meta: Some(FieldPatchMeta {
            strategy: PatchStrategy::Replace,
            merge_key: None,
            retain_keys: true,
        }),
        ty: None,
    }
}

const META: Field = obj("metadata", Ty::ObjectMeta);
const CONDITIONS: Field = merge("conditions", "type", None);

/// A `&'static [Field]` built from const constructors (they are not promoted implicitly).
macro_rules! table {
    ($($f:expr),* $(,)?) => {{
        const FIELDS: &[Field] = &[$($f),*];
        FIELDS
    }};
}

/// The modelled fields of a type.
pub(crate) fn fields(ty: Ty) -> &'static [Field] {
    use Ty::*;
    match ty {
        ObjectMeta => table![
            merge("ownerReferences", "uid", None),
            merge_primitive("finalizers")
        ],
        MetaOnly => table![META],
        Pod => table![META, obj("spec", PodSpec), obj("status", PodStatus)],
        PodSpec => table![
            merge_retain("volumes", "name", Some(Volume)),
            merge("initContainers", "name", Some(Container)),
            merge("containers", "name", Some(Container)),
            // EphemeralContainerCommon is inlined, so its fields are a Container's.
            merge("ephemeralContainers", "name", Some(Container)),
            merge("imagePullSecrets", "name", None),
            merge("hostAliases", "ip", None),
            merge("topologySpreadConstraints", "topologyKey", None),
            merge("schedulingGates", "name", None),
            merge_retain("resourceClaims", "name", None),
        ],
        PodStatus => table![
            CONDITIONS,
            merge("hostIPs", "ip", None),
            merge("podIPs", "ip", None),
            obj("initContainerStatuses", ContainerStatus),
            obj("containerStatuses", ContainerStatus),
            obj("ephemeralContainerStatuses", ContainerStatus),
            merge_retain("resourceClaimStatuses", "name", None),
        ],
        PodTemplate => table![META, obj("template", PodTemplateSpec)],
        PodTemplateSpec => table![META, obj("spec", PodSpec)],
        Container => table![
            merge("ports", "containerPort", None),
            merge("env", "name", None),
            merge("volumeMounts", "mountPath", None),
            merge("volumeDevices", "devicePath", None),
        ],
        ContainerStatus => table![
            merge("volumeMounts", "mountPath", None),
            merge("allocatedResourcesStatus", "name", None),
        ],
        // VolumeSource is inlined into Volume.
        Volume => table![obj("ephemeral", EphemeralVolumeSource)],
        EphemeralVolumeSource => table![obj("volumeClaimTemplate", PvcTemplate)],
        PvcTemplate => table![META],
        ConditionsStatus => table![CONDITIONS],
        Workload => table![
            META,
            obj("spec", WorkloadSpec),
            obj("status", ConditionsStatus)
        ],
        WorkloadSpec => table![obj("template", PodTemplateSpec)],
        Deployment => table![
            META,
            obj("spec", DeploymentSpec),
            obj("status", ConditionsStatus)
        ],
        DeploymentSpec => table![obj("template", PodTemplateSpec), retain("strategy")],
        Job => table![META, obj("spec", JobSpec), obj("status", ConditionsStatus)],
        JobSpec => table![obj("template", PodTemplateSpec)],
        CronJob => table![META, obj("spec", CronJobSpec)],
        CronJobSpec => table![obj("jobTemplate", JobTemplateSpec)],
        JobTemplateSpec => table![META, obj("spec", JobSpec)],
        Service => table![
            META,
            obj("spec", ServiceSpec),
            obj("status", ConditionsStatus)
        ],
        ServiceSpec => table![merge("ports", "port", None)],
        Node => table![META, obj("spec", NodeSpec), obj("status", NodeStatus)],
        NodeSpec => table![merge_primitive("podCIDRs")],
        NodeStatus => table![CONDITIONS, merge("addresses", "type", None)],
        Namespace => table![META, obj("status", ConditionsStatus)],
        ServiceAccount => table![META, merge("secrets", "name", None)],
        PersistentVolumeClaim => table![META, obj("status", ConditionsStatus)],
    }
}

/// The root type of a built-in kind, or `None` when the server has no Go struct for it
/// (custom resources), in which case strategic merge patch is refused with 415.
pub(crate) fn root(group: &str, version: &str, kind: &str) -> Option<Ty> {
    use Ty::*;
    if version != "v1" {
        return None;
    }
    let ty = match (group, kind) {
        ("", "Pod") => Pod,
        ("", "PodTemplate") => PodTemplate,
        ("", "Service") => Service,
        ("", "Node") => Node,
        ("", "Namespace") => Namespace,
        ("", "ServiceAccount") => ServiceAccount,
        ("", "PersistentVolumeClaim") => PersistentVolumeClaim,
        ("", "ConfigMap" | "Secret" | "Endpoints" | "Event" | "LimitRange" | "ResourceQuota")
        | ("", "PersistentVolume" | "Binding")
        | ("discovery.k8s.io", "EndpointSlice")
        | ("events.k8s.io", "Event")
        | ("coordination.k8s.io", "Lease")
        | ("autoscaling", "Scale")
        | ("policy", "Eviction") => MetaOnly,
        ("apps", "Deployment") => Deployment,
        ("apps", "ReplicaSet" | "StatefulSet" | "DaemonSet") | ("", "ReplicationController") => {
            Workload
        }
        ("batch", "Job") => Job,
        ("batch", "CronJob") => CronJob,
        _ => return None,
    };
    Some(ty)
}

/// The modelled field `name` of `ty`, if any.
pub(crate) fn field(ty: Option<Ty>, name: &str) -> Option<&'static Field> {
    fields(ty?).iter().find(|f| f.name == name)
}

/// The patch metadata of the field at `path` (JSON field names from the object root; list
/// elements are stepped through transparently, e.g. `["spec", "template", "spec",
/// "containers", "env"]`). `None` when the kind is not built in, the path is not modelled, or
/// the field has no tags (maps merge, lists are replaced).
pub fn field_patch_meta(
    group: &str,
    version: &str,
    kind: &str,
    path: &[&str],
) -> Option<FieldPatchMeta> {
    let (last, parents) = path.split_last()?;
    let mut ty = root(group, version, kind);
    for name in parents {
        ty = field(ty, name)?.ty;
    }
    field(ty, last)?.meta
}

/// Whether the server can apply a strategic merge patch to this kind (built-in kinds only).
pub fn supports_strategic_merge(group: &str, version: &str, kind: &str) -> bool {
    root(group, version, kind).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_match_upstream_types() {
        let merge = |key| {
            Some(FieldPatchMeta {
                strategy: PatchStrategy::Merge,
                merge_key: key,
                retain_keys: false,
            })
        };
        let tpl = ["spec", "template", "spec"];
        type Case = (
            (&'static str, &'static str),
            Vec<&'static str>,
            Option<FieldPatchMeta>,
        );
        let cases: Vec<Case> = vec![
            (("", "Pod"), vec!["spec", "containers"], merge(Some("name"))),
            (
                ("", "Pod"),
                vec!["spec", "containers", "env"],
                merge(Some("name")),
            ),
            (
                ("", "Pod"),
                vec!["spec", "containers", "ports"],
                merge(Some("containerPort")),
            ),
            (
                ("", "Pod"),
                vec!["spec", "containers", "volumeMounts"],
                merge(Some("mountPath")),
            ),
            (
                ("", "Pod"),
                vec!["spec", "ephemeralContainers", "env"],
                merge(Some("name")),
            ),
            (("", "Pod"), vec!["spec", "tolerations"], None),
            (
                ("", "Pod"),
                vec!["spec", "containers", "resizePolicy"],
                None,
            ),
            (("", "Pod"), vec!["spec", "containers", "args"], None),
            (
                ("", "Pod"),
                vec!["status", "conditions"],
                merge(Some("type")),
            ),
            (("", "Pod"), vec!["metadata", "finalizers"], merge(None)),
            (
                ("", "Pod"),
                vec!["metadata", "ownerReferences"],
                merge(Some("uid")),
            ),
            (("", "Node"), vec!["spec", "taints"], None),
            (("", "Node"), vec!["spec", "podCIDRs"], merge(None)),
            (
                ("", "Node"),
                vec!["status", "addresses"],
                merge(Some("type")),
            ),
            (("", "Service"), vec!["spec", "ports"], merge(Some("port"))),
            (("", "Endpoints"), vec!["subsets"], None),
            (
                ("", "ConfigMap"),
                vec!["metadata", "finalizers"],
                merge(None),
            ),
            (
                ("apps", "Deployment"),
                vec!["status", "conditions"],
                merge(Some("type")),
            ),
            (
                ("batch", "Job"),
                vec!["status", "conditions"],
                merge(Some("type")),
            ),
        ];
        for ((group, kind), path, want) in cases {
            assert_eq!(
                field_patch_meta(group, "v1", kind, &path),
                want,
                "{kind} {path:?}"
            );
        }
        for (group, kind) in [
            ("apps", "Deployment"),
            ("apps", "ReplicaSet"),
            ("apps", "StatefulSet"),
            ("apps", "DaemonSet"),
            ("batch", "Job"),
            ("", "ReplicationController"),
        ] {
            let mut path = tpl.to_vec();
            path.push("volumes");
            let volumes = field_patch_meta(group, "v1", kind, &path).expect("volumes");
            assert_eq!(volumes.merge_key, Some("name"));
            assert!(volumes.retain_keys);
            path.pop();
            path.extend(["initContainers", "volumeMounts"]);
            assert_eq!(
                field_patch_meta(group, "v1", kind, &path),
                merge(Some("mountPath")),
                "{kind}"
            );
        }
        let strategy = field_patch_meta("apps", "v1", "Deployment", &["spec", "strategy"]);
        assert_eq!(strategy.map(|m| m.retain_keys), Some(true));
        assert!(supports_strategic_merge(
            "coordination.k8s.io",
            "v1",
            "Lease"
        ));
        assert!(supports_strategic_merge(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice"
        ));
        assert!(!supports_strategic_merge("example.com", "v1", "Widget"));
    }
}
