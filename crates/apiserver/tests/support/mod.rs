//! Helpers the apiserver integration tests share: raw API calls through a kube client and
//! the status code and message of their results.
#![allow(dead_code)]

use serde_json::Value;

pub mod etcd;

/// Sends `body` (JSON; a merge patch for PATCH) to `path` and returns the decoded answer.
pub async fn call(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value, kube::Error> {
    let body = body
        .map(|b| serde_json::to_vec(&b).expect("json"))
        .unwrap_or_default();
    let content_type = if method == "PATCH" {
        "application/merge-patch+json"
    } else {
        "application/json"
    };
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(body)
        .expect("request");
    let text = client.request_text(request).await?;
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The HTTP status of a call's result (200 for success, 0 for a transport error).
pub fn code(r: &Result<Value, kube::Error>) -> u16 {
    match r {
        Ok(_) => 200,
        Err(kube::Error::Api(s)) => s.code,
        Err(_) => 0,
    }
}

/// The Status message of a failed call.
pub fn message(r: &Result<Value, kube::Error>) -> String {
    match r {
        Err(kube::Error::Api(s)) => s.message.clone(),
        _ => String::new(),
    }
}
