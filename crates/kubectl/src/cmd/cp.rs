//! `kubectl cp SRC DEST`: copies files and directories to and from containers through `exec` of
//! `tar` in the container, as upstream does. To a pod: a tar stream built here (entries named
//! after the destination's base name) is piped into `tar -xmf - -C <dest dir>`; when the
//! destination is a directory in the container (`test -d`), the source keeps its own name inside
//! it. From a pod: `tar cf - <path>` is unpacked here with the path's prefix stripped, skipping
//! entries that would land outside the destination and symlinks.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::exec::outcome;
use crate::cli::CpArgs;
use crate::error::{Error, Result};
use crate::session::Session;

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileSpec {
    /// A local path.
    Local(String),
    /// A path in a pod's container.
    Remote {
        /// The namespace, when given as `namespace/pod:path`.
        namespace: Option<String>,
        /// The pod.
        pod: String,
        /// The path in the container.
        path: String,
    },
}

const CANONICAL: &str = "filespec must match the canonical format: [[namespace/]pod:]file/path";

/// Parses `[[namespace/]pod:]file/path`.
pub fn parse_file_spec(arg: &str) -> Result<FileSpec> {
    let Some(i) = arg.find(':') else {
        return Ok(FileSpec::Local(arg.to_string()));
    };
    if i == 0 {
        return Err(Error::Usage(CANONICAL.into()));
    }
    let (pod_spec, path) = (&arg[..i], &arg[i + 1..]);
    let parts: Vec<&str> = pod_spec.split('/').collect();
    let (namespace, pod) = match parts.as_slice() {
        [pod] => (None, pod.to_string()),
        [namespace, pod] => (Some(namespace.to_string()), pod.to_string()),
        _ => return Err(Error::Usage(CANONICAL.into())),
    };
    Ok(FileSpec::Remote {
        namespace,
        pod,
        path: path.to_string(),
    })
}

/// What an exec in the container produced.
struct ExecOutput {
    stdout: Vec<u8>,
    result: Result<()>,
}

