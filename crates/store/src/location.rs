//! Where the store lives, as the configuration names it: an SQLite file in
//! the data directory (the default) or a PostgreSQL URL.

use std::path::{Path, PathBuf};

use crate::StoreError;

/// Where the store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// An SQLite file in this data directory: one node (the default).
    Sqlite(PathBuf),
    /// A PostgreSQL database (`postgres://user:password@host:port/db?...`),
    /// which any number of flowgate processes may share.
    Postgres(String),
}

impl StoreLocation {
    /// The location a configured `url` names: empty (or `sqlite`) means
    /// SQLite in `data_dir`; `postgres://` and `postgresql://` URLs name a
    /// PostgreSQL database. Anything else is refused.
    pub fn from_url(url: &str, data_dir: &Path) -> Result<StoreLocation, StoreError> {
        let url = url.trim();
        if url.is_empty() || url == "sqlite" {
            return Ok(StoreLocation::Sqlite(data_dir.to_path_buf()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(StoreLocation::Postgres(url.to_string()));
        }
        Err(StoreError::BadUrl {
            url: redact(url),
            reason: "expected postgres://… (or nothing, for SQLite in the data directory)".into(),
        })
    }

    /// A description for logs and messages, without any password.
    pub fn describe(&self) -> String {
        match self {
            StoreLocation::Sqlite(dir) => format!("SQLite in {}", dir.display()),
            StoreLocation::Postgres(url) => format!("PostgreSQL at {}", redact(url)),
        }
    }
}

/// `url` with the password of its user info (`user:password@`) replaced.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_select_the_backend_and_passwords_stay_out_of_messages() {
        let dir = Path::new("/var/lib/flowgate");
        assert_eq!(
            StoreLocation::from_url("", dir).ok(),
            Some(StoreLocation::Sqlite(dir.into()))
        );
        assert_eq!(
            StoreLocation::from_url("sqlite", dir).ok(),
            Some(StoreLocation::Sqlite(dir.into()))
        );
        let pg = StoreLocation::from_url("postgres://fg:s3cret@db:5432/flowgate?sslmode=disable", dir);
        let Ok(pg) = pg else {
            panic!("a postgres URL is refused")
        };
        assert_eq!(
            pg.describe(),
            "PostgreSQL at postgres://fg:***@db:5432/flowgate?sslmode=disable"
        );
        assert!(StoreLocation::from_url("postgresql:///fg?host=/run/postgresql", dir).is_ok());
        let err = StoreLocation::from_url("mysql://u:pw@h/db", dir).map(|_| ());
        assert!(matches!(&err, Err(StoreError::BadUrl { url, .. }) if !url.contains("pw")));
    }
}
