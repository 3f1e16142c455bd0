//! Static bearer tokens (`--token-auth-file`): a CSV file of `token,user,uid` with an optional
//! fourth column of groups (`"group1,group2"`), as upstream reads it. Lines starting with `#`
//! and blank lines are skipped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::User;

/// Why the token file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// Reading failed.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A line has fewer than three columns or an empty token/user.
    #[error("{path}:{line}: token file lines need token,user,uid[,\"groups\"]")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
}

/// Splits one CSV line (double quotes group commas; `""` inside quotes is a quote).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// The users of a token file, by token.
#[derive(Clone, Debug, Default)]
pub struct TokenFile {
    users: HashMap<String, User>,
}

impl TokenFile {
    /// Parses the text of a token file.
    pub fn parse(path: &Path, text: &str) -> Result<Self, TokenFileError> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let fields = csv_fields(trimmed);
            let bad = || TokenFileError::Line {
                path: path.to_path_buf(),
                line: i + 1,
            };
            if fields.len() < 3 || fields[0].is_empty() || fields[1].is_empty() {
                return Err(bad());
            }
            let mut groups: Vec<String> = fields
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            if !groups.iter().any(|g| g == "system:authenticated") {
                groups.push("system:authenticated".into());
            }
            if users.contains_key(&fields[0]) {
                tracing::warn!(path = %path.display(), line = i + 1, "duplicate token, keeping the first");
                continue;
            }
            users.insert(
                fields[0].clone(),
                User {
                    name: fields[1].clone(),
                    uid: fields[2].clone(),
                    groups,
                    ..Default::default()
                },
            );
        }
        Ok(TokenFile { users })
    }

    /// Reads a token file.
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// The user of `token`.
    pub fn user(&self, token: &str) -> Option<&User> {
        self.users.get(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_users_with_groups() {
        let text = "# comment\nsecret1,alice,1001,\"dev,ops\"\n\nsecret2,bob,1002\n";
        let f = TokenFile::parse(Path::new("t.csv"), text).expect("parse");
        let alice = f.user("secret1").expect("alice");
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.uid, "1001");
        assert_eq!(alice.groups, vec!["dev", "ops", "system:authenticated"]);
        assert_eq!(
            f.user("secret2").expect("bob").groups,
            vec!["system:authenticated"]
        );
        assert!(f.user("secret3").is_none());
    }

    #[test]
    fn short_lines_are_errors() {
        assert!(TokenFile::parse(Path::new("t.csv"), "tok,user\n").is_err());
        assert!(TokenFile::parse(Path::new("t.csv"), ",user,1\n").is_err());
    }
}
