//! Reading and editing JSON bytes without building a `serde_json::Value` tree: where a field's
//! value sits in a document (by walking it with `serde`'s `IgnoredAny` and borrowing
//! `RawValue`s, so nothing is allocated for the parts skipped), and splicing
//! `metadata.resourceVersion` into a stored object.

use std::fmt;
use std::ops::Range;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::storage::Revision;

/// Finds the values of some keys of one JSON object (the last one wins for duplicates, as when
/// decoding to a `Value`).
struct Keys<'k> {
    keys: &'k [&'k str],
}

impl<'de> Visitor<'de> for Keys<'_> {
    type Value = Vec<Option<&'de RawValue>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = vec![None; self.keys.len()];
        while let Some(index) = map.next_key_seed(KeyIndex(self.keys))? {
            match index {
                Some(i) => found[i] = Some(map.next_value::<&'de RawValue>()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}

/// A map key, as its index among the keys looked for.
struct KeyIndex<'k>(&'k [&'k str]);

impl<'de> DeserializeSeed<'de> for KeyIndex<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyIndex<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|k| *k == v))
    }
}

/// The values of `keys` in the JSON object `json` (the whole document is checked).
fn top_level<'a>(
    json: &'a [u8],
    keys: &[&str],
) -> Result<Vec<Option<&'a RawValue>>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let found = (&mut de).deserialize_map(Keys { keys })?;
    de.end()?;
    Ok(found)
}

/// The values of `keys` in `raw`, all None when it is not an object.
fn nested<'a>(raw: &'a RawValue, keys: &[&str]) -> Vec<Option<&'a RawValue>> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    (&mut de)
        .deserialize_map(Keys { keys })
        .unwrap_or_else(|_| vec![None; keys.len()])
}

fn range_in(json: &[u8], raw: &RawValue) -> Range<usize> {
    let start = (raw.get().as_ptr() as usize).saturating_sub(json.as_ptr() as usize);
    start..start + raw.get().len()
}

/// Where the value at each path (a list of keys from the root) is in the JSON object `json`.
/// Fails when `json` is not one valid JSON object.
pub(super) fn ranges<const N: usize>(
    json: &[u8],
    paths: [&[&str]; N],
) -> Result<[Option<Range<usize>>; N], serde_json::Error> {
    let mut firsts: Vec<&str> = paths.iter().filter_map(|p| p.first().copied()).collect();
    firsts.sort_unstable();
    firsts.dedup();
    let top = top_level(json, &firsts)?;
    let mut out: [Option<Range<usize>>; N] = std::array::from_fn(|_| None);
    for (slot, path) in out.iter_mut().zip(paths) {
        let Some((first, rest)) = path.split_first() else {
            continue;
        };
        let mut current = firsts
            .iter()
            .position(|k| k == first)
            .and_then(|i| top.get(i).copied().flatten());
        for key in rest {
            current = current.and_then(|raw| nested(raw, &[key]).pop().flatten());
        }
        *slot = current.map(|raw| range_in(json, raw));
    }
    Ok(out)
}

/// The non-empty string at the dotted `path` of the JSON object `json`, if there is one.
pub(super) fn string_at(json: &[u8], path: &str) -> Result<Option<String>, serde_json::Error> {
    let segments: Vec<&str> = path.split('.').collect();
    let [range] = ranges(json, [segments.as_slice()])?;
    Ok(range.and_then(|r| non_empty_string(&json[r])))
}

/// Where the fields the cache reads sit in a stored object whose metadata can take a spliced
/// `resourceVersion`, found in one walk of the document (see [`layout`]).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Layout {
    /// The raw `kind` value.
    pub kind: Option<Range<usize>>,
    /// The raw `apiVersion` value.
    pub api_version: Option<Range<usize>>,
    /// The raw `metadata.labels` value.
    pub labels: Option<Range<usize>>,
    /// The raw value at the index path.
    pub indexed: Option<Range<usize>>,
    /// Just after the `{` of the metadata object: where `resourceVersion` goes.
    pub at: usize,
    /// Whether the metadata object is empty (the spliced field then takes no comma).
    pub empty: bool,
}

