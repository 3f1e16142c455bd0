//! Building the OCI runtime spec of a container from its [`ContainerConfig`] and the image's
//! config, with the Kubernetes merge rules (command/args vs Entrypoint/Cmd, env) and the
//! defaults containerd's CRI plugin uses (mounts, capabilities, masked paths, namespaces).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::image::ImageConfiguration;
use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimitBuilder,
    PosixRlimitType, Process, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use crate::runtime::{ContainerConfig, RuntimeError};

/// Default PATH when the image sets none.
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Open-files limit of container processes, if the host allows it.
const NOFILE: u64 = 1_048_576;

/// The open-files limit containers get: [`NOFILE`], capped at this process's hard limit (runc
/// cannot raise it further without `CAP_SYS_RESOURCE`).
fn nofile_limit() -> u64 {
    static LIMIT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(4))
            .and_then(|hard| hard.parse::<u64>().ok())
            .map_or(NOFILE, |hard| hard.min(NOFILE))
    })
}
/// cgroup parent when the kubelet gives none.
const DEFAULT_CGROUP_PARENT: &str = "/kubepods";

/// Docker's and containerd's default capability set.
const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability a privileged container gets (names without `CAP_`).
const ALL_CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// What a container takes from its image's config.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageDefaults {
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env` (`NAME=value`).
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// `User` (`uid`, `uid:gid`, `name`, `name:group`).
    pub user: Option<String>,
    /// `StopSignal`.
    pub stop_signal: Option<String>,
}

impl ImageDefaults {
    /// Extracts the defaults from an image config.
    pub fn from_config(config: &ImageConfiguration) -> Self {
        let Some(c) = config.config() else {
            return Self::default();
        };
        Self {
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            env: c.env().clone().unwrap_or_default(),
            working_dir: c.working_dir().clone().filter(|w| !w.is_empty()),
            user: c.user().clone().filter(|u| !u.is_empty()),
            stop_signal: c.stop_signal().clone().filter(|s| !s.is_empty()),
        }
    }
}

fn invalid(reason: impl Into<String>) -> RuntimeError {
    RuntimeError::InvalidConfig {
        reason: reason.into(),
    }
}

fn oci_err(what: &'static str) -> impl FnOnce(oci_spec::OciSpecError) -> RuntimeError {
    move |e| invalid(format!("{what}: {e}"))
}

/// The process argv, by Kubernetes rules: `command` replaces Entrypoint (and drops Cmd),
/// `args` replaces Cmd.
pub fn command_line(config: &ContainerConfig, image: &ImageDefaults) -> Vec<String> {
    let mut argv = if config.command.is_empty() {
        image.entrypoint.clone()
    } else {
        config.command.clone()
    };
    if !config.args.is_empty() {
        argv.extend(config.args.iter().cloned());
    } else if config.command.is_empty() {
        argv.extend(image.cmd.iter().cloned());
    }
    argv
}

/// The environment: `first`, then the image's Env, then the container's env; a later value
/// replaces an earlier one of the same name in place.
pub fn merge_env(first: &[String], image_env: &[String], env: &[(String, String)]) -> Vec<String> {
    let mut merged: Vec<String> = Vec::new();
    let mut set = |entry: String| {
        let name = entry.split('=').next().unwrap_or_default().to_string();
        match merged
            .iter_mut()
            .find(|e| e.split('=').next() == Some(name.as_str()))
        {
            Some(existing) => *existing = entry,
            None => merged.push(entry),
        }
    };
    for entry in first.iter().chain(image_env) {
        set(entry.clone());
    }
    for (name, value) in env {
        set(format!("{name}={value}"));
    }
    if !merged.iter().any(|e| e.starts_with("PATH=")) {
        merged.insert(0, DEFAULT_PATH.to_string());
    }
    merged
}

/// uid and gid: `run_as_user`/`run_as_group` win over the image's User. Only numeric ids and
/// the names `root` and `nobody` are understood (the rootfs is not read here).
pub fn resolve_user(
    config: &ContainerConfig,
    image: &ImageDefaults,
) -> Result<(u32, u32), RuntimeError> {
    let name_to_id = |name: &str| -> Result<u32, RuntimeError> {
        match name {
            "root" => Ok(0),
            "nobody" => Ok(65534),
            other => other
                .parse()
                .map_err(|_| invalid(format!("cannot resolve user or group {other:?}"))),
        }
    };
    let (image_uid, image_gid) = match image.user.as_deref() {
        None => (0, None),
        Some(user) => match user.split_once(':') {
            Some((u, g)) => (name_to_id(u)?, Some(name_to_id(g)?)),
            None => (name_to_id(user)?, None),
        },
    };
    let uid = config.run_as_user.unwrap_or(image_uid);
    // Without a group anywhere, the primary group is the uid's (0 for root, as upstream).
    let gid = config
        .run_as_group
        .or(image_gid)
        .unwrap_or(if uid == 0 { 0 } else { uid });
    Ok((uid, gid))
}

/// Parses a stop signal (`SIGTERM`, `TERM`, `15`); SIGTERM if unset or unknown.
pub fn stop_signal(image: &ImageDefaults) -> u32 {
    const SIGTERM: u32 = 15;
    let Some(name) = image.stop_signal.as_deref() else {
        return SIGTERM;
    };
    if let Ok(number) = name.parse::<u32>() {
        return number;
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<nix::sys::signal::Signal>()
        .map(|s| s as u32)
        .unwrap_or(SIGTERM)
}

fn capability(name: &str) -> Result<Capability, RuntimeError> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    serde_json::from_value(serde_json::json!(full))
        .map_err(|_| invalid(format!("unknown capability {name:?}")))
}

fn all_capabilities() -> Capabilities {
    ALL_CAPABILITIES
        .iter()
        .filter_map(|name| capability(name).ok())
        .collect()
}

/// The capability set, as containerd's CRI plugin builds it: privileged gets every one;
/// else the default set, `ALL` in add then `ALL` in drop, then the named adds and drops.
fn capabilities(config: &ContainerConfig) -> Result<Capabilities, RuntimeError> {
    if config.privileged {
        return Ok(all_capabilities());
    }
    let is_all = |c: &String| c.trim().eq_ignore_ascii_case("ALL");
    let mut caps: Capabilities = DEFAULT_CAPABILITIES.iter().copied().collect::<HashSet<_>>();
    if config.capabilities_add.iter().any(is_all) {
        caps = all_capabilities();
    }
    if config.capabilities_drop.iter().any(is_all) {
        caps.clear();
    }
    for name in config.capabilities_add.iter().filter(|c| !is_all(c)) {
        caps.insert(capability(name)?);
    }
    for name in config.capabilities_drop.iter().filter(|c| !is_all(c)) {
        caps.remove(&capability(name)?);
    }
    Ok(caps)
}

fn namespace(
    typ: LinuxNamespaceType,
    path: Option<PathBuf>,
) -> Result<LinuxNamespace, RuntimeError> {
    let builder = LinuxNamespaceBuilder::default().typ(typ);
    let builder = match path {
        Some(path) => builder.path(path),
        None => builder,
    };
    builder.build().map_err(oci_err("namespace"))
}

fn process(
    config: &ContainerConfig,
    image: &ImageDefaults,
    args: Vec<String>,
) -> Result<Process, RuntimeError> {
    let (uid, gid) = resolve_user(config, image)?;
    let mut first = Vec::new();
    if !config.hostname.is_empty() {
        first.push(format!("HOSTNAME={}", config.hostname));
    }
    if config.tty {
        first.push("TERM=xterm".to_string());
    }
    let env = merge_env(&first, &image.env, &config.env);
    let cwd = config
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| image.working_dir.clone())
        .unwrap_or_else(|| "/".to_string());
    let caps = capabilities(config)?;
    // No inheritable or ambient capabilities (as containerd): the builder's defaults would
    // raise ambient ones that are not permitted once capabilities are dropped.
    let caps = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(Capabilities::new())
        .ambient(Capabilities::new())
        .build()
        .map_err(oci_err("capabilities"))?;
    let mut user = UserBuilder::default().uid(uid).gid(gid);
    if !config.supplemental_groups.is_empty() {
        let mut groups = config.supplemental_groups.clone();
        groups.sort_unstable();
        groups.dedup();
        user = user.additional_gids(groups);
    }
    let user = user.build().map_err(oci_err("user"))?;
    let nofile = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .hard(nofile_limit())
        .soft(nofile_limit())
        .build()
        .map_err(oci_err("rlimit"))?;
    let mut process = ProcessBuilder::default()
        .terminal(config.tty)
        .user(user)
        .args(args)
        .env(env)
        .cwd(cwd)
        .capabilities(caps)
        .rlimits(vec![nofile])
        .no_new_privileges(config.no_new_privileges && !config.privileged);
    if let Some(adj) = config.oom_score_adj {
        process = process.oom_score_adj(adj);
    }
    process.build().map_err(oci_err("process"))
}

fn mounts(config: &ContainerConfig) -> Result<Vec<Mount>, RuntimeError> {
    let mut mounts: Vec<Mount> = oci_spec::runtime::get_default_mounts();
    if config.privileged {
        // Privileged containers get a writable /sys (as with Docker and CRI).
        for mount in &mut mounts {
            if mount.destination() == &PathBuf::from("/sys") {
                let options = mount
                    .options()
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|o| o != "ro")
                    .collect();
                mount.set_options(Some(options));
            }
        }
    }
    if config.host_ipc {
        // hostIPC: the host's POSIX shared memory, as upstream (the default mqueue mount
        // already shows the host's queues: it is mounted from the host's IPC namespace).
        mounts.retain(|m| m.destination().as_path() != Path::new("/dev/shm"));
        mounts.push(
            MountBuilder::default()
                .destination(PathBuf::from("/dev/shm"))
                .typ("bind")
                .source(PathBuf::from("/dev/shm"))
                .options(vec![
                    "rbind".to_string(),
                    "rprivate".to_string(),
                    "rw".to_string(),
                ])
                .build()
                .map_err(oci_err("mount"))?,
        );
    }
    // A bind mount over a default mount point replaces the default.
    mounts.retain(|m| {
        !config
            .mounts
            .iter()
            .any(|b| m.destination().as_path() == Path::new(&b.container_path))
    });
    for bind in &config.mounts {
        if !bind.container_path.starts_with('/') {
            return Err(invalid(format!(
                "mount path {:?} is not absolute",
                bind.container_path
            )));
        }
        let mode = if bind.read_only { "ro" } else { "rw" };
        mounts.push(
            MountBuilder::default()
                .destination(PathBuf::from(&bind.container_path))
                .typ("bind")
                .source(bind.host_path.clone())
                .options(vec![
                    "rbind".to_string(),
                    "rprivate".to_string(),
                    mode.to_string(),
                ])
                .build()
                .map_err(oci_err("mount"))?,
        );
    }
    Ok(mounts)
}

/// Builds the runtime spec of container `id`.
pub fn build_spec(
    id: &str,
    config: &ContainerConfig,
    image: &ImageDefaults,
) -> Result<Spec, RuntimeError> {
    let args = command_line(config, image);
    if args.is_empty() {
        return Err(invalid("no command specified"));
    }
    let process = process(config, image, args)?;

    let host_network = config.netns_path.is_none();
    let mut namespaces = vec![
        namespace(LinuxNamespaceType::Pid, None)?,
        namespace(LinuxNamespaceType::Mount, None)?,
    ];
    if !config.host_ipc {
        // The pod's IPC namespace when it has one, else a private one.
        namespaces.push(namespace(
            LinuxNamespaceType::Ipc,
            config.ipc_ns_path.clone(),
        )?);
    }
    if let Some(netns) = &config.netns_path {
        namespaces.push(namespace(LinuxNamespaceType::Network, Some(netns.clone()))?);
        // Host-network pods share the host's UTS namespace (hostname), as upstream.
        namespaces.push(namespace(LinuxNamespaceType::Uts, None)?);
    }

    let mut resources =
        LinuxResourcesBuilder::default().devices(vec![LinuxDeviceCgroupBuilder::default()
            .allow(config.privileged)
            .access("rwm")
            .build()
            .map_err(oci_err("device cgroup"))?]);
    let r = &config.resources;
    if r.cpu_shares > 0 || r.cpu_quota > 0 {
        let mut cpu = LinuxCpuBuilder::default();
        if r.cpu_shares > 0 {
            cpu = cpu.shares(r.cpu_shares);
        }
        if r.cpu_quota > 0 {
            cpu = cpu.quota(r.cpu_quota).period(if r.cpu_period > 0 {
                r.cpu_period
            } else {
                100_000
            });
        }
        resources = resources.cpu(cpu.build().map_err(oci_err("cpu"))?);
    }
    if r.memory_limit_bytes > 0 {
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(r.memory_limit_bytes)
                .build()
                .map_err(oci_err("memory"))?,
        );
    }
    let resources = resources.build().map_err(oci_err("resources"))?;

    let parent = if config.cgroup_parent.is_empty() {
        DEFAULT_CGROUP_PARENT
    } else {
        config.cgroup_parent.trim_end_matches('/')
    };
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources)
        .cgroups_path(PathBuf::from(format!("{parent}/{id}")));
    if !config.privileged {
        linux = linux
            .masked_paths(oci_spec::runtime::get_default_maskedpaths())
            .readonly_paths(oci_spec::runtime::get_default_readonly_paths());
    }
    let mut linux = linux.build().map_err(oci_err("linux"))?;
    if config.privileged {
        // The builder starts from the defaults, which mask paths.
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
    }

    let mut spec = SpecBuilder::default()
        .version("1.0.2-dev")
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(config.read_only_root_filesystem)
                .build()
                .map_err(oci_err("root"))?,
        )
        .process(process)
        .mounts(mounts(config)?)
        .linux(linux);
    if !host_network && !config.hostname.is_empty() {
        spec = spec.hostname(config.hostname.clone());
    }
    let mut spec = spec.build().map_err(oci_err("spec"))?;
    if host_network || config.hostname.is_empty() {
        // The builder starts from a default hostname; the host's is kept instead.
        spec.set_hostname(None);
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Mount as BindMount;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn image() -> ImageDefaults {
        ImageDefaults {
            entrypoint: strings(&["/entry"]),
            cmd: strings(&["cmd", "arg"]),
            env: strings(&["PATH=/bin", "A=image"]),
            ..Default::default()
        }
    }

    #[test]
    fn command_line_follows_kubernetes_merge_rules() {
        let cases: [(&[&str], &[&str], &[&str]); 4] = [
            (&[], &[], &["/entry", "cmd", "arg"]),
            (&[], &["x"], &["/entry", "x"]),
            (&["run"], &[], &["run"]),
            (&["run"], &["x", "y"], &["run", "x", "y"]),
        ];
        for (command, args, want) in cases {
            let config = ContainerConfig {
                command: strings(command),
                args: strings(args),
                ..Default::default()
            };
            assert_eq!(
                command_line(&config, &image()),
                strings(want),
                "{command:?} {args:?}"
            );
        }
    }

    #[test]
    fn empty_command_everywhere_is_an_invalid_config() {
        let config = ContainerConfig::default();
        assert!(matches!(
            build_spec("id", &config, &ImageDefaults::default()),
            Err(RuntimeError::InvalidConfig { .. })
        ));
    }

    #[test]
    fn merge_env_lets_kubernetes_win_and_keeps_order() {
        let env = merge_env(
            &strings(&["HOSTNAME=pod"]),
            &strings(&["PATH=/bin", "A=image", "B=image"]),
            &[("A".into(), "k8s".into()), ("C".into(), "x=y".into())],
        );
        assert_eq!(
            env,
            strings(&["HOSTNAME=pod", "PATH=/bin", "A=k8s", "B=image", "C=x=y"])
        );
        let env = merge_env(&[], &[], &[]);
        assert_eq!(env, strings(&[DEFAULT_PATH]));
    }

    #[test]
    fn resolve_user_prefers_security_context_then_image() {
        let config = ContainerConfig::default();
        let mut img = ImageDefaults::default();
        assert_eq!(resolve_user(&config, &img).expect("root"), (0, 0));
        img.user = Some("1000:2000".into());
        assert_eq!(resolve_user(&config, &img).expect("numeric"), (1000, 2000));
        img.user = Some("nobody".into());
        assert_eq!(resolve_user(&config, &img).expect("nobody"), (65534, 65534));
        let config = ContainerConfig {
            run_as_user: Some(7),
            ..Default::default()
        };
        assert_eq!(resolve_user(&config, &img).expect("override"), (7, 7));
        img.user = Some("www-data".into());
        assert!(resolve_user(&ContainerConfig::default(), &img).is_err());
    }

    #[test]
    fn stop_signal_parses_names_and_numbers() {
        let with = |s: &str| ImageDefaults {
            stop_signal: Some(s.to_string()),
            ..Default::default()
        };
        assert_eq!(stop_signal(&ImageDefaults::default()), 15);
        assert_eq!(stop_signal(&with("SIGQUIT")), 3);
        assert_eq!(stop_signal(&with("INT")), 2);
        assert_eq!(stop_signal(&with("9")), 9);
        assert_eq!(stop_signal(&with("bogus")), 15);
    }

    #[test]
    fn spec_joins_the_pod_netns_and_has_binds_cgroups_and_limits() {
        let config = ContainerConfig {
            name: "web".into(),
            hostname: "web-1".into(),
            netns_path: Some(PathBuf::from("/var/run/netns/kube-abc")),
            mounts: vec![BindMount {
                host_path: PathBuf::from("/host/data"),
                container_path: "/data".into(),
                read_only: true,
            }],
            cgroup_parent: "/kubepods/besteffort/pod123".into(),
            resources: crate::runtime::Resources {
                cpu_shares: 512,
                cpu_quota: 50_000,
                cpu_period: 0,
                memory_limit_bytes: 64 << 20,
            },
            ..Default::default()
        };
        let spec = build_spec("cid", &config, &image()).expect("spec");
        let json = serde_json::to_value(&spec).expect("json");
        assert_eq!(
            json["process"]["args"],
            serde_json::json!(["/entry", "cmd", "arg"])
        );
        assert_eq!(json["root"]["path"], "rootfs");
        assert_eq!(json["hostname"], "web-1");
        assert_eq!(
            json["linux"]["cgroupsPath"],
            "/kubepods/besteffort/pod123/cid"
        );
        assert_eq!(json["linux"]["resources"]["cpu"]["shares"], 512);
        assert_eq!(json["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(json["linux"]["resources"]["cpu"]["period"], 100_000);
        assert_eq!(json["linux"]["resources"]["memory"]["limit"], 64 << 20);
        let namespaces = json["linux"]["namespaces"].as_array().expect("namespaces");
        let network = namespaces
            .iter()
            .find(|n| n["type"] == "network")
            .expect("network ns");
        assert_eq!(network["path"], "/var/run/netns/kube-abc");
        for typ in ["pid", "ipc", "mount", "uts"] {
            assert!(namespaces.iter().any(|n| n["type"] == typ), "{typ}");
        }
        let mounts = json["mounts"].as_array().expect("mounts");
        let data = mounts
            .iter()
            .find(|m| m["destination"] == "/data")
            .expect("bind");
        assert_eq!(data["source"], "/host/data");
        assert_eq!(
            data["options"],
            serde_json::json!(["rbind", "rprivate", "ro"])
        );
        for dest in [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup",
        ] {
            assert!(mounts.iter().any(|m| m["destination"] == dest), "{dest}");
        }
        let caps = json["process"]["capabilities"]["bounding"]
            .as_array()
            .expect("caps");
        assert_eq!(caps.len(), 14);
        assert!(caps.contains(&serde_json::json!("CAP_NET_BIND_SERVICE")));
        assert!(json["linux"]["maskedPaths"]
            .as_array()
            .expect("masked")
            .contains(&serde_json::json!("/proc/kcore")));
        let env = json["process"]["env"].as_array().expect("env");
        assert!(env.contains(&serde_json::json!("HOSTNAME=web-1")));
    }

    #[test]
    fn host_network_spec_has_no_network_or_uts_namespace() {
        let config = ContainerConfig {
            command: strings(&["sh"]),
            hostname: "node".into(),
            ..Default::default()
        };
        let spec = build_spec("cid", &config, &ImageDefaults::default()).expect("spec");
        let json = serde_json::to_value(&spec).expect("json");
        let namespaces = json["linux"]["namespaces"].as_array().expect("namespaces");
        assert!(!namespaces
            .iter()
            .any(|n| n["type"] == "network" || n["type"] == "uts"));
        assert!(json.get("hostname").is_none() || json["hostname"].is_null());
        assert_eq!(json["linux"]["cgroupsPath"], "/kubepods/cid");
    }

    #[test]
    fn privileged_spec_gets_all_capabilities_and_no_masked_paths() {
        let config = ContainerConfig {
            command: strings(&["sh"]),
            privileged: true,
            ..Default::default()
        };
        let spec = build_spec("cid", &config, &ImageDefaults::default()).expect("spec");
        let json = serde_json::to_value(&spec).expect("json");
        let caps = json["process"]["capabilities"]["bounding"]
            .as_array()
            .expect("caps");
        assert!(caps.len() >= 38, "{}", caps.len());
        assert!(caps.contains(&serde_json::json!("CAP_SYS_ADMIN")));
        assert!(json["linux"]["maskedPaths"].is_null());
    }

    #[test]
    fn security_context_settings_reach_the_spec() {
        let config = ContainerConfig {
            command: strings(&["sh"]),
            run_as_user: Some(1000),
            run_as_group: Some(3000),
            supplemental_groups: vec![2000, 1234, 2000],
            read_only_root_filesystem: true,
            capabilities_add: strings(&["NET_ADMIN", "CAP_SYS_TIME"]),
            capabilities_drop: strings(&["chown", "KILL"]),
            no_new_privileges: true,
            oom_score_adj: Some(-997),
            ..Default::default()
        };
        let spec = build_spec("cid", &config, &ImageDefaults::default()).expect("spec");
        let json = serde_json::to_value(&spec).expect("json");
        assert_eq!(json["process"]["user"]["uid"], 1000);
        assert_eq!(json["process"]["user"]["gid"], 3000);
        assert_eq!(
            json["process"]["user"]["additionalGids"],
            serde_json::json!([1234, 2000])
        );
        assert_eq!(json["root"]["readonly"], true);
        assert_eq!(json["process"]["noNewPrivileges"], true);
        assert_eq!(json["process"]["oomScoreAdj"], -997);
        assert_eq!(
            json["process"]["capabilities"]["ambient"],
            serde_json::json!([])
        );
        assert_eq!(
            json["process"]["capabilities"]["inheritable"],
            serde_json::json!([])
        );
        for set in ["bounding", "effective", "permitted"] {
            let caps = json["process"]["capabilities"][set]
                .as_array()
                .expect("caps");
            assert_eq!(caps.len(), 14, "{set}");
            for name in ["CAP_NET_ADMIN", "CAP_SYS_TIME", "CAP_SETUID"] {
                assert!(caps.contains(&serde_json::json!(name)), "{set} {name}");
            }
            for name in ["CAP_CHOWN", "CAP_KILL"] {
                assert!(!caps.contains(&serde_json::json!(name)), "{set} {name}");
            }
        }
    }

    #[test]
    fn defaults_keep_a_writable_root_and_privilege_escalation() {
        let config = ContainerConfig {
            command: strings(&["sh"]),
            ..Default::default()
        };
        let json = serde_json::to_value(
            build_spec("cid", &config, &ImageDefaults::default()).expect("spec"),
        )
        .expect("json");
        assert_eq!(json["root"]["readonly"], false);
        assert_eq!(json["process"]["noNewPrivileges"], false);
        assert!(json["process"]["oomScoreAdj"].is_null());
        assert!(json["process"]["user"]["additionalGids"].is_null());
    }

    #[test]
    fn drop_all_then_add_keeps_only_the_added_capabilities() {
        let caps = |add: &[&str], drop: &[&str]| {
            let config = ContainerConfig {
                capabilities_add: strings(add),
                capabilities_drop: strings(drop),
                ..Default::default()
            };
            let mut names: Vec<String> = capabilities(&config)
                .expect("caps")
                .iter()
                .map(|c| {
                    serde_json::to_value(c)
                        .expect("json")
                        .as_str()
                        .expect("str")
                        .to_string()
                })
                .collect();
            names.sort();
            names
        };
        assert_eq!(
            caps(&["NET_BIND_SERVICE"], &["ALL"]),
            vec!["CAP_NET_BIND_SERVICE"]
        );
        let all_but_chown = caps(&["ALL"], &["CHOWN"]);
        assert_eq!(all_but_chown.len(), ALL_CAPABILITIES.len() - 1);
        assert!(!all_but_chown.contains(&"CAP_CHOWN".to_string()));
        let config = ContainerConfig {
            capabilities_add: strings(&["NOT_A_CAP"]),
            ..Default::default()
        };
        assert!(matches!(
            capabilities(&config),
            Err(RuntimeError::InvalidConfig { .. })
        ));
    }

    #[test]
    fn containers_join_the_pod_ipc_namespace_or_the_hosts() {
        let ipc_of = |config: &ContainerConfig| {
            let json = serde_json::to_value(
                build_spec("cid", config, &ImageDefaults::default()).expect("spec"),
            )
            .expect("json");
            let namespaces = json["linux"]["namespaces"].as_array().expect("ns").clone();
            let mounts = json["mounts"].as_array().expect("mounts").clone();
            (
                namespaces.into_iter().find(|n| n["type"] == "ipc"),
                mounts
                    .into_iter()
                    .find(|m| m["destination"] == "/dev/shm")
                    .expect("shm"),
            )
        };
        let mut config = ContainerConfig {
            command: strings(&["sh"]),
            ipc_ns_path: Some(PathBuf::from("/var/lib/kubelet/ipc/kube-abc")),
            ..Default::default()
        };
        let (ipc, shm) = ipc_of(&config);
        assert_eq!(
            ipc.expect("ipc namespace")["path"],
            "/var/lib/kubelet/ipc/kube-abc"
        );
        assert_eq!(shm["type"], "tmpfs");
        config.ipc_ns_path = None;
        let (ipc, _) = ipc_of(&config);
        assert!(ipc.expect("private ipc namespace")["path"].is_null());
        config.host_ipc = true;
        let (ipc, shm) = ipc_of(&config);
        assert!(ipc.is_none());
        assert_eq!(shm["source"], "/dev/shm");
        assert_eq!(shm["type"], "bind");
    }
}
