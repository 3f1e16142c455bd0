//! Server-side apply and `managedFields`: which manager owns which fields of an object.
//!
//! Every write records its manager. Non-apply writes (create, update, patch) are `Update`
//! operations: the fields they add or change move to the writer, fields they remove leave every
//! manager. An apply (`application/apply-patch+yaml`) is an `Apply` operation: the applied
//! configuration is merged into the live object (lists by their semantics: associative lists by
//! their key fields, set lists as sets, all other lists atomically), fields that the same manager
//! applied before and no longer applies are removed unless another manager owns them, and changing
//! a field that another manager owns is a conflict unless forced. List semantics come from the
//! strategic merge keys ([`super::strategic`]), types from the protobuf schema (`schema.tsv`).

use serde_json::{json, Map, Value};

use super::fieldpath::{self, Set};
use super::strategic;
use crate::protobuf::{is_special, message_fields_ref, message_for, FieldShape};

/// The manager kubectl uses for client-side apply.
pub const CSA_MANAGER: &str = "kubectl-client-side-apply";
/// The annotation client-side apply keeps the last applied configuration in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// One field conflict of an apply.
#[derive(Clone, Debug, PartialEq)]
pub struct Conflict {
    /// How upstream names the other manager: `"mgr"`, or `"mgr" using apps/v1` for updates.
    pub manager: String,
    /// The field path, `.spec.replicas`.
    pub path: String,
}

/// Why an apply failed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ApplyError {
    /// The applied configuration changes fields that other managers own.
    #[error("{}", conflict_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The applied configuration is not an object.
    #[error("apply patch must be an object")]
    NotAnObject,
}

/// Upstream's message: `Apply failed with 1 conflict: conflict with "m": .spec.replicas`.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    let n = conflicts.len();
    let head = format!(
        "Apply failed with {n} conflict{}",
        if n == 1 { "" } else { "s" }
    );
    if let [one] = conflicts {
        return format!("{head}: conflict with {}: {}", one.manager, one.path);
    }
    let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
    managers.sort_unstable();
    managers.dedup();
    let mut lines = Vec::new();
    for m in managers {
        lines.push(format!("conflicts with {m}:"));
        for c in conflicts.iter().filter(|c| c.manager == m) {
            lines.push(format!("- {}", c.path));
        }
    }
    format!("{head}: {}", lines.join("\n"))
}

/// Who writes and how.
#[derive(Clone, Debug)]
pub struct Writer<'a> {
    /// The field manager.
    pub manager: &'a str,
    /// The apiVersion of the request (`apps/v1`).
    pub api_version: &'a str,
    /// The subresource written (`status`, `scale`), if any.
    pub subresource: Option<&'a str>,
    /// The resource has a status subresource (the main resource then ignores `status`).
    pub has_status: bool,
    /// The write time (RFC 3339, seconds).
    pub now: &'a str,
}

/// One `managedFields` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The manager.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// The apiVersion the fields were written with.
    pub api_version: String,
    /// When the entry last changed.
    pub time: Option<String>,
    /// The subresource written, empty for the main resource.
    pub subresource: String,
    /// The owned fields.
    pub fields: Set,
}

impl Entry {
    fn is(&self, manager: &str, operation: &str, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }

    /// How upstream names this manager in conflicts.
    fn display(&self) -> String {
        if self.operation == "Apply" {
            format!("{:?}", self.manager)
        } else {
            format!("{:?} using {}", self.manager, self.api_version)
        }
    }
}

/// Reads `metadata.managedFields`; entries that are not valid are dropped (upstream resets
/// invalid managed fields rather than failing the write).
pub fn read_entries(object: &Value) -> Vec<Entry> {
    let Some(list) = object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    let text = |e: &Value, k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
    list.iter()
        .filter_map(|e| {
            let fields = Set::from_fields_v1(e.get("fieldsV1")?).ok()?;
            Some(Entry {
                manager: text(e, "manager").unwrap_or_default(),
                operation: text(e, "operation")?,
                api_version: text(e, "apiVersion").unwrap_or_default(),
                time: text(e, "time"),
                subresource: text(e, "subresource").unwrap_or_default(),
                fields,
            })
        })
        .collect()
}

/// Writes `entries` to `metadata.managedFields` (removed when empty).
pub fn write_entries(object: &mut Value, entries: &[Entry]) {
    let list = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            entry_json(
                &e.manager,
                &e.operation,
                &e.api_version,
                e.time.as_deref(),
                &e.subresource,
                e.fields.to_fields_v1(),
            )
        })
        .collect();
    write_list(object, list);
}

/// One `managedFields` entry as JSON, its fields already in `FieldsV1` form.
fn entry_json(
    manager: &str,
    operation: &str,
    api_version: &str,
    time: Option<&str>,
    subresource: &str,
    fields_v1: Value,
) -> Value {
    let mut v = json!({
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields_v1,
    });
    if let Some(t) = time {
        v["time"] = json!(t);
    }
    if !subresource.is_empty() {
        v["subresource"] = json!(subresource);
    }
    v
}