impl Layout {
    /// `stored` with `"resourceVersion":"<revision>"` spliced in, and the ranges moved to
    /// where they are in the result.
    pub(super) fn splice(mut self, stored: &[u8], revision: Revision) -> (Vec<u8>, Self) {
        let out = crate::objects::splice_resource_version(stored, self.at, self.empty, revision);
        let (at, added) = (self.at, out.len() - stored.len());
        let shift = |r: &mut Option<Range<usize>>| {
            if let Some(r) = r.as_mut().filter(|r| r.start >= at) {
                *r = r.start + added..r.end + added;
            }
        };
        shift(&mut self.kind);
        shift(&mut self.api_version);
        shift(&mut self.labels);
        shift(&mut self.indexed);
        (out, self)
    }
}

/// The [`Layout`] of `stored` (with the value at `index_path` when given), in one walk of the
/// top level plus the metadata object; None when `stored` is not an object with a metadata
/// object free of a resourceVersion (the caller then goes through a `Value`). Fails when
/// `stored` is not valid JSON.
pub(super) fn layout(
    stored: &[u8],
    index_path: Option<&[&str]>,
) -> Result<Option<Layout>, serde_json::Error> {
    if stored.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        // Validate, then let the caller handle the odd shape.
        serde_json::from_slice::<IgnoredAny>(stored)?;
        return Ok(None);
    }
    let index_first = index_path.and_then(|p| p.first().copied());
    let mut keys = vec!["kind", "apiVersion", "metadata"];
    if let Some(first) = index_first.filter(|f| !keys.contains(f)) {
        keys.push(first);
    }
    let top = top_level(stored, &keys)?;
    let found = |key: &str| {
        keys.iter()
            .position(|k| *k == key)
            .and_then(|i| top.get(i).copied().flatten())
    };
    let Some(metadata) = found("metadata").filter(|m| m.get().starts_with('{')) else {
        return Ok(None);
    };
    let [resource_version, labels] =
        <[Option<&RawValue>; 2]>::try_from(nested(metadata, &["resourceVersion", "labels"]))
            .unwrap_or([None, None]);
    if resource_version.is_some() {
        return Ok(None);
    }
    let indexed = index_path.and_then(|path| {
        let (first, rest) = path.split_first()?;
        let mut current = found(first);
        for key in rest {
            current = current.and_then(|raw| nested(raw, &[key]).pop().flatten());
        }
        current
    });
    let range = |raw: Option<&RawValue>| raw.map(|raw| range_in(stored, raw));
    Ok(Some(Layout {
        kind: range(found("kind")),
        api_version: range(found("apiVersion")),
        labels: range(labels),
        indexed: range(indexed),
        at: range_in(stored, metadata).start + 1,
        empty: metadata.get()[1..].trim_start().starts_with('}'),
    }))
}

