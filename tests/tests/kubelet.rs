//! The kubelet's "Done" list of issue 7, end to end on one real cluster (containerd, runc, CNI),
//! driven with the upstream kubectl: liveness restarts, readiness in and out of a Service's
//! EndpointSlice, a live ConfigMap update, a tmpfs secret volume, an OOMKilled memory hog, a bad
//! image (ErrImagePull then ImagePullBackOff), a pull from a local Debian `docker-registry`,
//! `kubectl logs -f`, `exec -i`, `exec -it` on a real pseudo-terminal (size, resize, exit
//! code), `port-forward` and `cp`, bad input that must not crash the kubelet, and a kubelet
//! restart that restarts no container.
//!
//! Needs root and the release binaries, so it is ignored by default; `hack/test.sh` runs it.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use e2e::{field, items, pod_ready, run_ok, wait_for, Cluster, Kubectl};
use serde_json::Value;

const SECOND: Duration = Duration::from_secs(1);
const NS: &str = "kubelet-e2e";

/// A child process killed (and reaped) on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Err(error) = self.0.kill() {
            eprintln!("killing child {}: {error}", self.0.id());
        }
        if let Err(error) = self.0.wait() {
            eprintln!("reaping child {}: {error}", self.0.id());
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The Debian `docker-registry` on a free loopback port, filled with the cluster's busybox.
struct LocalRegistry {
    _child: Reaped,
    port: u16,
    _dir: PathBuf,
}

impl LocalRegistry {
    fn start(cluster: &Cluster) -> Result<Self> {
        let port = free_port()?;
        let dir = cluster.dir.join("e2e-registry");
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                dir.join("data").display()
            ),
        )?;
        let log = std::fs::File::create(cluster.dir.join("logs/e2e-registry.log"))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting docker-registry")?;
        let registry = Self {
            _child: Reaped(child),
            port,
            _dir: dir,
        };
        wait_for(
            "docker-registry to listen",
            10 * SECOND,
            SECOND / 10,
            || {
                Ok(std::net::TcpStream::connect(("127.0.0.1", port))
                    .is_ok()
                    .then_some(()))
            },
        )?;
        run_ok(
            Command::new("skopeo")
                .args(["copy", "--dest-tls-verify=false", "--insecure-policy"])
                .arg(format!(
                    "oci-archive:{}",
                    cluster.dir.join("images/busybox.tar").display()
                ))
                .arg(format!("docker://127.0.0.1:{port}/e2e/busybox:1.35")),
        )?;
        Ok(registry)
    }
}

fn manifests(registry: u16) -> String {
    format!(
        r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  color: blue
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
data:
  password: aHVudGVyMg==
---
apiVersion: v1
kind: Pod
metadata:
  name: liveness
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:1.35
    command: ["sh", "-c", "touch /tmp/healthy; sleep 4; rm /tmp/healthy; sleep 3600"]
    livenessProbe:
      exec:
        command: ["cat", "/tmp/healthy"]
      periodSeconds: 1
      failureThreshold: 2
---
apiVersion: v1
kind: Pod
metadata:
  name: ready
  labels:
    app: ready
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:1.35
    command: ["sleep", "3600"]
    readinessProbe:
      exec:
        command: ["cat", "/tmp/ready"]
      periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: ready
spec:
  selector:
    app: ready
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: v1
kind: Pod
metadata:
  name: volumes
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:1.35
    command: ["sleep", "3600"]
    volumeMounts:
    - name: cfg
      mountPath: /etc/cfg
    - name: secret
      mountPath: /etc/secret
  volumes:
  - name: cfg
    configMap:
      name: settings
  - name: secret
    secret:
      secretName: creds
---
apiVersion: v1
kind: Pod
metadata:
  name: hog
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:1.35
    command: ["sh", "-c", "sleep 1; tail /dev/zero"]
    resources:
      limits:
        memory: 32Mi
---
apiVersion: v1
kind: Pod
metadata:
  name: badimage
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: 127.0.0.1:{registry}/e2e/nothere:1
---
apiVersion: v1
kind: Pod
metadata:
  name: pulled
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: 127.0.0.1:{registry}/e2e/busybox:1.35
    imagePullPolicy: Always
    command: ["sh", "-c", "i=0; while true; do echo line-$i; i=$((i+1)); sleep 0.3; done"]
---
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:1.35
    command: ["sh", "-c", "mkdir -p /www && echo hello-port-forward > /www/index.html && exec httpd -f -p 8080 -h /www"]
---
apiVersion: v1
kind: Pod
metadata:
  name: nokey
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:1.35
    command: ["sleep", "3600"]
    env:
    - name: MISSING
      valueFrom:
        configMapKeyRef:
          name: settings
          key: nope
---
apiVersion: v1
kind: Pod
metadata:
  name: nfs
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:1.35
    command: ["sleep", "3600"]
    volumeMounts:
    - name: share
      mountPath: /share
  volumes:
  - name: share
    nfs:
      server: 127.0.0.1
      path: /exports
---
apiVersion: v1
kind: Pod
metadata:
  name: noexec
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: busybox:1.35
    command: ["/does/not/exist"]
"#
    )
}