/// Sets `metadata.managedFields` to `list` (removed when empty).
fn write_list(object: &mut Value, list: Vec<Value>) {
    let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

/// The fields of a schema message (JSON name, shape, repeated).
type Fields = &'static [(String, FieldShape, bool)];

/// The schema type at a position of an object. It borrows the schema's field tables, so
/// walking an object looks each field up in its message's table without copying names.
#[derive(Clone, Copy, Debug)]
enum Ty {
    /// A message of the schema (its fields; none when the schema lacks it): granular fields,
    /// no ownership of the struct itself.
    Struct(Fields),
    /// A map whose values are messages with these fields, or scalars (`None`).
    Map(Option<Fields>),
    /// A scalar or a value with a special form (time, quantity, raw JSON): atomic.
    Leaf,
    /// Not in the schema (custom kinds): objects are granular, lists atomic.
    Unknown,
}

/// The fields of the message `name` (none when the schema lacks it).
fn fields_of_message(name: &str) -> Fields {
    message_fields_ref(name).unwrap_or(&[])
}

fn root_ty(object: &Value) -> Ty {
    let av = object.get("apiVersion").and_then(Value::as_str);
    let kind = object.get("kind").and_then(Value::as_str);
    match (av, kind) {
        (Some(av), Some(kind)) => message_for(av, kind)
            .and_then(|m| message_fields_ref(&m))
            .map_or(Ty::Unknown, Ty::Struct),
        _ => Ty::Unknown,
    }
}

/// The type of `field`'s values under `parent` (for lists: of their items).
fn field_ty(parent: &Ty, field: &str) -> Ty {
    match *parent {
        Ty::Struct(fields) => match fields.iter().find(|(n, _, _)| n == field) {
            Some((_, shape, _)) => match shape {
                FieldShape::Text | FieldShape::Integer | FieldShape::Boolean => Ty::Leaf,
                FieldShape::Opaque => Ty::Map(None),
                FieldShape::Message(m) if is_special(m) => Ty::Leaf,
                FieldShape::Message(m) => Ty::Struct(fields_of_message(m)),
                FieldShape::MapOf(m) => Ty::Map(Some(fields_of_message(m))),
            },
            None => Ty::Unknown,
        },
        Ty::Map(None) | Ty::Leaf => Ty::Leaf,
        Ty::Map(Some(fields)) => Ty::Struct(fields),
        Ty::Unknown => Ty::Unknown,
    }
}

/// How a list merges.
#[derive(Clone, Debug, PartialEq)]
enum ListKind {
    Atomic,
    Set,
    Map(Vec<&'static str>),
}

fn list_kind(field: &str, item_ty: &Ty, a: &[Value], b: &[Value]) -> ListKind {
    if strategic::is_set_list(field) {
        return ListKind::Set;
    }
    if matches!(item_ty, Ty::Leaf) {
        return ListKind::Atomic;
    }
    let Some(first) = strategic::lists_merge_key(field, a, b) else {
        return ListKind::Atomic;
    };
    if !a.iter().chain(b).all(|i| i.get(first).is_some()) {
        return ListKind::Atomic;
    }
    ListKind::Map(map_keys(field, first))
}

/// The `x-kubernetes-list-map-keys` of the associative list `field` whose strategic merge key is
/// `first`.
pub fn map_keys(field: &str, first: &'static str) -> Vec<&'static str> {
    match (field, first) {
        ("ports", "containerPort") => vec!["containerPort", "protocol"],
        ("ports", "port") => vec!["port", "protocol"],
        ("topologySpreadConstraints", _) => vec!["topologyKey", "whenUnsatisfiable"],
        _ => vec![first],
    }
}

/// The key fields of an associative-list item (`protocol` defaults to TCP as upstream).
fn item_key(item: &Value, keys: &[&str]) -> Vec<(&'static str, Value)> {
    let mut out = Vec::new();
    for k in keys {
        let k: &'static str = match *k {
            "containerPort" => "containerPort",
            "protocol" => "protocol",
            "port" => "port",
            "topologyKey" => "topologyKey",
            "whenUnsatisfiable" => "whenUnsatisfiable",
            "name" => "name",
            "mountPath" => "mountPath",
            "devicePath" => "devicePath",
            "uid" => "uid",
            "type" => "type",
            "key" => "key",
            "ip" => "ip",
            _ => continue,
        };
        match item.get(k) {
            Some(v) => out.push((k, v.clone())),
            None if k == "protocol" => out.push((k, json!("TCP"))),
            None => {}
        }
    }
    out
}

fn item_element(item: &Value, keys: &[&str]) -> String {
    fieldpath::key(&item_key(item, keys))
}

/// Metadata the server owns, never tracked.
const UNTRACKED_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "selfLink",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// The part of an object whose fields are tracked for `writer`.
fn tracked(object: &Value, writer: &Writer) -> Value {
    let mut out = object.clone();
    let Some(o) = out.as_object_mut() else {
        return Value::Null;
    };
    o.remove("apiVersion");
    o.remove("kind");
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in UNTRACKED_META {
            meta.remove(*f);
        }
        if meta.is_empty() {
            o.remove("metadata");
        }
    }
    if writer.subresource == Some("status") {
        o.retain(|k, _| k == "status");
    } else if writer.has_status {
        o.remove("status");
    }
    out
}

/// A tree the field walks below add members to: a [`Set`], or a `FieldsV1` document built
/// directly (a create records its fields without building a set first).
trait FieldTree: Default {
    /// The child node for `pe`, created when missing.
    fn at(&mut self, pe: String) -> &mut Self;
    /// Makes the path leading to this node a member; `with_children`: members below it follow
    /// (the walk knows before it visits them).
    fn mark(&mut self, with_children: bool);
}

impl FieldTree for Set {
    fn at(&mut self, pe: String) -> &mut Self {
        self.children.entry(pe).or_default()
    }

    fn mark(&mut self, _with_children: bool) {
        self.own = true;
    }
}

/// A `FieldsV1` document: a member with members below it carries `.`, one without is `{}`
/// (as [`Set::to_fields_v1`] writes them).
impl FieldTree for Map<String, Value> {
    fn at(&mut self, pe: String) -> &mut Self {
        let slot = self.entry(pe).or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        match slot {
            Value::Object(m) => m,
            _ => unreachable!("the slot was just made an object"),
        }
    }

    fn mark(&mut self, with_children: bool) {
        if with_children {
            self.entry(".").or_insert_with(|| Value::Object(Map::new()));
        }
    }
}

/// What `fields_of(&tracked(object, writer), ty, true)` is, read from `object` in place: a
/// create tracks every field of the new object, and copying it first cost more than the walk.
fn tracked_fields<T: FieldTree>(object: &Value, writer: &Writer, ty: &Ty) -> T {
    let mut tree = T::default();
    let Some(o) = object.as_object() else {
        return tree;
    };
    for (k, v) in o {
        let skipped = match writer.subresource {
            Some("status") => k != "status",
            _ => writer.has_status && k == "status",
        };
        if skipped || k == "apiVersion" || k == "kind" {
            continue;
        }
        let child_ty = field_ty(ty, k);
        if let (true, Some(meta)) = (k == "metadata", v.as_object()) {
            let mut kept = meta
                .iter()
                .filter(|(f, _)| !UNTRACKED_META.contains(&f.as_str()))
                .peekable();
            if kept.peek().is_none() {
                continue;
            }
            let node = tree.at(fieldpath::field(k));
            for (f, fv) in kept {
                let ty = field_ty(&child_ty, f);
                set_of(fv, &ty, f, true, node.at(fieldpath::field(f)));
            }
            continue;
        }
        set_of(v, &child_ty, k, true, tree.at(fieldpath::field(k)));
    }
    tree
}

/// Adds the fields of `value` (at the node `node`) to the tree. `update` also records maps and
/// list items as members themselves when they are new (what upstream's comparison yields).
fn set_of<T: FieldTree>(value: &Value, ty: &Ty, field: &str, update: bool, node: &mut T) {
    match value {
        Value::Object(m) if !matches!(ty, Ty::Leaf) => {
            if m.is_empty() || (update && matches!(ty, Ty::Map(_))) {
                node.mark(!m.is_empty());
            }
            for (k, v) in m {
                let child_ty = field_ty(ty, k);
                set_of(v, &child_ty, k, update, node.at(fieldpath::field(k)));
            }
        }
        Value::Array(items) => match list_kind(field, ty, items, &[]) {
            ListKind::Atomic => node.mark(false),
            ListKind::Set => {
                if items.is_empty() {
                    node.mark(false);
                }
                for item in items {
                    node.at(fieldpath::value(item)).mark(false);
                }
            }
            ListKind::Map(keys) => {
                if items.is_empty() {
                    node.mark(false);
                }
                for item in items {
                    let child = node.at(item_element(item, &keys));
                    // Items of an associative list hold at least their key fields.
                    child.mark(item.as_object().is_some_and(|m| !m.is_empty()));
                    if let Some(m) = item.as_object() {
                        for (k, v) in m {
                            let child_ty = field_ty(ty, k);
                            set_of(v, &child_ty, k, update, child.at(fieldpath::field(k)));
                        }
                    }
                }
            }
        },
        _ => node.mark(false),
    }
}

/// The fields of a whole (tracked) object.
fn fields_of(value: &Value, ty: &Ty, update: bool) -> Set {
    let mut set = Set::default();
    set_of(value, ty, "", update, &mut set);
    set.own = false;
    set
}

/// Removes empty nodes.
fn prune(set: &mut Set) {
    for child in set.children.values_mut() {
        prune(child);
    }
    set.children.retain(|_, c| !c.is_empty());
}

/// Records in `changed` the fields `new` adds or changes relative to `old`, and in `removed` the
/// fields it drops.
fn diff(old: &Value, new: &Value, ty: &Ty, field: &str, changed: &mut Set, removed: &mut Set) {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) if !matches!(ty, Ty::Leaf) => {
            for (k, nv) in n {
                let child_ty = field_ty(ty, k);
                let pe = fieldpath::field(k);
                match o.get(k) {
                    Some(ov) => diff(ov, nv, &child_ty, k, changed.child(&pe), removed.child(&pe)),
                    None => set_of(nv, &child_ty, k, true, changed.child(&pe)),
                }
            }
            for k in o.keys().filter(|k| !n.contains_key(*k)) {
                removed.child(&fieldpath::field(k)).own = true;
            }
        }
        (Value::Array(o), Value::Array(n)) => match list_kind(field, ty, o, n) {
            ListKind::Atomic => {
                if o != n {
                    changed.own = true;
                }
            }
            ListKind::Set => {
                for v in n.iter().filter(|v| !o.contains(v)) {
                    changed.child(&fieldpath::value(v)).own = true;
                }
                for v in o.iter().filter(|v| !n.contains(v)) {
                    removed.child(&fieldpath::value(v)).own = true;
                }
            }
            ListKind::Map(keys) => {
                let find = |list: &[Value], key: &str| {
                    list.iter().find(|i| item_element(i, &keys) == key).cloned()
                };
                for item in n {
                    let pe = item_element(item, &keys);
                    match find(o, &pe) {
                        Some(old_item) => diff(
                            &old_item,
                            item,
                            ty,
                            "",
                            changed.child(&pe),
                            removed.child(&pe),
                        ),
                        None => {
                            let mut added = Set::default();
                            set_of(item, ty, "", true, &mut added);
                            let node = changed.child(&pe);
                            node.union(&added);
                            node.own = true;
                        }
                    }
                }
                for item in o {
                    let pe = item_element(item, &keys);
                    if find(n, &pe).is_none() {
                        removed.child(&pe).own = true;
                    }
                }
            }
        },
        (o, n) => {
            if o != n {
                set_of(n, ty, field, true, changed);
                changed.own = true;
            }
        }
    }
}

