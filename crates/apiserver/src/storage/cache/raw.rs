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
    Ok(range
        .and_then(|r| serde_json::from_slice::<Value>(&json[r]).ok())
        .and_then(|v| match v {
            Value::String(s) if !s.is_empty() => Some(s),
            _ => None,
        }))
}

/// `stored` with `"resourceVersion":"<revision>"` added at the start of its metadata; None when
/// it is not an object with a metadata object free of a resourceVersion (the caller then goes
/// through a `Value`). Fails when `stored` is not valid JSON.
pub(super) fn splice_resource_version(
    stored: &[u8],
    revision: Revision,
) -> Result<Option<Vec<u8>>, serde_json::Error> {
    if stored.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        // Validate, then let the caller handle the odd shape.
        serde_json::from_slice::<IgnoredAny>(stored)?;
        return Ok(None);
    }
    let top = top_level(stored, &["metadata"])?;
    let Some(metadata) = top.first().copied().flatten() else {
        return Ok(None);
    };
    if !metadata.get().starts_with('{') {
        return Ok(None);
    }
    if nested(metadata, &["resourceVersion"])
        .first()
        .is_some_and(Option::is_some)
    {
        return Ok(None);
    }
    let at = range_in(stored, metadata).start + 1;
    let empty = metadata.get()[1..].trim_start().starts_with('}');
    let field = format!(
        "\"resourceVersion\":\"{revision}\"{}",
        if empty { "" } else { "," }
    );
    let mut out = Vec::with_capacity(stored.len() + field.len());
    out.extend_from_slice(&stored[..at]);
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(&stored[at..]);
    Ok(Some(out))
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
            let out = splice_resource_version(&stored, 12).expect("valid");
            assert_eq!(out.is_some(), spliced, "{value}");
            if let Some(out) = out {
                let mut expected = value.clone();
                expected["metadata"]["resourceVersion"] = json!("12");
                let got: Value = serde_json::from_slice(&out).expect("still JSON");
                assert_eq!(got, expected);
            }
        }
        assert!(splice_resource_version(b"{\"metadata\":{}", 1).is_err());
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