fn container_status(pod: &Value) -> Value {
    pod.pointer("/status/containerStatuses/0")
        .cloned()
        .unwrap_or(Value::Null)
}

fn waiting_reason(pod: &Value) -> String {
    field(&container_status(pod), "/state/waiting/reason")
}

fn restart_count(pod: &Value) -> i64 {
    container_status(pod)
        .get("restartCount")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// The ready condition of the `ready` Service's endpoints: `Some(true)` ready, `Some(false)`
/// listed but not ready, `None` not listed.
fn endpoint_ready(k: &Kubectl) -> Result<Option<bool>> {
    let slices = k.json(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=ready",
    ])?;
    let mut state = None;
    for slice in items(&slices) {
        for endpoint in slice
            .get("endpoints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if field(endpoint, "/targetRef/name") == "ready" {
                state = Some(
                    endpoint
                        .pointer("/conditions/ready")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                );
            }
        }
    }
    Ok(state)
}

fn events_of(k: &Kubectl, pod: &str) -> Result<Vec<(String, String)>> {
    let list = k.json(&["get", "events"])?;
    Ok(items(&list)
        .into_iter()
        .filter(|e| field(e, "/involvedObject/name") == pod || field(e, "/regarding/name") == pod)
        .map(|e| {
            let message = match field(&e, "/message") {
                m if m.is_empty() => field(&e, "/note"),
                m => m,
            };
            (field(&e, "/reason"), message)
        })
        .collect())
}

fn kubelet_pid(cluster: &Cluster) -> Result<i32> {
    let text = std::fs::read_to_string(cluster.dir.join("pids/kubelet.pid"))?;
    Ok(text.trim().parse()?)
}

fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// Stops the kubelet with SIGTERM and starts it again with the same command line, as
/// local-up-cluster.sh does (its pid file updated so local-down-cluster.sh stops the new one).
fn restart_kubelet(cluster: &Cluster) -> Result<()> {
    let pid = kubelet_pid(cluster)?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))?;
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    ensure!(!args.is_empty(), "kubelet {pid} has no command line");
    run_ok(Command::new("kill").args(["-TERM", &pid.to_string()]))?;
    wait_for("the kubelet to exit", 30 * SECOND, SECOND / 5, || {
        Ok((!alive(pid)).then_some(()))
    })?;
    let log_path = cluster.dir.join("logs/kubelet.log");
    let mut log = std::fs::OpenOptions::new().append(true).open(&log_path)?;
    writeln!(log, "=== restarted by the kubelet e2e test")?;
    let child = Command::new("setsid")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("restarting the kubelet")?;
    std::fs::write(
        cluster.dir.join("pids/kubelet.pid"),
        format!("{}\n", child.id()),
    )?;
    // The kubelet runs on after this test's Child handle is gone; local-down stops it.
    std::mem::forget(child);
    Ok(())
}