/// Whether a root member of an object is tracked for `writer` (see [`tracked`]; metadata is
/// filtered member by member).
fn tracked_root_member(key: &str, writer: &Writer) -> bool {
    if key == "apiVersion" || key == "kind" {
        return false;
    }
    match writer.subresource {
        Some("status") => key == "status",
        _ => !(writer.has_status && key == "status"),
    }
}

/// The tracked members of an object's metadata, when there are any (else the tracked object
/// has no metadata).
fn tracked_metadata<'a>(
    object: &'a serde_json::Map<String, Value>,
    writer: &Writer,
) -> Option<&'a serde_json::Map<String, Value>> {
    if !tracked_root_member("metadata", writer) {
        return None;
    }
    object
        .get("metadata")
        .and_then(Value::as_object)
        .filter(|m| m.keys().any(|f| !UNTRACKED_META.contains(&f.as_str())))
}

/// The members `keep` admits of two maps, diffed as [`diff`] diffs two objects.
fn diff_members(
    old: &serde_json::Map<String, Value>,
    new: &serde_json::Map<String, Value>,
    keep: &dyn Fn(&str) -> bool,
    ty: &Ty,
    changed: &mut Set,
    removed: &mut Set,
) {
    for (k, nv) in new.iter().filter(|(k, _)| keep(k)) {
        let child_ty = field_ty(ty, k);
        let pe = fieldpath::field(k);
        match old.get(k) {
            Some(ov) => diff(ov, nv, &child_ty, k, changed.child(&pe), removed.child(&pe)),
            None => set_of(nv, &child_ty, k, true, changed.child(&pe)),
        }
    }
    for k in old.keys().filter(|k| keep(k) && !new.contains_key(*k)) {
        removed.child(&fieldpath::field(k)).own = true;
    }
}

