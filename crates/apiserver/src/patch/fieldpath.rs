//! Field sets in the upstream `FieldsV1` format, the ownership records of `managedFields`.
//!
//! A set is a tree keyed by path elements: `f:<field>` (a struct or map field), `k:{...}` (an
//! item of an associative list, by its key fields), `v:<json>` (an item of a set list) and
//! `i:<n>` (a list index). A node that is itself a member of the set carries `.` in JSON, or is
//! written as `{}` when it has no children.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Why a `FieldsV1` document could not be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FieldPathError {
    /// A node of the document is not a JSON object.
    #[error("FieldsV1 node at {0} is not an object")]
    NotAnObject(String),
    /// A key is not a known path element.
    #[error("unknown path element {0:?}")]
    BadElement(String),
}

/// A set of field paths.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Set {
    /// The path leading to this node is itself a member.
    pub own: bool,
    /// Members below this node, by path element.
    pub children: BTreeMap<String, Set>,
}

/// The path element of a struct or map field.
pub fn field(name: &str) -> String {
    let mut pe = String::with_capacity(name.len() + 2);
    pe.push_str("f:");
    pe.push_str(name);
    pe
}

/// The path element of an associative-list item with the given key fields (sorted by name).
pub fn key(fields: &[(&str, Value)]) -> String {
    let mut sorted: Vec<&(&str, Value)> = fields.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let parts: Vec<String> = sorted
        .iter()
        .map(|(k, v)| format!("{}:{}", Value::String((*k).to_string()), v))
        .collect();
    format!("k:{{{}}}", parts.join(","))
}

/// The path element of a set-list item.
pub fn value(v: &Value) -> String {
    format!("v:{v}")
}

/// Renders a path the way upstream prints it in conflicts: `.spec.containers[name="c"].image`.
pub fn display(path: &[String]) -> String {
    let mut out = String::new();
    for pe in path {
        if let Some(f) = pe.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = pe.strip_prefix("k:") {
            let parts: Vec<String> = serde_json::from_str::<Map<String, Value>>(k)
                .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                .unwrap_or_default();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = pe.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        } else if let Some(i) = pe.strip_prefix("i:") {
            out.push_str(&format!("[{i}]"));
        }
    }
    out
}

fn valid_element(pe: &str) -> bool {
    ["f:", "k:", "v:", "i:"].iter().any(|p| pe.starts_with(p))
}

impl Set {
    /// Whether the set has no members.
    pub fn is_empty(&self) -> bool {
        !self.own && self.children.is_empty()
    }

    /// The child node for `pe`, created when missing.
    pub fn child(&mut self, pe: &str) -> &mut Set {
        self.children.entry(pe.to_string()).or_default()
    }

    /// Inserts the member `path`.
    pub fn insert(&mut self, path: &[String]) {
        let mut node = self;
        for pe in path {
            node = node.child(pe);
        }
        node.own = true;
    }

    /// Whether `path` is a member.
    pub fn contains(&self, path: &[String]) -> bool {
        self.node(path).is_some_and(|n| n.own)
    }

    /// The node at `path`, if any member lies at or below it.
    pub fn node(&self, path: &[String]) -> Option<&Set> {
        let mut node = self;
        for pe in path {
            node = node.children.get(pe)?;
        }
        Some(node)
    }

    /// Whether any member lies at or below `path`.
    pub fn has_prefix(&self, path: &[String]) -> bool {
        self.node(path).is_some_and(|n| !n.is_empty())
    }

    /// Adds every member of `other`.
    pub fn union(&mut self, other: &Set) {
        self.own |= other.own;
        for (pe, child) in &other.children {
            self.child(pe).union(child);
        }
    }

    /// The members of `self` that are not in `other`.
    pub fn difference(&self, other: &Set) -> Set {
        let mut out = Set {
            own: self.own && !other.own,
            children: BTreeMap::new(),
        };
        for (pe, child) in &self.children {
            let rest = match other.children.get(pe) {
                Some(o) => child.difference(o),
                None => child.clone(),
            };
            if !rest.is_empty() {
                out.children.insert(pe.clone(), rest);
            }
        }
        out
    }