/// Runs `command` in the container, feeding it `stdin`, collecting stdout; stderr goes to ours.
async fn exec(
    s: &mut Session,
    pods: &Api<Pod>,
    pod: &str,
    container: Option<String>,
    command: Vec<String>,
    stdin: Option<Vec<u8>>,
) -> Result<ExecOutput> {
    let params = AttachParams {
        container,
        stdin: stdin.is_some(),
        stdout: true,
        stderr: true,
        tty: false,
        ..AttachParams::default()
    };
    let mut process = pods.exec(pod, command, &params).await?;
    let feeder = match (process.stdin(), stdin) {
        (Some(mut writer), Some(bytes)) => Some(tokio::spawn(async move {
            if let Err(e) = writer.write_all(&bytes).await {
                tracing::debug!(error = %e, "writing the tar stream ended");
            }
            if let Err(e) = writer.shutdown().await {
                tracing::debug!(error = %e, "closing remote stdin");
            }
        })),
        _ => None,
    };
    let status = process.take_status();
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let out_reader = process.stdout();
    let err_reader = process.stderr();
    let read_out = async {
        if let Some(mut r) = out_reader {
            r.read_to_end(&mut stdout).await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let read_err = async {
        if let Some(mut r) = err_reader {
            r.read_to_end(&mut stderr).await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let (a, b) = tokio::join!(read_out, read_err);
    a.map_err(|e| Error::io("reading remote output", e))?;
    b.map_err(|e| Error::io("reading remote errors", e))?;
    let status = match status {
        Some(status) => status.await,
        None => None,
    };
    // The process has ended: whatever it did not read of its stdin is moot.
    if let Some(feeder) = feeder {
        feeder.abort();
    }
    if let Err(e) = process.join().await {
        tracing::debug!(error = %e, "exec session ended");
    }
    s.io.err
        .write_all(&stderr)
        .map_err(|e| Error::io("writing output", e))?;
    Ok(ExecOutput {
        stdout,
        result: outcome(status),
    })
}

/// Runs `kubectl cp`.
pub async fn run(s: &mut Session, args: CpArgs) -> Result<()> {
    let source = parse_file_spec(&args.source)?;
    let destination = parse_file_spec(&args.destination)?;
    let client = s.client().await?;
    let default_namespace = s.namespace().await?;
    match (source, destination) {
        (
            FileSpec::Local(local),
            FileSpec::Remote {
                namespace,
                pod,
                path,
            },
        ) => {
            if local.is_empty() || path.is_empty() {
                return Err(Error::Usage("filepath can not be empty".into()));
            }
            let pods: Api<Pod> =
                Api::namespaced(client, namespace.as_deref().unwrap_or(&default_namespace));
            copy_to_pod(
                s,
                &pods,
                &pod,
                args.container,
                &local,
                &path,
                args.no_preserve,
            )
            .await
        }
        (
            FileSpec::Remote {
                namespace,
                pod,
                path,
            },
            FileSpec::Local(local),
        ) => {
            if local.is_empty() || path.is_empty() {
                return Err(Error::Usage("filepath can not be empty".into()));
            }
            let pods: Api<Pod> =
                Api::namespaced(client, namespace.as_deref().unwrap_or(&default_namespace));
            copy_from_pod(s, &pods, &pod, args.container, &path, &local).await
        }
        _ => Err(Error::Usage(
            "one of src or dest must be a local file specification".into(),
        )),
    }
}

/// The last path element (`/a/b/` -> `b`).
fn base_name(path: &str) -> String {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The directory part (`/a/b` -> `/a`, `b` -> ``).
fn dir_name(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rfind('/') {
        Some(0) => "/".into(),
        Some(i) => trimmed[..i].to_string(),
        None => String::new(),
    }
}

/// A tar stream of `local` with its entries named under `name`.
pub fn make_tar(local: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    if local.is_dir() {
        builder.append_dir_all(name, local)?;
    } else {
        builder.append_path_with_name(local, name)?;
    }
    builder.into_inner()
}

async fn copy_to_pod(
    s: &mut Session,
    pods: &Api<Pod>,
    pod: &str,
    container: Option<String>,
    local: &str,
    remote: &str,
    no_preserve: bool,
) -> Result<()> {
    let local_path = Path::new(local);
    if std::fs::symlink_metadata(local_path).is_err() {
        return Err(Error::Usage(format!(
            "{local} doesn't exist in local filesystem"
        )));
    }
    let mut dest = remote.to_string();
    if dest.ends_with('/') {
        dest.push_str(&base_name(local));
    } else {
        let probe = exec(
            s,
            pods,
            pod,
            container.clone(),
            vec!["test".into(), "-d".into(), dest.clone()],
            None,
        )
        .await?;
        if probe.result.is_ok() {
            dest = format!("{dest}/{}", base_name(local));
        }
    }
    let tar = make_tar(local_path, &base_name(&dest))
        .map_err(|e| Error::io(format!("packing {local}"), e))?;
    let mut command: Vec<String> = vec!["tar".into()];
    if no_preserve {
        command.push("--no-same-permissions".into());
        command.push("--no-same-owner".into());
    }
    command.push("-xmf".into());
    command.push("-".into());
    let dir = dir_name(&dest);
    if !dir.is_empty() {
        command.push("-C".into());
        command.push(dir);
    }
    exec(s, pods, pod, container, command, Some(tar))
        .await?
        .result
}

async fn copy_from_pod(
    s: &mut Session,
    pods: &Api<Pod>,
    pod: &str,
    container: Option<String>,
    remote: &str,
    local: &str,
) -> Result<()> {
    let output = exec(
        s,
        pods,
        pod,
        container,
        vec!["tar".into(), "cf".into(), "-".into(), remote.into()],
        None,
    )
    .await?;
    output.result?;
    let warnings = untar(&output.stdout, &tar_prefix(remote), Path::new(local))?;
    for warning in warnings {
        s.eprint(&format!("{warning}\n"))?;
    }
    Ok(())
}

/// The prefix `tar cf - <path>` puts on entry names: the cleaned path without leading `/`.
pub fn tar_prefix(remote: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in remote.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

/// Whether `path` (relative) stays inside its base.
fn stays_inside(relative: &Path) -> bool {
    let mut depth: i32 = 0;
    for component in relative.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// Unpacks `archive` into `dest`, stripping `prefix` from entry names; returns warnings.
pub fn untar(archive: &[u8], prefix: &str, dest: &Path) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let mut reader = tar::Archive::new(archive);
    let entries = reader
        .entries()
        .map_err(|e| Error::io("reading the tar stream", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::io("reading the tar stream", e))?;
        let name = entry
            .path()
            .map_err(|e| Error::io("reading the tar stream", e))?
            .to_string_lossy()
            .trim_start_matches('/')
            .to_string();
        let Some(rest) = name.strip_prefix(prefix) else {
            return Err(Error::Usage("tar contents corrupted".into()));
        };
        let relative = PathBuf::from(rest.trim_start_matches('/'));
        if !stays_inside(&relative) {
            warnings.push(format!(
                "warning: skipping {name:?}: file is outside target destination"
            ));
            continue;
        }
        let target = if relative.as_os_str().is_empty() {
            dest.to_path_buf()
        } else {
            dest.join(&relative)
        };
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&target)
                .map_err(|e| Error::io(format!("creating {}", target.display()), e))?;
        } else if kind.is_symlink() || kind.is_hard_link() {
            let link = entry
                .link_name()
                .ok()
                .flatten()
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            warnings.push(format!("warning: skipping symlink: {target:?} -> {link:?}"));
        } else if kind.is_file() {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
            }
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data)
                .map_err(|e| Error::io("reading the tar stream", e))?;
            std::fs::write(&target, data)
                .map_err(|e| Error::io(format!("writing {}", target.display()), e))?;
        }
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_specs_parse_like_upstream() {
        assert_eq!(
            parse_file_spec("/tmp/x").ok(),
            Some(FileSpec::Local("/tmp/x".into()))
        );
        assert_eq!(
            parse_file_spec("web:/etc/hosts").ok(),
            Some(FileSpec::Remote {
                namespace: None,
                pod: "web".into(),
                path: "/etc/hosts".into()
            })
        );
        assert_eq!(
            parse_file_spec("kube-system/dns:data").ok(),
            Some(FileSpec::Remote {
                namespace: Some("kube-system".into()),
                pod: "dns".into(),
                path: "data".into()
            })
        );
        assert!(parse_file_spec(":x").is_err());
        assert!(parse_file_spec("a/b/c:x").is_err());
    }

    #[test]
    fn paths_split_like_upstream() {
        assert_eq!(base_name("/a/b/"), "b");
        assert_eq!(dir_name("/a/b"), "/a");
        assert_eq!(dir_name("/b"), "/");
        assert_eq!(dir_name("b"), "");
        assert_eq!(tar_prefix("/tmp/../etc/./hosts"), "etc/hosts");
    }

    #[test]
    fn a_packed_directory_unpacks_under_its_new_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("inner")).expect("mkdir");
        std::fs::write(src.join("top.txt"), "top").expect("write");
        std::fs::write(src.join("inner/deep.txt"), "deep").expect("write");
        let archive = make_tar(&src, "renamed").expect("tar");
        let out = dir.path().join("out");
        let warnings = untar(&archive, "renamed", &out).expect("untar");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(std::fs::read(out.join("top.txt")).expect("top"), b"top");
        assert_eq!(
            std::fs::read(out.join("inner/deep.txt")).expect("deep"),
            b"deep"
        );
        let single = make_tar(&src.join("top.txt"), "one.txt").expect("tar");
        untar(&single, "one.txt", &dir.path().join("one")).expect("untar file");
        assert_eq!(std::fs::read(dir.path().join("one")).expect("one"), b"top");
    }

    #[test]
    fn untar_strips_the_prefix_and_refuses_escapes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            header.as_gnu_mut().expect("gnu").name[..name.len()].copy_from_slice(name.as_bytes());
            header.set_cksum();
            builder.append(&header, data).expect("append");
        };
        add("srv/data/a.txt", b"A");
        add("srv/data/sub/b.txt", b"B");
        add("srv/data/../../evil", b"E");
        let archive = builder.into_inner().expect("tar");
        let dest = dir.path().join("out");
        let warnings = untar(&archive, "srv/data", &dest).expect("untar");
        assert_eq!(std::fs::read(dest.join("a.txt")).expect("a"), b"A");
        assert_eq!(std::fs::read(dest.join("sub/b.txt")).expect("b"), b"B");
        assert!(!dir.path().join("evil").exists());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(untar(&archive, "other", &dest).is_err());
    }
}
