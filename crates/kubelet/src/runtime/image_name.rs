//! Image reference normalisation, as Docker and containerd's CRI plugin do it:
//! `busybox:1.35` -> `docker.io/library/busybox:1.35`, `nginx` -> `docker.io/library/nginx:latest`.

/// The default registry for names without a domain.
const DEFAULT_DOMAIN: &str = "docker.io";

/// Normalises an image reference to its fully qualified form.
///
/// A first path component counts as a registry domain when it contains `.` or `:` or is
/// `localhost`; otherwise the name lives on `docker.io`, and single-component names there get the
/// `library/` prefix. A reference without tag or digest gets `:latest`.
pub fn normalize_image(image: &str) -> String {
    let image = image.trim();
    let (domain, remainder) = match image.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, rest.to_string())
        }
        _ => (DEFAULT_DOMAIN, image.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        DEFAULT_DOMAIN
    } else {
        domain
    };
    let remainder = if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
        format!("library/{remainder}")
    } else {
        remainder
    };
    let has_digest = remainder.contains('@');
    let last_component = remainder.rsplit('/').next().unwrap_or(&remainder);
    let has_tag = last_component.contains(':');
    if has_digest || has_tag {
        format!("{domain}/{remainder}")
    } else {
        format!("{domain}/{remainder}:latest")
    }
}

/// Whether the reference names the `latest` tag (explicitly or by default), which makes
/// Kubernetes default the pull policy to `Always`.
pub fn is_latest(image: &str) -> bool {
    let normalized = normalize_image(image);
    !normalized.contains('@') && normalized.ends_with(":latest")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_image_qualifies_short_names_like_docker() {
        let cases = [
            ("busybox:1.35", "docker.io/library/busybox:1.35"),
            ("busybox", "docker.io/library/busybox:latest"),
            ("library/busybox:1.35", "docker.io/library/busybox:1.35"),
            ("docker.io/busybox:1.35", "docker.io/library/busybox:1.35"),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
            ),
            (
                "docker.io/library/busybox:1.35",
                "docker.io/library/busybox:1.35",
            ),
            ("someone/app:v1", "docker.io/someone/app:v1"),
            ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"),
            ("localhost/app", "localhost/app:latest"),
            ("127.0.0.1:5000/busybox", "127.0.0.1:5000/busybox:latest"),
            ("127.0.0.1:5000/busybox:1.35", "127.0.0.1:5000/busybox:1.35"),
            (
                "busybox@sha256:abcd",
                "docker.io/library/busybox@sha256:abcd",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_image(input), want, "input {input}");
        }
    }

    #[test]
    fn is_latest_is_true_only_for_latest_or_untagged() {
        assert!(is_latest("busybox"));
        assert!(is_latest("busybox:latest"));
        assert!(!is_latest("busybox:1.35"));
        assert!(!is_latest("busybox@sha256:abcd"));
        assert!(!is_latest("127.0.0.1:5000/busybox:1.35"));
    }
}