    /// The members in both sets.
    pub fn intersection(&self, other: &Set) -> Set {
        let mut out = Set {
            own: self.own && other.own,
            children: BTreeMap::new(),
        };
        for (pe, child) in &self.children {
            if let Some(o) = other.children.get(pe) {
                let both = child.intersection(o);
                if !both.is_empty() {
                    out.children.insert(pe.clone(), both);
                }
            }
        }
        out
    }

    /// Every member path, depth first.
    pub fn members(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if self.own && !prefix.is_empty() {
            out.push(prefix.clone());
        }
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            child.collect(prefix, out);
            prefix.pop();
        }
    }

    /// The `FieldsV1` JSON of the set.
    pub fn to_fields_v1(&self) -> Value {
        let mut m = Map::new();
        if self.own && !self.children.is_empty() {
            m.insert(".".into(), Value::Object(Map::new()));
        }
        for (pe, child) in &self.children {
            m.insert(pe.clone(), child.to_fields_v1());
        }
        Value::Object(m)
    }

    /// Reads a `FieldsV1` document.
    pub fn from_fields_v1(v: &Value) -> Result<Set, FieldPathError> {
        let mut root = Set::from_node(v, "")?;
        root.own = false;
        Ok(root)
    }

    fn from_node(v: &Value, at: &str) -> Result<Set, FieldPathError> {
        let m = v
            .as_object()
            .ok_or_else(|| FieldPathError::NotAnObject(at.to_string()))?;
        let mut set = Set {
            own: m.is_empty(),
            children: BTreeMap::new(),
        };
        for (pe, child) in m {
            if pe == "." {
                set.own = true;
                continue;
            }
            if !valid_element(pe) {
                return Err(FieldPathError::BadElement(pe.clone()));
            }
            set.children
                .insert(pe.clone(), Set::from_node(child, &format!("{at}/{pe}"))?);
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn fields_v1_round_trips() {
        let doc = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}}},
                       "f:replicas": {}}
        });
        let set = Set::from_fields_v1(&doc).expect("parse");
        assert!(set.contains(&p(&["f:spec", "f:replicas"])));
        assert!(set.contains(&p(&["f:metadata", "f:labels"])));
        assert!(!set.contains(&p(&["f:spec"])));
        assert_eq!(set.to_fields_v1(), doc);
        assert_eq!(set.members().len(), 6);
    }

    #[test]
    fn malformed_documents_are_rejected() {
        assert!(Set::from_fields_v1(&json!({"x:y": {}})).is_err());
        assert!(Set::from_fields_v1(&json!({"f:a": 3})).is_err());
    }

    #[test]
    fn set_algebra() {
        let mut a = Set::default();
        a.insert(&p(&["f:spec", "f:replicas"]));
        a.insert(&p(&["f:spec", "f:paused"]));
        let mut b = Set::default();
        b.insert(&p(&["f:spec", "f:replicas"]));
        let d = a.difference(&b);
        assert_eq!(d.members(), vec![p(&["f:spec", "f:paused"])]);
        let i = a.intersection(&b);
        assert_eq!(i.members(), vec![p(&["f:spec", "f:replicas"])]);
        assert!(a.has_prefix(&p(&["f:spec"])));
        assert!(!a.has_prefix(&p(&["f:status"])));
        let mut u = d.clone();
        u.union(&b);
        assert_eq!(u, a);
        assert!(a.difference(&a).is_empty());
    }

    #[test]
    fn keys_sort_and_paths_display_as_upstream() {
        let k = key(&[("protocol", json!("TCP")), ("containerPort", json!(80))]);
        assert_eq!(k, "k:{\"containerPort\":80,\"protocol\":\"TCP\"}");
        let path = p(&["f:spec", "f:containers", "k:{\"name\":\"c\"}", "f:image"]);
        assert_eq!(display(&path), ".spec.containers[name=\"c\"].image");
        assert_eq!(display(&p(&["f:spec", "f:replicas"])), ".spec.replicas");
        assert_eq!(value(&json!("x")), "v:\"x\"");
    }
}
