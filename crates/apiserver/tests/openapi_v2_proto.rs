//! `/openapi/v2` in gnostic's protobuf form, as upstream kubectl and client-go ask for it
//! (`Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`): the Content-Type,
//! JSON for other Accept values and 406 for unservable ones, every definition and every path
//! item (each verb's operation with its body, path and query parameters and responses) decoded
//! from the protobuf by a small independent wire decoder equal to the JSON document's, and the
//! upstream `kubectl` reading it (an unknown kind gives upstream's "resource mapping not found"
//! error, `--validate=true` reports unknown fields and accepts a valid manifest). The kubectl
//! parts are skipped with a note when kubectl is not installed.

use std::path::Path;

use http::Request;
use kube_apiserver::testing::TestServer;
use serde_json::{json, Map, Value};

const KUBECTL: &str = "/usr/bin/kubectl";
const PROTO_ACCEPT: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

async fn get(client: &kube::Client, path: &str, accept: Option<&str>) -> anyhow::Result<Answer> {
    let mut request = Request::get(path);
    if let Some(accept) = accept {
        request = request.header("Accept", accept);
    }
    let response = client
        .send(request.body(Vec::new())?.map(kube::client::Body::from))
        .await?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = http_body_util::BodyExt::collect(response.into_body())
        .await?
        .to_bytes()
        .to_vec();
    Ok(Answer {
        status,
        content_type,
        body,
    })
}

/// One decoded protobuf field: a varint or a length-delimited payload.
#[derive(Debug, Clone)]
enum Wire {
    Varint(u64),
    Bytes(Vec<u8>),
}

fn varint(buf: &[u8], pos: &mut usize) -> anyhow::Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf
            .get(*pos)
            .ok_or_else(|| anyhow::anyhow!("truncated varint"))?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    anyhow::bail!("varint too long")
}

/// Every field of a message, in order (wire types 0, 1 and 2; others are an error).
fn fields(buf: &[u8]) -> anyhow::Result<Vec<(u64, Wire)>> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let wire = match key & 7 {
            0 => Wire::Varint(varint(buf, &mut pos)?),
            1 => {
                let end = pos + 8;
                anyhow::ensure!(end <= buf.len(), "truncated fixed64");
                let bytes = buf[pos..end].to_vec();
                pos = end;
                Wire::Bytes(bytes)
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?)?;
                let end = pos + len;
                anyhow::ensure!(end <= buf.len(), "truncated field");
                let bytes = buf[pos..end].to_vec();
                pos = end;
                Wire::Bytes(bytes)
            }
            other => anyhow::bail!("unexpected wire type {other}"),
        };
        out.push((key >> 3, wire));
    }
    Ok(out)
}

fn text(w: &Wire) -> anyhow::Result<String> {
    match w {
        Wire::Bytes(b) => Ok(String::from_utf8(b.clone())?),
        Wire::Varint(_) => anyhow::bail!("expected a string"),
    }
}

fn bytes(w: &Wire) -> anyhow::Result<&[u8]> {
    match w {
        Wire::Bytes(b) => Ok(b),
        Wire::Varint(_) => anyhow::bail!("expected a message"),
    }
}

/// `NamedX{name = 1, value = 2}`.
fn named(buf: &[u8]) -> anyhow::Result<(String, Vec<u8>)> {
    let mut name = String::new();
    let mut value = Vec::new();
    for (field, w) in fields(buf)? {
        match field {
            1 => name = text(&w)?,
            2 => value = bytes(&w)?.to_vec(),
            _ => {}
        }
    }
    Ok((name, value))
}

/// `NamedAny{name, Any{yaml = 2}}` as a JSON member (the YAML our server writes is JSON).
fn vendor_extension(buf: &[u8]) -> anyhow::Result<(String, Value)> {
    let (name, any) = named(buf)?;
    let yaml = fields(&any)?
        .iter()
        .find(|(f, _)| *f == 2)
        .map(|(_, w)| text(w))
        .transpose()?
        .unwrap_or_default();
    Ok((name, serde_json::from_str(&yaml)?))
}

