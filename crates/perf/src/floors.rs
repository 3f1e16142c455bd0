//! Physical floors measured in the same run: raw etcd put and range (etcd-client, the same
//! payload size, 64 concurrent clients), raw etcd create transactions through one connection
//! with a watch (what an apiserver create costs etcd), raw SQLite inserts (the embedded
//! storage's floor), a raw HTTP/1.1 round trip on loopback,
//! raw `nft -f` and raw `ctr run` (the last two live with their scenarios).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::report::Latencies;

/// Why a floor could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum FloorError {
    /// etcd failed.
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    /// Socket I/O failed.
    #[error("loopback HTTP: {0}")]
    Io(#[from] std::io::Error),
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A blocking floor task panicked or was cancelled.
    #[error("floor task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The embedded storage's write floor: `ops` rows of `payload` bytes inserted into a fresh
/// SQLite database in `dir`, one transaction each, from one thread (SQLite serialises
/// writers), with the pragmas the apiserver's SQLite backend uses (WAL, `synchronous =
/// NORMAL`). Returns inserts per second.
pub async fn sqlite_insert(
    dir: &std::path::Path,
    payload: usize,
    ops: usize,
) -> Result<f64, FloorError> {
    let path = dir.join("kube-perf-floor.db");
    tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open(&path)?;
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        conn.execute_batch(
            "PRAGMA synchronous = NORMAL;
             CREATE TABLE floor (id INTEGER PRIMARY KEY, name BLOB NOT NULL, value BLOB NOT NULL);",
        )?;
        let value = vec![b'x'; payload];
        let started = Instant::now();
        for i in 0..ops {
            let tx = conn.unchecked_transaction()?;
            tx.prepare_cached("INSERT INTO floor (name, value) VALUES (?1, ?2)")?
                .execute(rusqlite::params![format!("/floor/{i}").as_bytes(), &value])?;
            tx.commit()?;
        }
        let per_sec = ops as f64 / started.elapsed().as_secs_f64();
        drop(conn);
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.clone().into_os_string();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
        Ok(per_sec)
    })
    .await?
}

/// etcd floor figures.
#[derive(Debug, Clone)]
pub struct EtcdFloor {
    /// Puts per second with `clients` concurrent clients.
    pub put_per_sec: f64,
    /// Single-key ranges per second with `clients` concurrent clients.
    pub range_per_sec: f64,
    /// Latency of one put with no other load.
    pub put_latency: Latencies,
    /// Latency of one single-key range with no other load.
    pub get_latency: Latencies,
    /// The same for a serializable range (served by the member without a read index).
    pub serializable_get_latency: Latencies,
    /// Payload size (bytes).
    pub payload: usize,
}

/// Concurrent clients of the etcd floor (as the issue asks).
pub const ETCD_CLIENTS: usize = 64;

/// Measures raw etcd put/range throughput and latency with `payload`-byte values: `ops` total
/// operations over [`ETCD_CLIENTS`] clients (one connection each), then 200 sequential ones.
pub async fn etcd(endpoint: &str, payload: usize, ops: usize) -> Result<EtcdFloor, FloorError> {
    let value = vec![b'x'; payload];
    let mut clients = Vec::new();
    for _ in 0..ETCD_CLIENTS {
        clients.push(etcd_client::Client::connect([endpoint], None).await?);
    }
    let per = ops.div_ceil(ETCD_CLIENTS).max(1);
    let run = |put: bool| {
        let clients = clients.clone();
        let value = value.clone();
        async move {
            let started = Instant::now();
            let mut tasks = Vec::new();
            for (c, mut client) in clients.into_iter().enumerate() {
                let value = value.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..per {
                        let key = format!("/kube-perf-floor/{c}/{i}");
                        if put {
                            client.put(key, value.clone(), None).await?;
                        } else {
                            client.get(key, None).await?;
                        }
                    }
                    Ok::<_, etcd_client::Error>(())
                }));
            }
            for t in tasks {
                match t.await {
                    Ok(r) => r?,
                    Err(e) => tracing::warn!(error = %e, "etcd floor task failed"),
                }
            }
            Ok::<_, etcd_client::Error>(
                (per * ETCD_CLIENTS) as f64 / started.elapsed().as_secs_f64(),
            )
        }
    };
    let put_per_sec = run(true).await?;
    let range_per_sec = run(false).await?;
    let mut put_latency = Latencies::new();
    let mut get_latency = Latencies::new();
    let mut serializable_get_latency = Latencies::new();
    let serializable = etcd_client::GetOptions::new().with_serializable();
    if let Some(client) = clients.first_mut() {
        for i in 0..200 {
            let key = format!("/kube-perf-floor/seq/{i}");
            let t = Instant::now();
            client.put(key.clone(), value.clone(), None).await?;
            put_latency.push(t.elapsed());
            let t = Instant::now();
            client.get(key.clone(), None).await?;
            get_latency.push(t.elapsed());
            let t = Instant::now();
            client.get(key, Some(serializable.clone())).await?;
            serializable_get_latency.push(t.elapsed());
        }
        let mut prefixes: Vec<String> = (0..ETCD_CLIENTS)
            .map(|c| format!("/kube-perf-floor/{c}/"))
            .collect();
        prefixes.push("/kube-perf-floor/seq/".to_string());
        delete_gently(client, &prefixes).await?;
    }
    Ok(EtcdFloor {
        put_per_sec,
        range_per_sec,
        put_latency,
        get_latency,
        serializable_get_latency,
        payload,
    })
}

