//! Writing generated files: certificates and public keys 0644, private keys and kubeconfigs 0600
//! (kubeconfigs embed a key), each written atomically through a temporary file.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Mode for files that hold a private key.
pub const PRIVATE: u32 = 0o600;
/// Mode for public material (certificates, public keys).
pub const PUBLIC: u32 = 0o644;

/// Errors while writing or reading generated files.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The parent directory could not be created.
    #[error("creating directory {path}: {source}")]
    CreateDir {
        /// Directory that failed.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// File that failed.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// File that failed.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// Creates `dir` and its parents.
pub fn ensure_dir(dir: &Path) -> Result<(), FileError> {
    fs::create_dir_all(dir).map_err(|source| FileError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes `contents` to `path` with `mode`, through a temporary file and a rename so that a reader
/// never sees half a file. Creates the parent directory.
pub fn write(path: &Path, contents: &[u8], mode: u32) -> Result<(), FileError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        ensure_dir(parent)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let write_err = |source| FileError::Write {
        path: path.to_path_buf(),
        source,
    };
    // A leftover from a crashed run may carry another mode; start from a fresh file.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(write_err(source)),
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(write_err)?;
    file.write_all(contents).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    fs::rename(&tmp, path).map_err(write_err)
}

/// Reads a whole file as text.
pub fn read(path: &Path) -> Result<String, FileError> {
    fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// True when every path exists (so a generation step can be skipped).
pub fn all_exist(paths: &[&Path]) -> bool {
    paths.iter().all(|p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn write_creates_parents_and_sets_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/key.pem");
        write(&path, b"secret", PRIVATE).expect("write");
        let meta = fs::metadata(&path).expect("metadata");
        assert_eq!(meta.permissions().mode() & 0o777, PRIVATE);
        assert_eq!(read(&path).expect("read"), "secret");
        assert!(all_exist(&[&path]));
        assert!(!all_exist(&[&path, &dir.path().join("missing")]));
    }
}