/// A gnostic `Schema` back into the JSON schema it was written from (the members our server
/// uses: `$ref`, format, type, items, properties, additionalProperties, x- extensions).
fn schema(buf: &[u8]) -> anyhow::Result<Value> {
    let mut out = Map::new();
    for (field, w) in fields(buf)? {
        match field {
            1 => {
                out.insert("$ref".into(), json!(text(&w)?));
            }
            2 => {
                out.insert("format".into(), json!(text(&w)?));
            }
            4 => {
                out.insert("description".into(), json!(text(&w)?));
            }
            19 => {
                let required = out.entry("required").or_insert_with(|| json!([]));
                if let Some(list) = required.as_array_mut() {
                    list.push(json!(text(&w)?));
                }
            }
            16 => {
                out.insert("uniqueItems".into(), json!(matches!(w, Wire::Varint(1))));
            }
            21 => {
                for (f, inner) in fields(bytes(&w)?)? {
                    let v = match (f, inner) {
                        (1, Wire::Bytes(b)) => schema(&b)?,
                        (2, Wire::Varint(b)) => json!(b == 1),
                        other => anyhow::bail!("bad additionalProperties {other:?}"),
                    };
                    out.insert("additionalProperties".into(), v);
                }
            }
            22 => {
                let types: Vec<String> = fields(bytes(&w)?)?
                    .iter()
                    .map(|(_, t)| text(t))
                    .collect::<anyhow::Result<_>>()?;
                anyhow::ensure!(types.len() == 1, "type {types:?}");
                out.insert("type".into(), json!(types[0]));
            }
            23 => {
                let items = fields(bytes(&w)?)?;
                anyhow::ensure!(items.len() == 1, "one items schema");
                out.insert("items".into(), schema(bytes(&items[0].1)?)?);
            }
            25 => {
                let mut props = Map::new();
                for (_, p) in fields(bytes(&w)?)? {
                    let (name, value) = named(bytes(&p)?)?;
                    props.insert(name, schema(&value)?);
                }
                out.insert("properties".into(), Value::Object(props));
            }
            31 => {
                let (name, value) = vendor_extension(bytes(&w)?)?;
                out.insert(name, value);
            }
            other => anyhow::bail!("unexpected Schema field {other}"),
        }
    }
    Ok(Value::Object(out))
}

/// A repeated string field's values, appended to the array member `key`.
fn push_text(out: &mut Map<String, Value>, key: &str, w: &Wire) -> anyhow::Result<()> {
    let list = out.entry(key).or_insert_with(|| json!([]));
    if let Some(list) = list.as_array_mut() {
        list.push(json!(text(w)?));
    }
    Ok(())
}

/// A non-body parameter (`query`: the query/formData field layout; otherwise the header/path
/// layout, which lacks `allowEmptyValue` and so numbers every later field one lower).
fn non_body_parameter(buf: &[u8], query: bool) -> anyhow::Result<Value> {
    let shift = u64::from(!query);
    let mut p = Map::new();
    for (f, v) in fields(buf)? {
        match (f, v) {
            (1, Wire::Varint(b)) => p.insert("required".into(), json!(b == 1)),
            (2, v) => p.insert("in".into(), json!(text(&v)?)),
            (4, v) => p.insert("name".into(), json!(text(&v)?)),
            (f, v) if f == 6 - shift => p.insert("type".into(), json!(text(&v)?)),
            (f, Wire::Varint(b)) if f == 20 - shift => {
                p.insert("uniqueItems".into(), json!(b == 1))
            }
            other => anyhow::bail!("unexpected non-body parameter field {other:?}"),
        };
    }
    Ok(Value::Object(p))
}

/// `ParametersItem` -> `Parameter` -> a body parameter (1) or a non-body one (2: query 3,
/// path 4).
fn parameter(buf: &[u8]) -> anyhow::Result<Value> {
    let item = fields(buf)?;
    anyhow::ensure!(item.len() == 1 && item[0].0 == 1, "an inline parameter");
    let parameter = fields(bytes(&item[0].1)?)?;
    anyhow::ensure!(parameter.len() == 1, "one parameter kind");
    match parameter[0].0 {
        1 => {
            let mut p = Map::new();
            for (f, v) in fields(bytes(&parameter[0].1)?)? {
                match (f, v) {
                    (2, v) => p.insert("name".into(), json!(text(&v)?)),
                    (3, v) => p.insert("in".into(), json!(text(&v)?)),
                    (4, Wire::Varint(b)) => p.insert("required".into(), json!(b == 1)),
                    (5, v) => p.insert("schema".into(), schema(bytes(&v)?)?),
                    other => anyhow::bail!("unexpected body parameter field {other:?}"),
                };
            }
            Ok(Value::Object(p))
        }
        2 => {
            let non_body = fields(bytes(&parameter[0].1)?)?;
            anyhow::ensure!(non_body.len() == 1, "one non-body parameter kind");
            match non_body[0].0 {
                3 => non_body_parameter(bytes(&non_body[0].1)?, true),
                4 => non_body_parameter(bytes(&non_body[0].1)?, false),
                other => anyhow::bail!("unexpected non-body parameter kind {other}"),
            }
        }
        other => anyhow::bail!("unexpected parameter kind {other}"),
    }
}

