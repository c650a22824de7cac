#!/usr/bin/env python3
"""Generate protobuf field tables and OpenAPI component schemas for Kubernetes kinds.

Reads the prost bindings of the `k8s-pb` crate (field numbers, wire types, doc comments with
`+listType`-style markers) and the `k8s-openapi` crate (JSON field names, type names, required
fields) from the local cargo registry, and writes for every message reachable from ROOTS:
- schema.rs (next to this script): one line per message, `(tag, json name, type, cardinality)`;
- ../openapi/components.json: OpenAPI 3 component schemas, root kinds tagged with their GVK.
Rerun after bumping either crate: `python3 gen_schema.py && rustfmt --edition 2021 schema.rs`.
"""
import glob, json, os, re, sys

HERE = os.path.dirname(os.path.abspath(__file__))

REG = os.path.expanduser("~/.cargo/registry/src")
PB = glob.glob(f"{REG}/*/k8s-pb-0.9.0/src")[0]
# The newest API version k8s-openapi ships, so fields newer than v1_33 get their real names.
OA_SERVED = glob.glob(f"{REG}/*/k8s-openapi-0.29.0/src/v1_33")[0]
OA = sorted(glob.glob(f"{REG}/*/k8s-openapi-0.29.0/src/v1_*"), key=lambda p: int(p.rsplit("_", 1)[1]))[-1]

# (apiVersion, kind, message) served as request bodies.
ROOTS = [
    ("v1", "Namespace", "api.core.v1.Namespace"),
    ("v1", "ConfigMap", "api.core.v1.ConfigMap"),
    ("v1", "Secret", "api.core.v1.Secret"),
    ("v1", "ServiceAccount", "api.core.v1.ServiceAccount"),
    ("v1", "Service", "api.core.v1.Service"),
    ("v1", "Pod", "api.core.v1.Pod"),
    ("v1", "Endpoints", "api.core.v1.Endpoints"),
    ("v1", "Event", "api.core.v1.Event"),
    ("v1", "Node", "api.core.v1.Node"),
    ("v1", "ReplicationController", "api.core.v1.ReplicationController"),
    ("v1", "Binding", "api.core.v1.Binding"),
    ("apps/v1", "Deployment", "api.apps.v1.Deployment"),
    ("apps/v1", "ReplicaSet", "api.apps.v1.ReplicaSet"),
    ("apps/v1", "DaemonSet", "api.apps.v1.DaemonSet"),
    ("apps/v1", "StatefulSet", "api.apps.v1.StatefulSet"),
    ("batch/v1", "Job", "api.batch.v1.Job"),
    ("batch/v1", "CronJob", "api.batch.v1.CronJob"),
    ("autoscaling/v1", "Scale", "api.autoscaling.v1.Scale"),
    ("policy/v1", "Eviction", "api.policy.v1.Eviction"),
    ("policy/v1", "PodDisruptionBudget", "api.policy.v1.PodDisruptionBudget"),
    ("coordination.k8s.io/v1", "Lease", "api.coordination.v1.Lease"),
    ("discovery.k8s.io/v1", "EndpointSlice", "api.discovery.v1.EndpointSlice"),
    ("events.k8s.io/v1", "Event", "api.events.v1.Event"),
    ("meta.k8s.io/v1", "DeleteOptions", "apimachinery.pkg.apis.meta.v1.DeleteOptions"),
]

# Messages the decoder renders specially (JSON scalars, not objects).
SPECIAL = {
    "apimachinery.pkg.util.intstr.IntOrString": "IntOrString",
    "apimachinery.pkg.api.resource.Quantity": "Quantity",
    "apimachinery.pkg.apis.meta.v1.Time": "Time",
    "apimachinery.pkg.apis.meta.v1.MicroTime": "MicroTime",
    "apimachinery.pkg.apis.meta.v1.Duration": "Duration",
    "apimachinery.pkg.apis.meta.v1.FieldsV1": "RawJson",
    "apimachinery.pkg.runtime.RawExtension": "RawJson",
}

SCALARS = {"string": "Str", "int32": "I32", "int64": "I64", "bool": "Bool", "double": "F64",
           "bytes": "Bytes", "float": "F32", "uint32": "U32", "uint64": "U64", "sint32": "I32"}

struct_re = re.compile(r"((?:[ \t]*///[^\n]*\n)*)#\[derive[^\n]*\n(?:#\[[^\n]*\n)*pub struct (\w+) \{(.*?)\n\}", re.S)
# rustfmt wraps long types over several lines, so a field's type runs to the next attribute.
field_re = re.compile(r"#\[prost\(([^\]]*)\)\]\s*pub (r#)?(\w+):\s*(.*?),\s*(?=#\[|///|\Z)", re.S)


