//! containerd's Content service: writing blobs (Stat, Write..., Commit on one stream), reading
//! them back and labelling them.

use std::collections::HashMap;
use std::io::SeekFrom;
use std::path::Path;

use containerd_client::services::v1::{
    Info, InfoRequest, ReadContentRequest, UpdateRequest, WriteAction, WriteContentRequest,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_stream::wrappers::ReceiverStream;

use super::archive::{BlobSource, Span};
use super::client::Client;
use crate::runtime::RuntimeError;

/// Size of one Write message.
const CHUNK: usize = 1 << 20;

/// Where a blob to be written comes from.
pub enum Source<'a> {
    /// A span of a file.
    File(&'a Path, Span),
    /// Bytes in memory.
    Memory(&'a [u8]),
}

impl<'a> Source<'a> {
    /// The source for an archive blob.
    pub fn from_blob(archive_path: &'a Path, blob: &'a BlobSource) -> Self {
        match blob {
            BlobSource::Span(span) => Source::File(archive_path, *span),
            BlobSource::Memory(data) => Source::Memory(data),
        }
    }
}

/// Content info of `digest`, `None` if absent.
pub async fn info(client: &Client, digest: &str) -> Result<Option<Info>, RuntimeError> {
    let request = client.request(InfoRequest {
        digest: digest.to_string(),
    });
    match client.content().info(request).await {
        Ok(response) => Ok(response.into_inner().info),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
        Err(source) => Err(RuntimeError::Rpc {
            step: "content info",
            source,
        }),
    }
}

/// Writes a blob unless it is already present. `labels` are set on commit.
pub async fn write_blob(
    client: &Client,
    lease: Option<&str>,
    digest: &str,
    size: i64,
    source: Source<'_>,
    labels: HashMap<String, String>,
) -> Result<(), RuntimeError> {
    if info(client, digest).await?.is_some() {
        return Ok(());
    }
    match write_stream(client, lease, digest, size, source, labels).await {
        Err(RuntimeError::Rpc { source, .. }) if source.code() == tonic::Code::AlreadyExists => {
            Ok(())
        }
        other => other,
    }
}

async fn write_stream(
    client: &Client,
    lease: Option<&str>,
    digest: &str,
    size: i64,
    source: Source<'_>,
    labels: HashMap<String, String>,
) -> Result<(), RuntimeError> {
    let reference = format!("kubelet-import-{digest}");
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let send = |message| {
        let tx = tx.clone();
        async move {
            tx.send(message).await.map_err(|_| RuntimeError::Rpc {
                step: "content write",
                source: tonic::Status::aborted("write stream closed"),
            })
        }
    };
    send(WriteContentRequest {
        action: WriteAction::Stat as i32,
        r#ref: reference.clone(),
        total: size,
        expected: digest.to_string(),
        ..Default::default()
    })
    .await?;
    let mut responses = client
        .content()
        .write(client.leased_request(ReceiverStream::new(rx), lease))
        .await
        .map_err(RuntimeError::rpc("content write"))?
        .into_inner();
    // Resume where an interrupted earlier write of the same ref stopped.
    let mut offset = next(&mut responses).await?.offset;
    match source {
        Source::Memory(data) => {
            let start = usize::try_from(offset).unwrap_or(0).min(data.len());
            for chunk in data[start..].chunks(CHUNK) {
                send(WriteContentRequest {
                    action: WriteAction::Write as i32,
                    r#ref: reference.clone(),
                    offset,
                    data: chunk.to_vec(),
                    ..Default::default()
                })
                .await?;
                next(&mut responses).await?;
                offset += chunk.len() as i64;
            }
        }
        Source::File(path, span) => {
            let io_err = |source| RuntimeError::Io {
                step: "reading blob from image archive",
                path: path.to_path_buf(),
                source,
            };
            let mut file = tokio::fs::File::open(path).await.map_err(io_err)?;
            file.seek(SeekFrom::Start(span.offset + offset as u64))
                .await
                .map_err(io_err)?;
            let mut remaining = span.size.saturating_sub(offset as u64);
            while remaining > 0 {
                let len = remaining.min(CHUNK as u64) as usize;
                let mut chunk = vec![0; len];
                file.read_exact(&mut chunk).await.map_err(io_err)?;
                send(WriteContentRequest {
                    action: WriteAction::Write as i32,
                    r#ref: reference.clone(),
                    offset,
                    data: chunk,
                    ..Default::default()
                })
                .await?;
                next(&mut responses).await?;
                offset += len as i64;
                remaining -= len as u64;
            }
        }
    }
    send(WriteContentRequest {
        action: WriteAction::Commit as i32,
        r#ref: reference,
        total: size,
        offset,
        expected: digest.to_string(),
        labels,
        ..Default::default()
    })
    .await?;
    let committed = next(&mut responses).await?;
    if committed.digest != digest {
        return Err(RuntimeError::Rpc {
            step: "content commit",
            source: tonic::Status::data_loss(format!(
                "committed {} but expected {digest}",
                committed.digest
            )),
        });
    }
    Ok(())
}

/// The next reply on a Write stream.
async fn next(
    responses: &mut tonic::Streaming<containerd_client::services::v1::WriteContentResponse>,
) -> Result<containerd_client::services::v1::WriteContentResponse, RuntimeError> {
    responses
        .message()
        .await
        .map_err(RuntimeError::rpc("content write"))?
        .ok_or_else(|| RuntimeError::Rpc {
            step: "content write",
            source: tonic::Status::aborted("stream ended early"),
        })
}

/// Reads a whole blob.
pub async fn read_blob(client: &Client, digest: &str) -> Result<Vec<u8>, RuntimeError> {
    let request = client.request(ReadContentRequest {
        digest: digest.to_string(),
        offset: 0,
        size: 0,
    });
    let mut stream = client
        .content()
        .read(request)
        .await
        .map_err(RuntimeError::rpc("content read"))?
        .into_inner();
    let mut data = Vec::new();
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(RuntimeError::rpc("content read"))?
    {
        data.extend_from_slice(&chunk.data);
    }
    Ok(data)
}

/// Sets labels on a blob (other labels are kept).
pub async fn set_labels(
    client: &Client,
    digest: &str,
    labels: HashMap<String, String>,
) -> Result<(), RuntimeError> {
    if labels.is_empty() {
        return Ok(());
    }
    let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
    let request = client.request(UpdateRequest {
        info: Some(Info {
            digest: digest.to_string(),
            labels,
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask { paths }),
    });
    client
        .content()
        .update(request)
        .await
        .map_err(RuntimeError::rpc("content update labels"))?;
    Ok(())
}
