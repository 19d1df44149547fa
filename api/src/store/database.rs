//! Which database a store opens: SQLite in a data directory, or a PostgreSQL
//! server by URL (whose password is never shown).

use std::path::PathBuf;

use crate::{auth::Secret, error::ApiError};

/// Where the service's rows live.
#[derive(Debug, Clone)]
pub enum Database {
    /// `trousse.db` in this data directory (the embedded default).
    Sqlite(PathBuf),
    /// A PostgreSQL server, shared by replicas and workers.
    Postgres(Secret),
}

impl Database {
    /// `url` when given (`postgres://…`), else SQLite in `data_dir`.
    pub fn new(url: Option<&str>, data_dir: PathBuf) -> Result<Self, ApiError> {
        let Some(url) = url else {
            return Ok(Database::Sqlite(data_dir));
        };
        let parsed = url::Url::parse(url).map_err(|e| {
            ApiError::bad_request(
                "invalid_database",
                format!("--database is not a URL ({e}): give postgres://USER@HOST:PORT/NAME"),
            )
        })?;
        match parsed.scheme() {
            "postgres" | "postgresql" => Ok(Database::Postgres(Secret::new(url.to_string()))),
            other => Err(ApiError::bad_request(
                "invalid_database",
                format!(
                    "--database takes a postgres:// URL, not {other}:// (SQLite is the default, in --data-dir)"
                ),
            )),
        }
    }

    /// Removes the URL's password from a text (an error that quotes it).
    pub(crate) fn scrub(&self, text: &str) -> String {
        match self {
            Database::Postgres(url) => match url::Url::parse(url.expose()) {
                Ok(parsed) => match parsed.password() {
                    Some(password) if !password.is_empty() => text.replace(password, "***"),
                    _ => text.to_string(),
                },
                Err(_) => text.replace(url.expose(), "the database URL"),
            },
            Database::Sqlite(_) => text.to_string(),
        }
    }
}

impl std::fmt::Display for Database {
    /// The file, or the URL without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(dir) => write!(f, "{}", dir.join("trousse.db").display()),
            Database::Postgres(url) => match url::Url::parse(url.expose()) {
                Ok(mut parsed) => {
                    if parsed.password().is_some() {
                        let _ = parsed.set_password(Some("***"));
                    }
                    parsed.set_query(None);
                    write!(f, "{parsed}")
                }
                Err(_) => f.write_str("postgres://…"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_url_is_shown_without_its_password() {
        let db = Database::new(
            Some("postgres://trousse:hunter2@db:5432/trousse?sslmode=require"),
            "/d".into(),
        )
        .unwrap();
        assert_eq!(db.to_string(), "postgres://trousse:***@db:5432/trousse");
        assert!(!format!("{db:?}").contains("hunter2"));
        assert_eq!(db.scrub("password hunter2 refused"), "password *** refused");
    }

    #[test]
    fn other_schemes_are_refused_with_what_to_give() {
        let e = Database::new(Some("mysql://x@y/z"), "/d".into()).unwrap_err();
        assert!(e.to_string().contains("postgres://"), "{e}");
        assert!(matches!(
            Database::new(None, "/d".into()).unwrap(),
            Database::Sqlite(_)
        ));
    }
}
