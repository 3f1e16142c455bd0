//! `describe namespace` and the generic view for every other kind.

use serde_json::Value;

use super::{annotations_without_last_applied, line, map_lines, metadata, str_of};

pub(super) fn namespace(ns: &Value, w: &mut String) {
    let meta = &ns["metadata"];
    metadata(ns, w, false);
    map_lines(w, 0, "Labels", &meta["labels"], "=");
    map_lines(
        w,
        0,
        "Annotations",
        &annotations_without_last_applied(meta),
        ": ",
    );
    line(
        w,
        0,
        &format!("Status:\t{}", str_of(&ns["status"]["phase"], "Active")),
    );
    line(w, 0, "");
    line(w, 0, "No resource quota.");
    line(w, 0, "");
    line(w, 0, "No LimitRange resource.");
}

fn name_block(o: &Value, w: &mut String) {
    let meta = &o["metadata"];
    metadata(o, w, true);
    map_lines(w, 0, "Labels", &meta["labels"], "=");
    map_lines(
        w,
        0,
        "Annotations",
        &annotations_without_last_applied(meta),
        ": ",
    );
}

fn sorted_entries(map: &Value) -> Vec<(&String, &Value)> {
    let mut entries: Vec<(&String, &Value)> = map.as_object().into_iter().flatten().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

/// `describe configmap`: each key under a `----` rule, then the binary keys' sizes.
pub(super) fn configmap(o: &Value, w: &mut String) {
    name_block(o, w);
    line(w, 0, "");
    line(w, 0, "Data");
    line(w, 0, "====");
    for (key, value) in sorted_entries(&o["data"]) {
        line(w, 0, &format!("{key}:"));
        line(w, 0, "----");
        line(w, 0, value.as_str().unwrap_or(""));
        line(w, 0, "");
    }
    line(w, 0, "");
    line(w, 0, "BinaryData");
    line(w, 0, "====");
    for (key, value) in sorted_entries(&o["binaryData"]) {
        line(w, 0, &format!("{key}: {} bytes", decoded_len(value)));
    }
    line(w, 0, "");
}

/// `describe secret`: the type and each key's size, never the values (except a service account
/// token's).
pub(super) fn secret(o: &Value, w: &mut String) {
    name_block(o, w);
    line(w, 0, "");
    line(w, 0, &format!("Type:\t{}", str_of(&o["type"], "")));
    line(w, 0, "");
    line(w, 0, "Data");
    line(w, 0, "====");
    let token_secret = o["type"] == "kubernetes.io/service-account-token";
    for (key, value) in sorted_entries(&o["data"]) {
        if token_secret && key == "token" {
            let token = base64_decode(value).unwrap_or_default();
            line(
                w,
                0,
                &format!("{key}:\t{}", String::from_utf8_lossy(&token)),
            );
        } else {
            line(w, 0, &format!("{key}:\t{} bytes", decoded_len(value)));
        }
    }
}

fn base64_decode(value: &Value) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(value.as_str()?)
        .ok()
}

fn decoded_len(value: &Value) -> usize {
    base64_decode(value).map(|b| b.len()).unwrap_or(0)
}

pub(super) fn generic(o: &Value, w: &mut String) {
    let meta = &o["metadata"];
    metadata(o, w, !meta["namespace"].is_null());
    map_lines(w, 0, "Labels", &meta["labels"], "=");
    map_lines(
        w,
        0,
        "Annotations",
        &annotations_without_last_applied(meta),
        ": ",
    );
    line(
        w,
        0,
        &format!("API Version:\t{}", str_of(&o["apiVersion"], "")),
    );
    line(w, 0, &format!("Kind:\t{}", str_of(&o["kind"], "")));
    for section in ["spec", "status", "data"] {
        if let Ok(yaml) = serde_yaml_ng::to_string(&o[section]) {
            if o[section].is_null() {
                continue;
            }
            line(
                w,
                0,
                &format!("{}{}:", section[..1].to_uppercase(), &section[1..]),
            );
            for l in yaml.lines() {
                line(w, 1, l);
            }
        }
    }
}