/// `compare(&tracked(old, writer), &tracked(new, writer), ty)`, read from both objects in
/// place: an update compared copies of both objects before.
fn compare_tracked(old: &Value, new: &Value, writer: &Writer, ty: &Ty) -> (Set, Set) {
    let (Some(o), Some(n)) = (old.as_object(), new.as_object()) else {
        return compare(&tracked(old, writer), &tracked(new, writer), ty);
    };
    if [o, n]
        .iter()
        .any(|m| m.get("metadata").is_some_and(|v| !v.is_object()))
    {
        return compare(&tracked(old, writer), &tracked(new, writer), ty);
    }
    let (mut changed, mut removed) = (Set::default(), Set::default());
    let root = |k: &str| k != "metadata" && tracked_root_member(k, writer);
    diff_members(o, n, &root, ty, &mut changed, &mut removed);
    let meta_ty = field_ty(ty, "metadata");
    let pe = fieldpath::field("metadata");
    let member = |f: &str| !UNTRACKED_META.contains(&f);
    match (tracked_metadata(o, writer), tracked_metadata(n, writer)) {
        (Some(om), Some(nm)) => diff_members(
            om,
            nm,
            &member,
            &meta_ty,
            changed.child(&pe),
            removed.child(&pe),
        ),
        (None, Some(nm)) => {
            let node = changed.child(&pe);
            if matches!(meta_ty, Ty::Map(_)) {
                node.own = true;
            }
            for (f, fv) in nm.iter().filter(|(f, _)| member(f)) {
                let child_ty = field_ty(&meta_ty, f);
                set_of(fv, &child_ty, f, true, node.child(&fieldpath::field(f)));
            }
        }
        (Some(_), None) => removed.child(&pe).own = true,
        (None, None) => {}
    }
    changed.own = false;
    removed.own = false;
    prune(&mut changed);
    prune(&mut removed);
    (changed, removed)
}

/// The changed and removed fields between two whole (tracked) objects.
fn compare(old: &Value, new: &Value, ty: &Ty) -> (Set, Set) {
    let (mut changed, mut removed) = (Set::default(), Set::default());
    diff(old, new, ty, "", &mut changed, &mut removed);
    changed.own = false;
    removed.own = false;
    prune(&mut changed);
    prune(&mut removed);
    (changed, removed)
}