/// Every process below `ancestor` (children, grandchildren, ...).
fn descendants(ancestor: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|entry| {
                    let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                    let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
                    // `pid (comm) state ppid ...`; comm may hold spaces: split at the last ')'.
                    let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
                    Some((pid, ppid.parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut found = vec![ancestor];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        i += 1;
    }
    found.split_off(1)
}

/// Text a process under a pseudo-terminal printed, gathered by a reader thread.
struct PtyOutput {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    text: String,
}

impl PtyOutput {
    /// Reads until `found` picks something out of the text so far, or `timeout` passes.
    fn until<T>(&mut self, timeout: Duration, found: impl Fn(&str) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = found(&self.text) {
                return Some(value);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.rx.recv_timeout(left.min(SECOND / 5)) {
                Ok(chunk) => self.text.push_str(&String::from_utf8_lossy(&chunk)),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return found(&self.text),
            }
        }
    }
}

/// What follows the last `marker` in `text`, up to the end of its line (the echoed command
/// line holds the marker too, but followed by `$(`, which no answer starts with).
fn answer_after(text: &str, marker: &str) -> Option<String> {
    text.match_indices(marker)
        .map(|(at, _)| &text[at + marker.len()..])
        .filter(|rest| !rest.starts_with("$(") && rest.contains('\n'))
        .filter_map(|rest| rest.split(['\r', '\n']).next())
        .last()
        .map(str::to_string)
}

/// Runs upstream `kubectl exec -it <pod> -- sh` under a real pseudo-terminal (util-linux
/// `script`) of 91x37 and requires: a tty inside, the outer size seen inside, a resize of the
/// outer terminal (SIGWINCH to kubectl) seen inside, and the shell's exit code 3 as kubectl's.
fn exec_tty(k: &Kubectl, pod: &str) -> Result<()> {
    let kubectl = format!(
        "{} --kubeconfig {} -n {} exec -it {pod} -- sh",
        k.binary.display(),
        k.kubeconfig.display(),
        k.namespace
    );
    let mut script = Reaped(
        Command::new("script")
            .args([
                "-qec",
                &format!("stty cols 91 rows 37 && exec {kubectl}"),
                "/dev/null",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting script(1)")?,
    );
    let mut stdin = script.0.stdin.take().context("script stdin")?;
    let mut stdout = script.0.stdout.take().context("script stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut out = PtyOutput {
        rx,
        text: String::new(),
    };
    let prompt = out.until(30 * SECOND, |t| t.contains("# ").then_some(()));
    ensure!(
        prompt.is_some(),
        "no shell prompt through exec -it: {:?}",
        out.text
    );
    stdin.write_all(b"echo A tty=$(tty) size=$(stty size) sum=$((6*7)) end\n")?;
    stdin.flush()?;
    let first = out
        .until(30 * SECOND, |t| answer_after(t, "A tty="))
        .with_context(|| format!("no answer to the first command: {:?}", out.text))?;
    let (tty, rest) = first.split_once(" size=").context("size missing")?;
    ensure!(
        tty.starts_with("/dev/pts/"),
        "exec -it gave no terminal inside: {first:?}"
    );
    ensure!(
        rest == "37 91 sum=42 end",
        "exec -it inside size or sum wrong (want rows 37 cols 91, 42): {first:?}"
    );

    // Resize the outer terminal, as a terminal emulator would, and tell kubectl.
    // kubectl (here gcloud's version dispatcher and the kubectl it runs) sits below script.
    let (kubectl, pts) = wait_for(
        "kubectl on script's terminal",
        10 * SECOND,
        SECOND / 5,
        || {
            Ok(descendants(script.0.id()).into_iter().find_map(|pid| {
                let tty = std::fs::read_link(format!("/proc/{pid}/fd/0")).ok()?;
                tty.starts_with("/dev/pts/").then_some((pid, tty))
            }))
        },
    )?;
    run_ok(
        Command::new("stty")
            .arg("-F")
            .arg(&pts)
            .args(["cols", "120", "rows", "40"]),
    )?;
    // The kernel signals the terminal's foreground group; signal each process too, in case
    // the dispatcher moved its child to a group of its own.
    for pid in std::iter::once(kubectl).chain(descendants(kubectl)) {
        run_ok(Command::new("kill").args(["-WINCH", &pid.to_string()]))?;
    }
    let mut resized = None;
    for _ in 0..15 {
        stdin.write_all(b"echo B size=$(stty size) end\n")?;
        stdin.flush()?;
        resized = out.until(SECOND, |t| {
            answer_after(t, "B size=").filter(|a| a == "40 120 end")
        });
        if resized.is_some() {
            break;
        }
    }
    ensure!(
        resized.is_some(),
        "the resize to 120x40 never reached the shell: {:?}",
        out.text
    );

    stdin.write_all(b"exit 3\n")?;
    stdin.flush()?;
    let status = wait_for("kubectl exec -it to exit", 30 * SECOND, SECOND / 5, || {
        Ok(script.0.try_wait()?)
    })?;
    drop(stdin);
    ensure!(
        status.code() == Some(3),
        "kubectl exec -it exited {status}, want the remote 3: {:?}",
        out.text
    );
    Ok(())
}

fn flow(k: &Kubectl, cluster: &Cluster, registry: &LocalRegistry) -> Result<()> {
    let start = Instant::now();
    k.ok_with_stdin(&["apply", "-f", "-"], &manifests(registry.port))?;

    // A pull from the local registry works (imagePullPolicy Always).
    let pulled = wait_for("pod pulled running", 60 * SECOND, SECOND / 2, || {
        let pod = k.json(&["get", "pod", "pulled"])?;
        Ok(pod_ready(&pod).then_some(pod))
    })?;
    ensure!(
        field(&container_status(&pulled), "/image").contains("e2e/busybox"),
        "pulled image status: {}",
        container_status(&pulled)
    );
    let events = events_of(k, "pulled")?;
    ensure!(
        events
            .iter()
            .any(|(r, m)| r == "Pulling" && m.contains("e2e/busybox:1.35"))
            && events
                .iter()
                .any(|(r, m)| r == "Pulled" && m.starts_with("Successfully pulled image")),
        "pull events: {events:?}"
    );

    // A bad image: ErrImagePull, then ImagePullBackOff.
    let mut seen = Vec::new();
    wait_for(
        "badimage in ImagePullBackOff",
        60 * SECOND,
        SECOND / 5,
        || {
            let reason = waiting_reason(&k.json(&["get", "pod", "badimage"])?);
            if !reason.is_empty() && seen.last() != Some(&reason) {
                seen.push(reason.clone());
            }
            Ok((reason == "ImagePullBackOff").then_some(()))
        },
    )?;
    // Events are recorded asynchronously: wait for the failed pull's own.
    let events = wait_for(
        "badimage's failed pull event",
        30 * SECOND,
        SECOND / 2,
        || {
            let events = events_of(k, "badimage")?;
            Ok(events
                .iter()
                .any(|(r, m)| r == "Failed" && m.starts_with("Failed to pull image"))
                .then_some(events))
        },
    )?;
    // ErrImagePull lasts one sync (about a second) before the back-off; the recorder may fold
    // "Error: ErrImagePull" into the series of the first Failed event: the failed pull itself
    // is the ErrImagePull event.
    ensure!(
        seen.iter().any(|r| r == "ErrImagePull")
            || events.iter().any(|(r, m)| r == "Failed"
                && (m == "Error: ErrImagePull" || m.starts_with("Failed to pull image"))),
        "no ErrImagePull before ImagePullBackOff: reasons {seen:?}, events {events:?}"
    );

    // upstream `kubectl logs -f` streams new lines.
    let mut follow = Reaped(
        k.command()
            .args(["logs", "-f", "pulled"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let stdout = follow.0.stdout.take().context("logs -f stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let before = k.ok(&["logs", "pulled"])?.lines().count();
    let mut streamed = Vec::new();
    let deadline = Instant::now() + 30 * SECOND;
    while streamed.len() < before + 5 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(SECOND) {
            streamed.push(line);
        }
    }
    drop(follow);
    ensure!(
        streamed.len() >= before + 5 && streamed.iter().all(|l| l.starts_with("line-")),
        "logs -f streamed {} lines (had {before}): {streamed:?}",
        streamed.len()
    );

    // upstream `kubectl exec -i` with stdin.
    let counted = k.ok_with_stdin(
        &[
            "exec",
            "-i",
            "pulled",
            "--",
            "sh",
            "-c",
            "cat > /tmp/in; wc -c < /tmp/in",
        ],
        "hello-stdin\n",
    )?;
    ensure!(counted.trim() == "12", "exec -i counted {counted:?}");

    // upstream `kubectl exec -it` on a real pseudo-terminal: size, resize and exit code.
    exec_tty(k, "pulled")?;

    // Volumes: a tmpfs secret, a ConfigMap change seen in the mounted file.
    wait_for("pod volumes ready", 60 * SECOND, SECOND / 2, || {
        Ok(pod_ready(&k.json(&["get", "pod", "volumes"])?).then_some(()))
    })?;
    let mounts = k.ok(&["exec", "volumes", "--", "cat", "/proc/mounts"])?;
    ensure!(
        mounts
            .lines()
            .any(|l| l.split(' ').nth(1) == Some("/etc/secret")
                && l.split(' ').nth(2) == Some("tmpfs")),
        "/etc/secret is not a tmpfs:\n{mounts}"
    );
    let password = k.ok(&["exec", "volumes", "--", "cat", "/etc/secret/password"])?;
    ensure!(password == "hunter2", "secret file: {password:?}");
    let color = k.ok(&["exec", "volumes", "--", "cat", "/etc/cfg/color"])?;
    ensure!(color == "blue", "configmap file: {color:?}");
    k.ok(&[
        "patch",
        "configmap",
        "settings",
        "--type=merge",
        "-p",
        r#"{"data":{"color":"green"}}"#,
    ])?;
    wait_for(
        "the ConfigMap change in the file",
        60 * SECOND,
        SECOND,
        || {
            let color = k.ok(&["exec", "volumes", "--", "cat", "/etc/cfg/color"])?;
            Ok((color == "green").then_some(()))
        },
    )?;

    // Readiness flips the pod in and out of the Service's EndpointSlice.
    wait_for("pod ready running", 60 * SECOND, SECOND / 2, || {
        let pod = k.json(&["get", "pod", "ready"])?;
        Ok((field(&pod, "/status/phase") == "Running").then_some(()))
    })?;
    ensure!(
        endpoint_ready(k)? != Some(true),
        "not-ready pod is a ready endpoint"
    );
    k.ok(&["exec", "ready", "--", "touch", "/tmp/ready"])?;
    wait_for("the ready endpoint", 30 * SECOND, SECOND / 2, || {
        Ok((endpoint_ready(k)? == Some(true)).then_some(()))
    })?;
    k.ok(&["exec", "ready", "--", "rm", "/tmp/ready"])?;
    wait_for(
        "the endpoint to turn not ready",
        30 * SECOND,
        SECOND / 2,
        || Ok((endpoint_ready(k)? != Some(true)).then_some(())),
    )?;

    // upstream `kubectl port-forward` and `kubectl cp`.
    wait_for("pod web ready", 60 * SECOND, SECOND / 2, || {
        Ok(pod_ready(&k.json(&["get", "pod", "web"])?).then_some(()))
    })?;
    let local = free_port()?;
    let _forward = Reaped(
        k.command()
            .args(["port-forward", "pod/web", &format!("{local}:8080")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_for(
        "a page through port-forward",
        30 * SECOND,
        SECOND / 2,
        || {
            let page = run_ok(Command::new("busybox").args([
                "timeout",
                "5",
                "busybox",
                "wget",
                "-qO-",
                &format!("http://127.0.0.1:{local}/"),
            ]));
            Ok(page.ok().filter(|p| p.contains("hello-port-forward")))
        },
    )?;
    let scratch = cluster.dir.join("e2e-cp");
    std::fs::create_dir_all(&scratch)?;
    let upload = scratch.join("upload.txt");
    std::fs::write(&upload, "copied through kubectl cp\n")?;
    k.ok(&[
        "cp",
        &upload.display().to_string(),
        &format!("{NS}/web:/tmp/upload.txt"),
    ])?;
    let inside = k.ok(&["exec", "web", "--", "cat", "/tmp/upload.txt"])?;
    ensure!(inside == "copied through kubectl cp\n", "cp in: {inside:?}");
    let download = scratch.join("download.txt");
    k.ok(&[
        "cp",
        &format!("{NS}/web:/tmp/upload.txt"),
        &download.display().to_string(),
    ])?;
    ensure!(
        std::fs::read_to_string(&download)? == "copied through kubectl cp\n",
        "cp out differs"
    );

    // A failing liveness probe restarts the container.
    wait_for("liveness restarts", 90 * SECOND, SECOND, || {
        let pod = k.json(&["get", "pod", "liveness"])?;
        Ok((restart_count(&pod) >= 1).then_some(()))
    })?;

    // The memory hog is OOMKilled and shown so.
    let hog = wait_for("hog OOMKilled", 90 * SECOND, SECOND / 2, || {
        let pod = k.json(&["get", "pod", "hog"])?;
        let status = container_status(&pod);
        let last = field(&status, "/lastState/terminated/reason");
        let now = field(&status, "/state/terminated/reason");
        Ok((last == "OOMKilled" || now == "OOMKilled").then_some(status))
    })?;
    ensure!(
        hog.pointer("/lastState/terminated/exitCode")
            .or_else(|| hog.pointer("/state/terminated/exitCode"))
            .and_then(Value::as_i64)
            == Some(137),
        "hog status: {hog}"
    );

    // Bad input gives upstream reasons and never kills the kubelet.
    wait_for(
        "nokey in CreateContainerConfigError",
        30 * SECOND,
        SECOND / 2,
        || {
            let pod = k.json(&["get", "pod", "nokey"])?;
            Ok((waiting_reason(&pod) == "CreateContainerConfigError").then_some(()))
        },
    )?;
    wait_for(
        "nfs stuck in ContainerCreating with FailedMount",
        30 * SECOND,
        SECOND,
        || {
            let pod = k.json(&["get", "pod", "nfs"])?;
            let events = events_of(k, "nfs")?;
            Ok((waiting_reason(&pod) == "ContainerCreating"
                && events
                    .iter()
                    .any(|(r, m)| r == "FailedMount" && m.contains("nfs")))
            .then_some(()))
        },
    )?;
    wait_for("noexec failing to start", 30 * SECOND, SECOND / 2, || {
        let pod = k.json(&["get", "pod", "noexec"])?;
        let reason = waiting_reason(&pod);
        Ok(matches!(reason.as_str(), "RunContainerError" | "CrashLoopBackOff").then_some(()))
    })?;
    let pid = kubelet_pid(cluster)?;
    ensure!(alive(pid), "the kubelet died on bad input");

    // Restarting the kubelet restarts no container.
    // (The liveness pod keeps failing its probe and restarting on its own: not compared.)
    let running = ["pulled", "volumes", "ready", "web"];
    let snapshot = |k: &Kubectl| -> Result<Vec<(String, String, i64)>> {
        running
            .iter()
            .map(|name| {
                let pod = k.json(&["get", "pod", name])?;
                let status = container_status(&pod);
                Ok((
                    name.to_string(),
                    field(&status, "/containerID"),
                    restart_count(&pod),
                ))
            })
            .collect()
    };
    let before = snapshot(k)?;
    ensure!(
        before
            .iter()
            .all(|(_, id, _)| id.starts_with("containerd://")),
        "container ids: {before:?}"
    );
    restart_kubelet(cluster)?;
    let new_pid = kubelet_pid(cluster)?;
    wait_for(
        "the restarted kubelet's API",
        30 * SECOND,
        SECOND / 2,
        || {
            Ok(std::net::TcpStream::connect(("127.0.0.1", 10250))
                .is_ok()
                .then_some(()))
        },
    )?;
    // Give it a few syncs of every pod.
    std::thread::sleep(5 * SECOND);
    ensure!(alive(new_pid), "the restarted kubelet exited");
    let after = snapshot(k)?;
    for ((name, id_before, rc_before), (_, id_after, rc_after)) in before.iter().zip(&after) {
        ensure!(
            id_before == id_after,
            "{name}: container {id_before} became {id_after} across the kubelet restart"
        );
        ensure!(
            rc_before == rc_after,
            "{name}: restartCount {rc_before} -> {rc_after} across the kubelet restart"
        );
    }
    for name in ["pulled", "volumes", "web"] {
        wait_for(
            &format!("{name} ready after the restart"),
            30 * SECOND,
            SECOND / 2,
            || Ok(pod_ready(&k.json(&["get", "pod", name])?).then_some(())),
        )?;
    }
    eprintln!("kubelet flow: {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}

#[test]
#[ignore = "needs root, the release binaries and a whole cluster; hack/test.sh runs it"]
fn kubelet_done_list_holds_on_a_real_cluster() -> Result<()> {
    let storage = std::env::var("KUBE_STORAGE").unwrap_or_else(|_| "sqlite".to_string());
    let dir = PathBuf::from(format!("/tmp/kube-e2e-kubelet-{storage}"));
    let cluster = Cluster::up(&dir, &storage)?;
    let registry = LocalRegistry::start(&cluster)?;
    let k = Kubectl {
        binary: PathBuf::from("/usr/bin/kubectl"),
        kubeconfig: cluster.kubeconfig(),
        namespace: NS.to_string(),
    };
    run_ok(
        Command::new("/usr/bin/kubectl")
            .arg("--kubeconfig")
            .arg(cluster.kubeconfig())
            .args(["create", "namespace", NS]),
    )?;
    if let Err(error) = flow(&k, &cluster, &registry) {
        let pods = k.ok(&["get", "pods", "-o", "wide"]).unwrap_or_default();
        bail!(
            "{error:#}\n\npods:\n{pods}\ncomponent logs:\n{}",
            cluster.component_logs()
        );
    }
    drop(registry);
    let said = cluster.down()?;
    eprintln!("{said}");
    Ok(())
}