/// What etcd must do for one apiserver create, as fast as etcd does it: `ops` create
/// transactions (put if the key does not exist) of `payload`-byte values spread over
/// `connections` connections with [`ETCD_CLIENTS`] in flight, while one watch on their prefix
/// (with previous values, as a watch cache asks) receives every event. Returns creates per second.
pub async fn etcd_create_txn(
    endpoint: &str,
    payload: usize,
    ops: usize,
    connections: usize,
) -> Result<f64, FloorError> {
    const PREFIX: &str = "/kube-perf-floor-txn/";
    let mut client = etcd_client::Client::connect([endpoint], None).await?;
    let mut kvs = vec![client.kv_client()];
    for _ in 1..connections {
        kvs.push(
            etcd_client::Client::connect([endpoint], None)
                .await?
                .kv_client(),
        );
    }
    let options = etcd_client::WatchOptions::new()
        .with_prefix()
        .with_prev_key();
    let mut events = client.watch(PREFIX, Some(options)).await?;
    let per = ops.div_ceil(ETCD_CLIENTS).max(1);
    let total = per * ETCD_CLIENTS;
    let watcher = tokio::spawn(async move {
        let mut seen = 0;
        while seen < total {
            match events.message().await {
                Ok(Some(response)) => seen += response.events().len(),
                _ => break,
            }
        }
    });
    let value = vec![b'x'; payload];
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..ETCD_CLIENTS {
        let mut kv = kvs[c % kvs.len()].clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let key = format!("{PREFIX}{c}/{i}");
                let txn = etcd_client::Txn::new()
                    .when([etcd_client::Compare::create_revision(
                        key.clone(),
                        etcd_client::CompareOp::Equal,
                        0,
                    )])
                    .and_then([etcd_client::TxnOp::put(key, value.clone(), None)]);
                kv.txn(txn).await?;
            }
            Ok::<_, etcd_client::Error>(())
        }));
    }
    for t in tasks {
        match t.await {
            Ok(r) => r?,
            Err(e) => tracing::warn!(error = %e, "etcd txn floor task failed"),
        }
    }
    let per_sec = total as f64 / started.elapsed().as_secs_f64();
    if tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .is_err()
    {
        tracing::warn!("etcd txn floor: the watch did not see every event");
    }
    let prefixes: Vec<String> = (0..ETCD_CLIENTS).map(|c| format!("{PREFIX}{c}/")).collect();
    delete_gently(&mut client, &prefixes).await?;
    Ok(per_sec)
}

/// Deletes a floor's keys one small prefix at a time, paced, so that no backend batch holds
/// thousands of changes. etcd 3.4 keeps its read buffer at the largest size a batch ever
/// needed and copies the whole buffer at the start of every transaction: one delete of 10,000
/// floor keys left every later create, update and delete (all transactions) at a sixth of
/// their speed for the life of the etcd process, the apiserver's included.
async fn delete_gently(
    client: &mut etcd_client::Client,
    prefixes: &[String],
) -> Result<(), FloorError> {
    for prefix in prefixes {
        let options = etcd_client::DeleteOptions::new().with_prefix();
        client.delete(prefix.as_str(), Some(options)).await?;
        // etcd commits a batch every 100 ms: a few small deletes per batch.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(())
}

/// Round trips of a minimal HTTP/1.1 request over one keep-alive loopback connection to an
/// in-process server answering a fixed `body_len`-byte body: the transport floor of any API call.
pub async fn http_round_trip(count: usize, body_len: usize) -> Result<Latencies, FloorError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let body = Arc::new(vec![b'x'; body_len]);
    let server = tokio::spawn(async move {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY");
        }
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        let mut line = String::new();
        loop {
            // Read one request head (ends with an empty line).
            loop {
                line.clear();
                match read.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) if line == "\r\n" => break,
                    Ok(_) => {}
                }
            }
            // One write per response, as a server with a response buffer does.
            let mut response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            response.extend_from_slice(&body);
            if write.write_all(&response).await.is_err() {
                return;
            }
        }
    });
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let request = b"GET /api/v1/namespaces/default/pods/x HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n";
    let expected = body_len
        + format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {body_len}\r\n\r\n"
        )
        .len();
    let mut buf = vec![0u8; expected];
    let mut latencies = Latencies::new();
    for _ in 0..count {
        let t = Instant::now();
        stream.write_all(request).await?;
        stream.read_exact(&mut buf).await?;
        latencies.push(t.elapsed());
    }
    drop(stream);
    if tokio::time::timeout(Duration::from_secs(1), server)
        .await
        .is_err()
    {
        tracing::debug!("loopback server did not stop");
    }
    Ok(latencies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loopback_round_trip_is_measured() {
        let l = http_round_trip(20, 512).await.expect("loopback");
        assert_eq!(l.len(), 20);
        assert!(l.ms(0.5) > 0.0);
    }
}