/// `Operation` back into JSON (tags, operationId, media types, parameters, responses with
/// their schemas, schemes, extensions).
fn operation(buf: &[u8]) -> anyhow::Result<Value> {
    let mut out = Map::new();
    let mut parameters = Vec::new();
    for (field, w) in fields(buf)? {
        match field {
            1 => push_text(&mut out, "tags", &w)?,
            5 => {
                out.insert("operationId".into(), json!(text(&w)?));
            }
            6 => push_text(&mut out, "produces", &w)?,
            7 => push_text(&mut out, "consumes", &w)?,
            8 => parameters.push(parameter(bytes(&w)?)?),
            9 => {
                let mut responses = Map::new();
                for (_, r) in fields(bytes(&w)?)? {
                    let (code, value) = named(bytes(&r)?)?;
                    let response = fields(&value)?;
                    anyhow::ensure!(response[0].0 == 1, "an inline response");
                    let mut decoded = Map::new();
                    for (f, v) in fields(bytes(&response[0].1)?)? {
                        match f {
                            1 => {
                                decoded.insert("description".into(), json!(text(&v)?));
                            }
                            2 => {
                                let item = fields(bytes(&v)?)?;
                                anyhow::ensure!(item.len() == 1 && item[0].0 == 1, "a schema");
                                decoded.insert("schema".into(), schema(bytes(&item[0].1)?)?);
                            }
                            other => anyhow::bail!("unexpected Response field {other}"),
                        }
                    }
                    responses.insert(code, Value::Object(decoded));
                }
                out.insert("responses".into(), Value::Object(responses));
            }
            10 => push_text(&mut out, "schemes", &w)?,
            13 => {
                let (name, value) = vendor_extension(bytes(&w)?)?;
                out.insert(name, value);
            }
            other => anyhow::bail!("unexpected Operation field {other}"),
        }
    }
    if !parameters.is_empty() {
        out.insert("parameters".into(), Value::Array(parameters));
    }
    Ok(Value::Object(out))
}

