//! `kubectl exec` and `kubectl logs` against fake apiserver endpoints: exec speaks
//! `v5.channel.k8s.io` (output channels reach stdout/stderr, the status channel's exit code becomes
//! ours); logs copies the `log` subresource's body byte for byte.

use clap::Parser;
use futures::SinkExt;
use kubectl::session::{Io, Session};
use kubectl::Options;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// Serves one exec session: checks the request, then sends `frames` and closes.
#[allow(clippy::result_large_err)] // the handshake callback's error type is tungstenite's
async fn fake_exec_server(
    frames: Vec<Vec<u8>>,
) -> anyhow::Result<(String, tokio::task::JoinHandle<anyhow::Result<String>>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await?;
        let mut seen = String::new();
        let callback = |req: &Request, mut resp: Response| {
            seen = req.uri().to_string();
            let offered = req
                .headers()
                .get("Sec-WebSocket-Protocol")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            if offered.contains("v5.channel.k8s.io") {
                resp.headers_mut().insert(
                    "Sec-WebSocket-Protocol",
                    HeaderValue::from_static("v5.channel.k8s.io"),
                );
            }
            Ok(resp)
        };
        let mut ws = tokio_tungstenite::accept_hdr_async(stream, callback).await?;
        for frame in frames {
            ws.send(Message::Binary(frame.into())).await?;
        }
        ws.close(None).await?;
        Ok(seen)
    });
    Ok((url, task))
}

fn frame(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut out = vec![channel];
    out.extend_from_slice(data);
    out
}

async fn exec(url: &str, args: &[&str]) -> anyhow::Result<(kubectl::Result<()>, String, String)> {
    let mut argv = vec!["kubectl"];
    argv.extend_from_slice(args);
    let options = Options::try_parse_from(argv)?;
    let config = kube::Config::new(url.parse()?);
    let client = kube::Client::try_from(config.clone())?;
    let (io, out, err) = Io::buffers();
    let mut session = Session::with_client(options.global.clone(), io, client, config);
    let result = kubectl::execute(&mut session, options.command).await;
    Ok((result, out.contents(), err.contents()))
}

#[tokio::test]
async fn remote_output_and_exit_code_come_back() -> anyhow::Result<()> {
    let status = br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: exit status 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
    let (url, server) = fake_exec_server(vec![
        frame(1, b"hello\n"),
        frame(2, b"oops\n"),
        frame(3, status),
    ])
    .await?;
    let (result, out, err) = exec(
        &url,
        &["exec", "web", "-c", "httpd", "--", "sh", "-c", "exit 3"],
    )
    .await?;
    let seen = server.await??;
    assert!(
        seen.starts_with("/api/v1/namespaces/default/pods/web/exec?"),
        "{seen}"
    );
    assert!(
        seen.contains("command=sh&command=-c&command=exit+3") || seen.contains("command=exit%203"),
        "{seen}"
    );
    assert!(seen.contains("container=httpd"), "{seen}");
    assert_eq!(out, "hello\n");
    assert_eq!(err, "oops\n");
    let err = result
        .err()
        .ok_or_else(|| anyhow::anyhow!("expected a failure"))?;
    assert_eq!(err.exit_code(), 3);
    assert_eq!(err.report(), "command terminated with exit code 3");
    Ok(())
}

#[tokio::test]
async fn a_successful_command_exits_zero() -> anyhow::Result<()> {
    let (url, server) = fake_exec_server(vec![
        frame(1, b"ok\n"),
        frame(3, br#"{"metadata":{},"status":"Success"}"#),
    ])
    .await?;
    let (result, out, _) = exec(&url, &["exec", "web", "-c", "httpd", "--", "true"]).await?;
    server.await??;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(out, "ok\n");
    Ok(())
}

/// Answers one plain HTTP request with `body`, returning the request line it saw.
async fn fake_log_server(
    body: &'static str,
) -> anyhow::Result<(String, tokio::task::JoinHandle<anyhow::Result<String>>)> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await?;
        let mut reader = BufReader::new(stream);
        let mut request_line = String::new();
        reader.read_line(&mut request_line).await?;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).await?;
            if header == "\r\n" || header.is_empty() {
                break;
            }
        }
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        reader.get_mut().write_all(response.as_bytes()).await?;
        reader.get_mut().shutdown().await?;
        Ok(request_line)
    });
    Ok((url, task))
}

#[tokio::test]
async fn logs_pass_the_flags_and_copy_bytes_exactly() -> anyhow::Result<()> {
    let (url, server) = fake_log_server("line one\nno newline at the end").await?;
    let (result, out, _) = exec(
        &url,
        &[
            "logs",
            "web",
            "-c",
            "httpd",
            "--tail=2",
            "--timestamps",
            "--since=5m",
            "--previous",
        ],
    )
    .await?;
    let request = server.await??;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(out, "line one\nno newline at the end");
    assert!(
        request.starts_with("GET /api/v1/namespaces/default/pods/web/log?"),
        "{request}"
    );
    for param in [
        "container=httpd",
        "tailLines=2",
        "timestamps=true",
        "sinceSeconds=300",
        "previous=true",
    ] {
        assert!(request.contains(param), "{param} missing from {request}");
    }
    Ok(())
}