def module_of(path):
    rel = os.path.relpath(os.path.dirname(path), PB)
    return rel.replace("/", ".")


def doc_of(text):
    """(description, markers) from `///` lines: paragraphs joined, `+key=value` lines split off."""
    paragraphs, current, markers = [], [], {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("///"):
            continue
        line = line[3:].strip()
        if line.startswith("+"):
            key, _, value = line[1:].partition("=")
            markers.setdefault(key, value)
            continue
        if not line:
            if current:
                paragraphs.append(" ".join(current))
                current = []
            continue
        current.append(re.sub(r"<(https?://[^>]+)>", r"\1", line))
    if current:
        paragraphs.append(" ".join(current))
    return "\n\n".join(paragraphs), markers


structs = {}  # full name -> list of (tag, rust field, attr, type, docs)
struct_docs = {}
for path in glob.glob(f"{PB}/**/mod.rs", recursive=True):
    mod = module_of(path)
    text = open(path).read()
    for m in struct_re.finditer(text):
        docs, sname, body = m.groups()
        fields = []
        prev = 0
        for f in field_re.finditer(body):
            attr, _, name, ty = f.groups()
            ty = re.sub(r"\s+", "", ty).replace(",>", ">").replace(",", ", ")
            tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
            fields.append((tag, name, attr, ty, doc_of(body[prev:f.start()])))
            prev = f.end()
        if len(fields) != body.count("#[prost("):
            sys.exit(f"could not parse every field of {mod}.{sname}")
        structs[f"{mod}.{sname}"] = fields
        struct_docs[f"{mod}.{sname}"] = doc_of(docs)[0]


def resolve(mod, ty):
    """Resolve a Rust type path inside `mod` to a full message name."""
    ty = ty.strip()
    parts = mod.split(".")
    segs = ty.split("::")
    while segs and segs[0] == "super":
        parts = parts[:-1]
        segs = segs[1:]
    return ".".join(parts + segs)


def inner_type(ty):
    for wrapper in ("::core::option::Option<", "::prost::alloc::vec::Vec<"):
        if ty.startswith(wrapper):
            return ty[len(wrapper):-1]
    return ty


oa_index = {}
GLOBAL = {}  # normalised name -> set of JSON names over every k8s-openapi struct
for p in glob.glob(f"{OA}/**/*.rs", recursive=True):
    for jm in re.finditer(r'"([^"]+)" => Field::Key_(\w+),', open(p).read()):
        GLOBAL.setdefault(jm.group(2).replace("_", "").lower(), set()).add(jm.group(1))


def struct_text(full, root=None):
    json_names(full, root)
    mod, name = full.rsplit(".", 1)
    return oa_index[os.path.join(root or OA, mod.replace(".", "/"))].get(name.lower())


def json_names(full, root=None):
    """JSON names by normalised Rust field name, from k8s-openapi's deserializer."""
    mod, name = full.rsplit(".", 1)
    d = os.path.join(root or OA, mod.replace(".", "/"))
    if d not in oa_index:
        idx = {}
        for p in glob.glob(f"{d}/*.rs"):
            t = open(p).read()
            for sm in re.finditer(r"pub struct (\w+) \{", t):
                idx[sm.group(1).lower()] = t
        oa_index[d] = idx
    text = oa_index[d].get(name.lower())
    if text is None:
        return None
    out = {}
    for jm in re.finditer(r'"([^"]+)" => Field::Key_(\w+),', text):
        out[norm(jm.group(2))] = jm.group(1)
    return out


def openapi_struct(full):
    """k8s-openapi's (type name, normalised names of required fields) for a message."""
    name = full.rsplit(".", 1)[1]
    # Required fields as the served version (1.33) has them; newer versions tighten some.
    text = struct_text(full, OA_SERVED) or struct_text(full)
    if text is None:
        return name, set()
    sm = re.search(r"pub struct (\w+) \{(.*?)\n\}", text, re.S)
    required = {norm(f.group(1)) for f in re.finditer(r"pub (\w+): (?!Option<)", sm.group(2))}
    # k8s-openapi makes `metadata` non-optional for convenience; the API does not require it.
    required.discard("metadata")
    return sm.group(1), required


def norm(n):
    return n.replace("r#", "").rstrip("_").replace("_", "").lower()


def camel(n):
    p = n.split("_")
    return p[0] + "".join(x[:1].upper() + x[1:] for x in p[1:])


order, seen, warnings = [], set(), []


def visit(full):
    if full in seen or full in SPECIAL:
        return
    if full not in structs:
        sys.exit(f"unknown message {full}")
    seen.add(full)
    order.append(full)
    mod = full.rsplit(".", 1)[0]
    for tag, name, attr, ty, _ in structs[full]:
        if attr.startswith("message"):
            visit(resolve(mod, inner_type(ty)))
        elif attr.startswith("btree_map") and "message" in attr:
            val = ty.split(",", 1)[1].rsplit(">", 1)[0]
            visit(resolve(mod, val))


for _, _, root in ROOTS:
    visit(root)
order.sort()
index = {n: i for i, n in enumerate(order)}


def type_of(mod, attr, ty):
    kind = attr.split(",")[0].split("=")[0].strip()
    if kind == "message":
        target = resolve(mod, inner_type(ty))
        return f"T::{SPECIAL[target]}" if target in SPECIAL else f"T::Msg({index[target]})"
    return f"T::{SCALARS[kind]}"


def field_records(full):
    """Per field: (tag, json name, rust type expr, cardinality, value target, docs)."""
    mod = full.rsplit(".", 1)[0]
    names = json_names(full)
    out = []
    for tag, name, attr, ty, docs in sorted(structs[full]):
        jn = (names or {}).get(norm(name))
        inline = False
        target = resolve(mod, inner_type(ty)) if attr.startswith("message") else None
        if jn is None and names is not None and target and target.rsplit(".", 1)[-1].lower().endswith(norm(name)):
            # Go embeds it with `json:",inline"`: its fields appear in the parent's object.
            inline = True
            jn = ""
        if jn is None:
            cands = GLOBAL.get(norm(name), set())
            if len(cands) == 1:
                jn = next(iter(cands))
            else:
                jn = camel(name.replace("r#", ""))
                warnings.append(f"{full}.{name} -> {jn} {cands}")
        if attr.startswith("btree_map"):
            val = attr.split('"')[1].split(",")[1].strip()
            if val == "message":
                target = resolve(mod, ty.split(",", 1)[1].rsplit(">", 1)[0])
                t = type_of(mod, "message", ty.split(",", 1)[1].rsplit(">", 1)[0])
            else:
                target = val
                t = f"T::{SCALARS[val]}"
            card = "Map"
        else:
            t = type_of(mod, attr, ty)
            if target is None:
                target = attr.split(",")[0].split("=")[0].strip()
            card = "Repeated" if "repeated" in attr else ("Inline" if inline else "Single")
        out.append((tag, jn, t, card, target, docs))
    return out


def write_schema_rs():
    lines = [
        "//! Generated by gen_schema.py from the k8s-pb and k8s-openapi crates: protobuf field tables",
        "//! (tag, JSON name, type, cardinality) of the Kubernetes kinds accepted as protobuf bodies.",
        "//! Do not edit by hand.",
        "",
        "use super::wire::{Card::*, Field, Message, T};",
        "",
        "/// `(apiVersion, kind)` of each decodable root kind and its message index.",
        "#[rustfmt::skip]",
        "pub(super) static ROOTS: &[(&str, &str, usize)] = &[",
    ]
    for av, kind, msg in ROOTS:
        lines.append(f'    ("{av}", "{kind}", {index[msg]}),')
    lines += ["];", "", "/// Every message reachable from [`ROOTS`], sorted by name.", "#[rustfmt::skip]",
              "pub(super) static MESSAGES: &[Message] = &["]
    for full in order:
        fields = [f'Field({tag}, "{jn}", {t}, {card})' for tag, jn, t, card, _, _ in field_records(full)]
        lines.append(f'    Message {{ name: "{full}", fields: &[{", ".join(fields)}] }},')
    lines.append("];")
    with open(os.path.join(HERE, "schema.rs"), "w") as f:
        f.write("\n".join(lines) + "\n")


# OpenAPI: special messages are named schemas of scalar type, as upstream publishes them.
SPECIAL_SCHEMAS = {
    "apimachinery.pkg.util.intstr.IntOrString": {"type": "string", "format": "int-or-string", "x-kubernetes-int-or-string": True,
        "description": "IntOrString is a type that can hold an int32 or a string."},
    "apimachinery.pkg.api.resource.Quantity": {"type": "string",
        "description": "Quantity is a fixed-point representation of a number, e.g. 100m, 1Gi, 2."},
    "apimachinery.pkg.apis.meta.v1.Time": {"type": "string", "format": "date-time",
        "description": "Time is a wrapper around time.Time which supports correct marshaling to YAML and JSON."},
    "apimachinery.pkg.apis.meta.v1.MicroTime": {"type": "string", "format": "date-time",
        "description": "MicroTime is version of Time with microsecond level precision."},
    "apimachinery.pkg.apis.meta.v1.Duration": {"type": "string",
        "description": "Duration is a wrapper around time.Duration, serialized as a Go duration string."},
    "apimachinery.pkg.apis.meta.v1.FieldsV1": {"type": "object",
        "description": "FieldsV1 stores a set of fields in a data structure like a Trie, in JSON format."},
    "apimachinery.pkg.runtime.RawExtension": {"type": "object",
        "description": "RawExtension is used to hold extensions in external versions."},
}
SCALAR_SCHEMAS = {
    "string": {"type": "string"}, "int32": {"type": "integer", "format": "int32"},
    "int64": {"type": "integer", "format": "int64"}, "bool": {"type": "boolean"},
    "double": {"type": "number", "format": "double"}, "float": {"type": "number", "format": "float"},
    "bytes": {"type": "string", "format": "byte"}, "uint32": {"type": "integer", "format": "int32"},
    "uint64": {"type": "integer", "format": "int64"}, "sint32": {"type": "integer", "format": "int32"},
}


def schema_name(full):
    return f"io.k8s.{full.rsplit('.', 1)[0]}.{openapi_struct(full)[0]}"


def value_schema(target, referenced):
    if target in SCALAR_SCHEMAS:
        return dict(SCALAR_SCHEMAS[target])
    referenced.add(target)
    name = schema_name(target) if target not in SPECIAL else f"io.k8s.{target}"
    return {"$ref": f"#/components/schemas/{name}"}


def properties_of(full, referenced):
    """(properties, required) with inline members flattened into the parent."""
    props, required = {}, []
    req = openapi_struct(full)[1]
    for tag, jn, t, card, target, (desc, markers) in field_records(full):
        if card == "Inline":
            p, r = properties_of(target, referenced)
            props.update(p)
            required += r
            continue
        v = value_schema(target, referenced)
        if card == "Repeated":
            v = {"type": "array", "items": v}
        elif card == "Map":
            v = {"type": "object", "additionalProperties": v}
        elif "$ref" in v:
            v = {"allOf": [v]}
        if desc:
            v = {"description": desc, **v}
        for key, ext in (("listType", "x-kubernetes-list-type"), ("patchStrategy", "x-kubernetes-patch-strategy"),
                         ("patchMergeKey", "x-kubernetes-patch-merge-key"), ("mapType", "x-kubernetes-map-type")):
            if markers.get(key):
                v[ext] = markers[key]
        if markers.get("listMapKey"):
            v["x-kubernetes-list-map-keys"] = [markers["listMapKey"]]
        props[jn] = v
        if norm(jn) in req:
            required.append(jn)
    return props, required


def write_components():
    gvks = {}
    for av, kind, msg in ROOTS:
        group, _, version = av.rpartition("/")
        gvks.setdefault(msg, []).append({"group": group, "kind": kind, "version": version})
    schemas, referenced, done = {}, set(), set()
    pending = [msg for _, _, msg in ROOTS]
    while pending:
        full = pending.pop()
        if full in done:
            continue
        done.add(full)
        if full in SPECIAL:
            schemas[f"io.k8s.{full}"] = SPECIAL_SCHEMAS[full]
            continue
        refs = set()
        props, required = properties_of(full, refs)
        pending += sorted(refs - done)
        schema = {"description": struct_docs.get(full, ""), "type": "object"}
        if full in gvks:
            props = {
                "apiVersion": {"description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values.", "type": "string"},
                "kind": {"description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase.", "type": "string"},
                **props,
            }
        if required:
            schema["required"] = sorted(set(required))
        schema["properties"] = props
        if full in gvks:
            schema["x-kubernetes-group-version-kind"] = gvks[full]
        schemas[schema_name(full)] = schema
    out = {k: schemas[k] for k in sorted(schemas)}
    with open(os.path.join(HERE, "..", "openapi", "components.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"), sort_keys=False)
    print(f"{len(out)} component schemas", file=sys.stderr)


write_schema_rs()
write_components()
for w in warnings:
    print(f"warning: no k8s-openapi name for {w}", file=sys.stderr)
print(f"{len(order)} messages", file=sys.stderr)
