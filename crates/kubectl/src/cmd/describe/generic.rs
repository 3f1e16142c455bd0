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