/// Merges an applied configuration into a live value.
fn merge(live: &Value, applied: &Value, ty: &Ty, field: &str) -> Value {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) if !matches!(ty, Ty::Leaf) => {
            let mut out = l.clone();
            for (k, av) in a {
                if av.is_null() {
                    out.remove(k);
                    continue;
                }
                let child_ty = field_ty(ty, k);
                let merged = match l.get(k) {
                    Some(lv) => merge(lv, av, &child_ty, k),
                    None => av.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(a)) => match list_kind(field, ty, l, a) {
            ListKind::Atomic => applied.clone(),
            ListKind::Set => {
                let mut out = l.clone();
                for v in a {
                    if !out.contains(v) {
                        out.push(v.clone());
                    }
                }
                Value::Array(out)
            }
            ListKind::Map(keys) => {
                let mut out = l.clone();
                for item in a {
                    let pe = item_element(item, &keys);
                    match out.iter().position(|i| item_element(i, &keys) == pe) {
                        Some(at) => out[at] = merge(&out[at], item, ty, ""),
                        None => out.push(item.clone()),
                    }
                }
                Value::Array(out)
            }
        },
        _ => applied.clone(),
    }
}

/// Removes the member `path` from `value`; missing paths are ignored.
fn remove_path(value: &mut Value, path: &[String], ty: &Ty, field: &str) {
    let Some((pe, rest)) = path.split_first() else {
        return;
    };
    if let Some(name) = pe.strip_prefix("f:") {
        let Some(o) = value.as_object_mut() else {
            return;
        };
        if rest.is_empty() {
            o.remove(name);
        } else if let Some(child) = o.get_mut(name) {
            remove_path(child, rest, &field_ty(ty, name), name);
        }
        return;
    }
    let Some(items) = value.as_array_mut() else {
        return;
    };
    let at = if pe.starts_with("k:") {
        let keys = match list_kind(field, ty, items, &[]) {
            ListKind::Map(keys) => keys,
            _ => return,
        };
        items.iter().position(|i| &item_element(i, &keys) == pe)
    } else if let Some(v) = pe.strip_prefix("v:") {
        let Ok(v) = serde_json::from_str::<Value>(v) else {
            return;
        };
        items.iter().position(|i| *i == v)
    } else {
        pe.strip_prefix("i:")
            .and_then(|i| i.parse::<usize>().ok())
            .filter(|i| *i < items.len())
    };
    let Some(at) = at else {
        return;
    };
    if rest.is_empty() {
        items.remove(at);
    } else {
        remove_path(&mut items[at], rest, ty, "");
    }
}

/// Records an `Update` by `writer`: `new` gets the managed fields of `old` (or the ones the
/// client sent) with the changed fields moved to the writer.
pub fn track_update(old: Option<&Value>, new: &mut Value, writer: &Writer) {
    let sent = new
        .pointer("/metadata/managedFields")
        .is_some_and(|m| m.as_array().is_some_and(|a| !a.is_empty()));
    let ty = root_ty(new);
    if let (None, false) = (old, sent) {
        // A create with no managed fields of its own: one entry, written straight from the
        // object (no set built first).
        return track_create(new, writer, &ty);
    }
    let mut entries = match (sent, old) {
        (false, Some(old)) => read_entries(old),
        _ => read_entries(new),
    };
    let (changed, removed) = match old {
        Some(old) => compare_tracked(old, new, writer, &ty),
        // A create: every tracked field is new (read in place, no copy of the object).
        None => (tracked_fields(new, writer, &ty), Set::default()),
    };
    let sub = writer.subresource.unwrap_or("");
    for e in entries.iter_mut() {
        if !e.is(writer.manager, "Update", sub) {
            e.fields = e.fields.difference(&changed).difference(&removed);
        }
    }
    match entries
        .iter_mut()
        .find(|e| e.is(writer.manager, "Update", sub))
    {
        Some(own) if !changed.is_empty() || !removed.is_empty() => {
            own.fields.union(&changed);
            own.fields = own.fields.difference(&removed);
            own.api_version = writer.api_version.to_string();
            own.time = Some(writer.now.to_string());
        }
        Some(_) => {}
        None if !changed.is_empty() => entries.push(Entry {
            manager: writer.manager.to_string(),
            operation: "Update".into(),
            api_version: writer.api_version.to_string(),
            time: Some(writer.now.to_string()),
            subresource: sub.to_string(),
            fields: changed,
        }),
        None => {}
    }
    entries.retain(|e| !e.fields.is_empty());
    write_entries(new, &entries);
}

/// The managed fields of a create whose object carries none: the writer's `Update` entry
/// holding every tracked field (none when nothing is tracked).
fn track_create(new: &mut Value, writer: &Writer, ty: &Ty) {
    let fields: Map<String, Value> = tracked_fields(new, writer, ty);
    let list = if fields.is_empty() {
        Vec::new()
    } else {
        vec![entry_json(
            writer.manager,
            "Update",
            writer.api_version,
            Some(writer.now),
            writer.subresource.unwrap_or(""),
            Value::Object(fields),
        )]
    };
    write_list(new, list);
}