/// The whole `Document` back into the JSON form the server also serves.
fn document(buf: &[u8]) -> anyhow::Result<Value> {
    let mut out = Map::new();
    for (field, w) in fields(buf)? {
        match field {
            1 => {
                out.insert("swagger".into(), json!(text(&w)?));
            }
            2 => {
                let mut info = Map::new();
                for (f, v) in fields(bytes(&w)?)? {
                    let key = match f {
                        1 => "title",
                        2 => "version",
                        other => anyhow::bail!("unexpected Info field {other}"),
                    };
                    info.insert(key.into(), json!(text(&v)?));
                }
                out.insert("info".into(), Value::Object(info));
            }
            8 => {
                let mut paths = Map::new();
                for (f, p) in fields(bytes(&w)?)? {
                    anyhow::ensure!(f == 2, "a named path item");
                    let (name, item) = named(bytes(&p)?)?;
                    let mut verbs = Map::new();
                    let mut parameters = Vec::new();
                    for (field, value) in fields(&item)? {
                        let verb = match field {
                            2 => "get",
                            3 => "put",
                            4 => "post",
                            5 => "delete",
                            8 => "patch",
                            9 => {
                                parameters.push(parameter(bytes(&value)?)?);
                                continue;
                            }
                            other => anyhow::bail!("unexpected PathItem field {other}"),
                        };
                        verbs.insert(verb.into(), operation(bytes(&value)?)?);
                    }
                    if !parameters.is_empty() {
                        verbs.insert("parameters".into(), Value::Array(parameters));
                    }
                    paths.insert(name, Value::Object(verbs));
                }
                out.insert("paths".into(), Value::Object(paths));
            }
            9 => {
                let mut defs = Map::new();
                for (f, d) in fields(bytes(&w)?)? {
                    anyhow::ensure!(f == 1, "a named schema");
                    let (name, value) = named(bytes(&d)?)?;
                    defs.insert(name, schema(&value)?);
                }
                out.insert("definitions".into(), Value::Object(defs));
            }
            other => anyhow::bail!("unexpected Document field {other}"),
        }
    }
    Ok(Value::Object(out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_document_decodes_to_the_json_document() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client().await?;

    let json_answer = get(&client, "/openapi/v2", None).await?;
    assert_eq!(json_answer.status, 200);
    assert_eq!(json_answer.content_type, "application/json");
    let json_doc: Value = serde_json::from_slice(&json_answer.body)?;
    let explicit = get(&client, "/openapi/v2", Some("application/json")).await?;
    assert_eq!(explicit.content_type, "application/json");
    assert_eq!(explicit.body, json_answer.body);

    for accept in [
        PROTO_ACCEPT,
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
        "application/json;q=0.5, application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
    ] {
        let proto = get(&client, "/openapi/v2", Some(accept)).await?;
        assert_eq!(proto.status, 200, "{accept}");
        assert_eq!(
            proto.content_type, "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
            "{accept}"
        );
        assert!(
            serde_json::from_slice::<Value>(&proto.body).is_err(),
            "{accept}"
        );
        let decoded = document(&proto.body)?;
        assert_eq!(decoded["swagger"], "2.0");
        assert_eq!(decoded["info"], json_doc["info"]);
        assert_eq!(decoded["paths"], json_doc["paths"]);
        let (ours, theirs) = (&decoded["definitions"], &json_doc["definitions"]);
        assert_eq!(
            ours.as_object().map(Map::len),
            theirs.as_object().map(Map::len)
        );
        for (name, def) in theirs.as_object().into_iter().flatten() {
            assert_eq!(&ours[name], def, "definition {name}");
        }
    }
    let deployment = &json_doc["definitions"]["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        deployment["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
    );

    let refused = get(&client, "/openapi/v2", Some("text/html")).await?;
    assert_eq!(refused.status, 406);
    let wildcard = get(&client, "/openapi/v2", Some("*/*")).await?;
    assert_eq!(wildcard.content_type, "application/json");
    Ok(())
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn kubectl(server: &TestServer, args: &[&str]) -> anyhow::Result<Out> {
    let output = tokio::process::Command::new(KUBECTL)
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(args)
        .current_dir(server.dir())
        .stdin(std::process::Stdio::null())
        .output()
        .await?;
    Ok(Out {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

const WIDGET: &str = "apiVersion: example.com/v1
kind: Widget
metadata:
  name: w1
";

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: c
        image: nginx
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_kubectl_reads_the_protobuf_document() -> anyhow::Result<()> {
    if !Path::new(KUBECTL).exists() {
        eprintln!("note: {KUBECTL} not installed; skipping");
        return Ok(());
    }
    let server = TestServer::start().await?;
    let dir = server.dir();
    std::fs::write(dir.join("widget.yaml"), WIDGET)?;
    std::fs::write(dir.join("deploy.yaml"), DEPLOYMENT)?;
    let bad = DEPLOYMENT
        .replace("  replicas: 1\n", "  replicas: 1\n  bogusField: 3\n")
        .replace(
            "        image: nginx\n",
            "        image: nginx\n        notAField: x\n",
        );
    std::fs::write(dir.join("bad-deploy.yaml"), bad)?;

    // kubectl downloads the protobuf document (verbose log: the request and its 200) and,
    // decoding it, reports the unknown kind as upstream does.
    let widget = kubectl(&server, &["create", "-f", "widget.yaml", "-v=6"]).await?;
    assert!(!widget.ok, "{}", widget.stdout);
    assert!(
        widget
            .stderr
            .lines()
            .any(|l| l.contains("/openapi/v2") && l.contains("200 OK")),
        "{}",
        widget.stderr
    );
    assert!(
        !widget.stderr.contains("failed to download openapi"),
        "{}",
        widget.stderr
    );
    assert!(
        widget.stderr.contains(
            "error: resource mapping not found for name: \"w1\" namespace: \"\" from \"widget.yaml\": \
             no matches for kind \"Widget\" in version \"example.com/v1\"\nensure CRDs are installed first"
        ),
        "{}",
        widget.stderr
    );

    // With the document read, --validate=true leaves validation to the server (the PATCH
    // operations declare fieldValidation): unknown fields come back as a strict decoding error.
    for verb in ["apply", "create"] {
        let out = kubectl(&server, &[verb, "--validate=true", "-f", "bad-deploy.yaml"]).await?;
        assert!(!out.ok, "{verb}: {}", out.stdout);
        assert!(
            out.stderr.contains(
                "Error from server (BadRequest): error when creating \"bad-deploy.yaml\": \
                 Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding \
                 error: unknown field \"spec.bogusField\", unknown field \
                 \"spec.template.spec.containers[0].notAField\""
            ),
            "{verb}: {}",
            out.stderr
        );
    }

    let good = kubectl(&server, &["create", "--validate=true", "-f", "deploy.yaml"]).await?;
    assert!(good.ok, "{}", good.stderr);
    assert_eq!(good.stdout.trim(), "deployment.apps/web created");
    Ok(())
}
