//! Process resource limits a server component sets for itself at start.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Raises the soft limit of open files to the hard limit, as every upstream component gets from
/// the Go runtime: a server holding one connection per watcher (an apiserver with thousands of
/// kubelets) or per pod would otherwise run out at the usual soft limit of 1024. Returns the
/// limit now in force; a failure leaves the limit as it was and is logged.
pub fn raise_open_files() -> u64 {
    raise_open_files_to(None)
}

/// [`raise_open_files`], and first the hard limit to `hard` when the process may (as root):
/// for a harness whose children inherit the limit.
pub fn raise_open_files_to(hard: Option<u64>) -> u64 {
    let (soft, max) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(error) => {
            tracing::warn!(%error, "reading the open files limit failed");
            return 0;
        }
    };
    if let Some(hard) = hard.filter(|&h| h > max) {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => return hard,
            Err(error) => tracing::debug!(%error, hard, "raising the hard open files limit failed"),
        }
    }
    if soft >= max {
        return soft;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, max, max) {
        Ok(()) => max,
        Err(error) => {
            tracing::warn!(%error, soft, hard = max, "raising the open files limit failed");
            soft
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        // Start below the hard limit (each test runs in its own process under nextest), so that
        // a raise that did nothing shows.
        let low = hard.min(1024) / 2;
        setrlimit(Resource::RLIMIT_NOFILE, low, hard).expect("lower the soft limit");
        assert_eq!(raise_open_files(), hard);
        assert_eq!(
            getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit"),
            (hard, hard)
        );
    }
}