/// Applies `applied` (an object) onto `live` (`None`: the object is created) for `writer`;
/// `force` takes over conflicting fields. Returns the merged object with its managed fields.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    writer: &Writer,
    force: bool,
) -> Result<Value, ApplyError> {
    if !applied.is_object() {
        return Err(ApplyError::NotAnObject);
    }
    let ty = root_ty(applied);
    let mut body = applied.clone();
    if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    if writer.subresource.is_none() && writer.has_status {
        if let Some(o) = body.as_object_mut() {
            o.remove("status");
        }
    }
    let applied_set = fields_of(&tracked(&body, writer), &ty, false);
    let empty = json!({});
    let live_value = live.unwrap_or(&empty);
    let mut entries = read_entries(live_value);
    let live_tracked = tracked(live_value, writer);
    let merged_tracked = merge(&live_tracked, &tracked(&body, writer), &ty, "");
    let (changed, _) = compare(&live_tracked, &merged_tracked, &ty);
    let sub = writer.subresource.unwrap_or("");
    let last_applied = live_value
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .map(|v| fields_of(&tracked(&v, writer), &ty, false));
    let mut conflicts = Vec::new();
    for e in entries.iter_mut() {
        if e.is(writer.manager, "Apply", sub) {
            continue;
        }
        let both = changed.intersection(&e.fields);
        let mut taken = Set::default();
        for path in both.members() {
            // Upgrading from client-side apply: fields the last applied configuration names
            // pass to the applier without a conflict.
            let upgraded = e.manager == CSA_MANAGER
                && last_applied.as_ref().is_some_and(|s| s.contains(&path));
            if force || upgraded {
                taken.insert(&path);
            } else {
                conflicts.push(Conflict {
                    manager: e.display(),
                    path: fieldpath::display(&path),
                });
            }
        }
        e.fields = e.fields.difference(&taken);
    }
    if !conflicts.is_empty() {
        return Err(ApplyError::Conflicts(conflicts));
    }
    let mut merged = merge(live_value, &body, &ty, "");
    let previous = entries
        .iter()
        .find(|e| e.is(writer.manager, "Apply", sub))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let mut others = Set::default();
    for e in entries
        .iter()
        .filter(|e| !e.is(writer.manager, "Apply", sub))
    {
        others.union(&e.fields);
    }
    for path in previous.difference(&applied_set).members() {
        if !others.has_prefix(&path) {
            remove_path(&mut merged, &path, &ty, "");
        }
    }
    entries.retain(|e| !e.is(writer.manager, "Apply", sub));
    entries.push(Entry {
        manager: writer.manager.to_string(),
        operation: "Apply".into(),
        api_version: writer.api_version.to_string(),
        time: Some(writer.now.to_string()),
        subresource: sub.to_string(),
        fields: applied_set,
    });
    entries.retain(|e| !e.fields.is_empty());
    if last_applied.is_some() {
        if let Some(ann) = merged
            .pointer_mut("/metadata/annotations")
            .and_then(Value::as_object_mut)
        {
            let mut config = applied.clone();
            if let Some(meta) = config.get_mut("metadata").and_then(Value::as_object_mut) {
                if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                    a.remove(LAST_APPLIED);
                }
            }
            ann.insert(LAST_APPLIED.into(), Value::String(config.to_string()));
        }
    }
    write_entries(&mut merged, &entries);
    Ok(merged)
}