/// The non-empty JSON string `raw` holds, if it is one.
pub(super) fn non_empty_string(raw: &[u8]) -> Option<String> {
    match serde_json::from_slice::<Value>(raw).ok()? {
        Value::String(s) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// Appends `s` as a JSON string.
pub(super) fn push_json_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&serde_json::to_vec(s).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ranges_point_at_nested_values_and_skip_missing_ones() {
        let json = br#"{"a":1,"metadata":{"labels":{"x":"y"},"name":"n"},"spec":"s"}"#;
        let [labels, name, missing, through_string, a] = ranges(
            json,
            [
                &["metadata", "labels"],
                &["metadata", "name"],
                &["metadata", "nope"],
                &["spec", "x"],
                &["a"],
            ],
        )
        .expect("valid");
        let text =
            |r: Option<Range<usize>>| r.map(|r| String::from_utf8_lossy(&json[r]).into_owned());
        assert_eq!(text(labels).as_deref(), Some(r#"{"x":"y"}"#));
        assert_eq!(text(name).as_deref(), Some(r#""n""#));
        assert_eq!(missing, None);
        assert_eq!(through_string, None);
        assert_eq!(text(a).as_deref(), Some("1"));
        assert!(ranges(b"{\"a\":", [&["a"]]).is_err());
        assert!(ranges(b"{} trailing", [&["a"]]).is_err());
    }

    #[test]
    fn one_walk_finds_what_separate_lookups_find_after_the_splice() {
        let docs: [&[u8]; 4] = [
            br#"{"apiVersion":"v1","kind":"Pod","metadata":{"labels":{"a":"b"},"name":"p"},"spec":{"nodeName":"n1"}}"#,
            br#"{"metadata":{"name":"p","labels":{"a":"b"}},"spec":{"nodeName":""},"kind":"Pod","apiVersion":"v1"}"#,
            br#"{ "spec" : {"x": {"nodeName": "no"}}, "metadata" : { } , "kind":"K"}"#,
            br#"{"metadata":{"labels":null},"spec":"s","apiVersion":"a/b"}"#,
        ];
        let path: &[&str] = &["spec", "nodeName"];
        for doc in docs {
            let layout = layout(doc, Some(path)).expect("valid").expect("spliceable");
            let (out, moved) = layout.splice(doc, 77);
            let [kind, api_version, labels, indexed, rv] = ranges(
                &out,
                [
                    &["kind"],
                    &["apiVersion"],
                    &["metadata", "labels"],
                    path,
                    &["metadata", "resourceVersion"],
                ],
            )
            .expect("still JSON");
            let text = String::from_utf8_lossy(doc);
            assert_eq!(moved.kind, kind, "{text}");
            assert_eq!(moved.api_version, api_version, "{text}");
            assert_eq!(moved.labels, labels, "{text}");
            assert_eq!(moved.indexed, indexed, "{text}");
            assert_eq!(rv.map(|r| out[r].to_vec()), Some(br#""77""#.to_vec()));
        }
        let indexed = |doc: &[u8]| {
            let layout = layout(doc, Some(path)).expect("valid").expect("spliceable");
            let (out, moved) = layout.splice(doc, 1);
            moved.indexed.and_then(|r| non_empty_string(&out[r]))
        };
        assert_eq!(indexed(docs[0]).as_deref(), Some("n1"));
        assert_eq!(indexed(docs[1]), None);
        assert_eq!(indexed(docs[2]), None);
    }

    #[test]
    fn the_resource_version_is_spliced_into_metadata() {
        let cases = [
            (json!({"metadata": {"name": "a"}, "x": 1}), true),
            (json!({"metadata": {}}), true),
            (json!({"metadata": {"resourceVersion": "1"}}), false),
            (json!({"x": 1}), false),
            (json!({"metadata": null}), false),
        ];
        for (value, spliced) in cases {
            let stored = serde_json::to_vec(&value).expect("json");
            let layout = layout(&stored, None).expect("valid");
            assert_eq!(layout.is_some(), spliced, "{value}");
            if let Some(layout) = layout {
                let (out, _) = layout.splice(&stored, 12);
                let mut expected = value.clone();
                expected["metadata"]["resourceVersion"] = json!("12");
                let got: Value = serde_json::from_slice(&out).expect("still JSON");
                assert_eq!(got, expected);
            }
        }
        assert!(layout(b"{\"metadata\":{}", None).is_err());
        assert_eq!(
            string_at(br#"{"spec":{"nodeName":"n1"}}"#, "spec.nodeName").expect("valid"),
            Some("n1".to_string())
        );
        assert_eq!(
            string_at(br#"{"spec":{"nodeName":""}}"#, "spec.nodeName").expect("valid"),
            None
        );
    }
}