/// Removes `metadata.managedFields` (for clients that ask not to see them).
pub fn strip_managed_fields(object: &mut Value) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer<'a>(manager: &'a str) -> Writer<'a> {
        Writer {
            manager,
            api_version: "apps/v1",
            subresource: None,
            has_status: true,
            now: "2026-01-01T00:00:00Z",
        }
    }

    fn deployment(replicas: i64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": replicas,
                     "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}}
        })
    }

    fn entry<'a>(object: &'a Value, manager: &str) -> &'a Value {
        object["metadata"]["managedFields"]
            .as_array()
            .and_then(|a| a.iter().find(|e| e["manager"] == manager))
            .expect("entry")
    }

    #[test]
    fn a_create_tracks_the_same_fields_as_the_tracked_copy() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"a": "b"},
                         "ownerReferences": [{"uid": "o", "name": "rs", "kind": "ReplicaSet"}]},
            "spec": {"containers": [{"name": "c", "image": "i",
                                     "ports": [{"containerPort": 80}], "args": ["x"]}],
                     "volumes": []},
            "status": {"phase": "Pending"}
        });
        let bare = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                          "spec": {}});
        let status = Writer {
            subresource: Some("status"),
            ..writer("kubelet")
        };
        let no_status = Writer {
            has_status: false,
            ..writer("m")
        };
        for object in [&pod, &deployment(2, "a"), &bare] {
            for w in [writer("m"), status.clone(), no_status.clone()] {
                let ty = root_ty(object);
                assert_eq!(
                    tracked_fields::<Set>(object, &w, &ty),
                    fields_of(&tracked(object, &w), &ty, true),
                    "{object} for {:?}",
                    w.subresource
                );
            }
        }
    }

    #[test]
    fn a_create_writes_the_entry_a_field_set_would() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "labels": {"a": "b"},
                         "annotations": {}, "finalizers": ["x", "y"],
                         "ownerReferences": [{"uid": "o", "name": "rs", "kind": "ReplicaSet"}]},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": {},
                                     "ports": [{"containerPort": 80}, {"containerPort": 53,
                                               "protocol": "UDP"}], "args": ["x"]}],
                     "volumes": [], "nodeSelector": {"k": "v"}},
            "status": {"phase": "Pending"}
        });
        let config_map = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c"}, "data": {"k": "v"}});
        let custom = json!({"apiVersion": "example.com/v1", "kind": "Thing",
            "metadata": {"name": "t"}, "spec": {"list": [1, 2], "nested": {"a": {}}}});
        let untracked = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "uid": "u"}});
        let status = Writer {
            subresource: Some("status"),
            ..writer("kubelet")
        };
        for object in [&pod, &deployment(2, "a"), &config_map, &custom, &untracked] {
            for w in [writer("m"), status.clone()] {
                let ty = root_ty(object);
                let mut fast = object.clone();
                track_create(&mut fast, &w, &ty);
                let mut by_set = object.clone();
                let fields: Set = tracked_fields(object, &w, &ty);
                write_entries(
                    &mut by_set,
                    &[Entry {
                        manager: w.manager.to_string(),
                        operation: "Update".into(),
                        api_version: w.api_version.to_string(),
                        time: Some(w.now.to_string()),
                        subresource: w.subresource.unwrap_or("").to_string(),
                        fields,
                    }],
                );
                assert_eq!(fast, by_set, "{object} for {:?}", w.subresource);
            }
        }
        let mut created = pod.clone();
        track_update(None, &mut created, &writer("m"));
        assert!(created
            .pointer("/metadata/managedFields/0/fieldsV1/f:spec/f:containers")
            .is_some());
    }

    #[test]
    fn an_update_compares_the_same_fields_as_the_tracked_copies() {
        let pod = |labels: Value, phase: &str, image: &str| {
            json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": labels,
                             "resourceVersion": "3"},
                "spec": {"containers": [{"name": "c", "image": image}], "nodeName": "n"},
                "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True"}]}
            })
        };
        let untracked_meta_only = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "uid": "u"}, "spec": {}});
        let no_meta = json!({"apiVersion": "v1", "kind": "Pod", "spec": {"nodeName": "m"}});
        let objects = [
            pod(json!({"a": "b"}), "Pending", "i"),
            pod(json!({"a": "c", "d": "e"}), "Running", "i"),
            pod(json!({}), "Running", "j"),
            untracked_meta_only,
            no_meta,
            deployment(2, "a"),
            deployment(3, "b"),
        ];
        let status = Writer {
            subresource: Some("status"),
            ..writer("kubelet")
        };
        let no_status = Writer {
            has_status: false,
            ..writer("m")
        };
        for old in &objects {
            for new in &objects {
                for w in [writer("m"), status.clone(), no_status.clone()] {
                    let ty = root_ty(new);
                    assert_eq!(
                        compare_tracked(old, new, &w, &ty),
                        compare(&tracked(old, &w), &tracked(new, &w), &ty),
                        "{old} -> {new} for {:?}",
                        w.subresource
                    );
                }
            }
        }
    }

    #[test]
    fn apply_creates_an_apply_entry_with_upstream_field_sets() {
        let out = apply(None, &deployment(1, "a"), &writer("kubectl"), false).expect("apply");
        let e = entry(&out, "kubectl");
        assert_eq!(e["operation"], "Apply");
        assert_eq!(e["apiVersion"], "apps/v1");
        assert_eq!(e["fieldsType"], "FieldsV1");
        let f = &e["fieldsV1"];
        assert_eq!(f["f:spec"]["f:replicas"], json!({}));
        assert_eq!(f["f:metadata"]["f:labels"], json!({"f:app": {}}));
        assert!(f["f:metadata"].get("f:name").is_none());
        let c = &f["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"];
        assert_eq!(c, &json!({".": {}, "f:image": {}, "f:name": {}}));
        assert_eq!(out["spec"]["replicas"], 1);
    }

    #[test]
    fn update_moves_changed_fields_and_conflicts_with_apply() {
        let live = apply(None, &deployment(1, "a"), &writer("kubectl"), false).expect("apply");
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(5);
        track_update(Some(&live), &mut scaled, &writer("kube-scale"));
        let upd = entry(&scaled, "kube-scale");
        assert_eq!(upd["operation"], "Update");
        assert_eq!(upd["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
        assert!(entry(&scaled, "kubectl")["fieldsV1"]["f:spec"]
            .get("f:replicas")
            .is_none());
        // Re-applying replicas 1 now conflicts with the scaler.
        let err = apply(
            Some(&scaled),
            &deployment(1, "a"),
            &writer("kubectl"),
            false,
        )
        .expect_err("conflict");
        let ApplyError::Conflicts(c) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(c[0].path, ".spec.replicas");
        assert_eq!(c[0].manager, "\"kube-scale\" using apps/v1");
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kube-scale\" using apps/v1: .spec.replicas"
        );
        // The same value is shared ownership, not a conflict.
        let shared = apply(
            Some(&scaled),
            &deployment(5, "a"),
            &writer("kubectl"),
            false,
        )
        .expect("same");
        assert_eq!(shared["spec"]["replicas"], 5);
        // Forcing takes the field over.
        let forced =
            apply(Some(&scaled), &deployment(2, "a"), &writer("kubectl"), true).expect("force");
        assert_eq!(forced["spec"]["replicas"], 2);
        assert!(forced["metadata"]["managedFields"]
            .as_array()
            .expect("list")
            .iter()
            .all(|e| e["manager"] != "kube-scale"));
    }

    #[test]
    fn fields_no_longer_applied_are_removed_unless_owned_by_others() {
        let mut first = deployment(1, "a");
        first["metadata"]["labels"]["tier"] = json!("x");
        first["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .expect("list")
            .push(json!({"name": "side", "image": "s"}));
        let live = apply(None, &first, &writer("kubectl"), false).expect("apply");
        let out = apply(Some(&live), &deployment(1, "a"), &writer("kubectl"), false).expect("2nd");
        assert!(out["metadata"]["labels"].get("tier").is_none());
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"]
                .as_array()
                .expect("list")
                .len(),
            1
        );
        // Another manager sharing the label keeps it.
        let other = apply(Some(&live), &first, &writer("other"), false).expect("other");
        let out = apply(Some(&other), &deployment(1, "a"), &writer("kubectl"), false).expect("3rd");
        assert_eq!(out["metadata"]["labels"]["tier"], "x");
    }

    #[test]
    fn associative_lists_merge_by_key_and_keep_other_items() {
        let live = apply(None, &deployment(1, "a"), &writer("one"), false).expect("one");
        let mut second = deployment(1, "a");
        second["spec"]["template"]["spec"]["containers"] =
            json!([{"name": "side", "image": "s", "ports": [{"containerPort": 80}]}]);
        let out = apply(Some(&live), &second, &writer("two"), false).expect("two");
        let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("list")
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, vec!["c", "side"]);
        let f = &entry(&out, "two")["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"];
        assert!(f["k:{\"name\":\"side\"}"]["f:ports"]
            .get("k:{\"containerPort\":80,\"protocol\":\"TCP\"}")
            .is_some());
    }

    #[test]
    fn create_records_maps_and_items_as_members() {
        let mut obj = deployment(1, "a");
        track_update(None, &mut obj, &writer("kubectl-create"));
        let f = &entry(&obj, "kubectl-create")["fieldsV1"];
        assert_eq!(f["f:metadata"]["f:labels"], json!({".": {}, "f:app": {}}));
        assert!(f["f:spec"].get(".").is_none());
    }

    #[test]
    fn removed_fields_leave_every_manager() {
        let live = apply(None, &deployment(1, "a"), &writer("kubectl"), false).expect("apply");
        let mut edited = live.clone();
        edited["metadata"]["labels"] = json!({});
        track_update(Some(&live), &mut edited, &writer("kubectl-edit"));
        let f = &entry(&edited, "kubectl")["fieldsV1"]["f:metadata"];
        assert!(f.get("f:labels").is_none_or(|l| l.get("f:app").is_none()));
    }

    #[test]
    fn status_is_ignored_on_the_main_resource_and_tracked_on_its_subresource() {
        let mut obj = deployment(1, "a");
        obj["status"] = json!({"replicas": 1});
        let out = apply(None, &obj, &writer("kubectl"), false).expect("apply");
        assert!(out.get("status").is_none());
        let mut new = out.clone();
        new["status"] = json!({"replicas": 3});
        let w = Writer {
            subresource: Some("status"),
            ..writer("ctrl")
        };
        track_update(Some(&out), &mut new, &w);
        let e = entry(&new, "ctrl");
        assert_eq!(e["subresource"], "status");
        assert_eq!(e["fieldsV1"], json!({"f:status": {"f:replicas": {}}}));
    }

    #[test]
    fn client_side_apply_fields_pass_to_server_side_apply() {
        let mut csa = deployment(1, "a");
        csa["metadata"]["annotations"] = json!({LAST_APPLIED: deployment(1, "a").to_string()});
        track_update(None, &mut csa, &writer(CSA_MANAGER));
        let out = apply(Some(&csa), &deployment(3, "b"), &writer("kubectl"), false)
            .expect("upgrade without conflicts");
        assert_eq!(out["spec"]["replicas"], 3);
        let last: Value = serde_json::from_str(
            out["metadata"]["annotations"][LAST_APPLIED]
                .as_str()
                .expect("annotation"),
        )
        .expect("json");
        assert_eq!(last["spec"]["replicas"], 3);
    }

    #[test]
    fn set_lists_union() {
        let mut a = deployment(1, "a");
        a["metadata"]["finalizers"] = json!(["x"]);
        let live = apply(None, &a, &writer("one"), false).expect("one");
        let mut b = deployment(1, "a");
        b["metadata"]["finalizers"] = json!(["y"]);
        let out = apply(Some(&live), &b, &writer("two"), false).expect("two");
        assert_eq!(out["metadata"]["finalizers"], json!(["x", "y"]));
        let f = &entry(&out, "two")["fieldsV1"]["f:metadata"]["f:finalizers"];
        assert_eq!(f, &json!({"v:\"y\"": {}}));
    }
}
