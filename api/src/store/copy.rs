//! Copying every row of one store into another, empty one (`trousse store
//! copy`: a SQLite deployment moving to PostgreSQL), in one transaction of
//! the destination: all of it lands, or none.

use sqlx::{any::AnyRow, Column, Row};

use super::Store;
use crate::error::ApiError;

/// The tables rows are copied from first: those others refer to.
const FIRST: [&str; 4] = [
    "environments",
    "environment_digests",
    "builds",
    "build_events",
];

/// What a copy moved.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CopiedRows {
    /// Rows per table, in the order copied.
    pub tables: Vec<(String, u64)>,
}

/// How a destination column takes a value.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Integer,
    Real,
    Text,
}

impl Store {
    /// Fails unless this store holds no environment: what a copy goes into.
    pub async fn ensure_empty(&self) -> Result<(), ApiError> {
        let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM environments")
            .fetch_one(&self.pool)
            .await?;
        if existing > 0 {
            return Err(ApiError::Conflict(format!(
                "the destination already holds {existing} environments: copy into an empty database"
            )));
        }
        Ok(())
    }

    /// Copies every row of this store into `to`, which must hold no environment yet.
    pub async fn copy_rows_to(&self, to: &Store) -> Result<CopiedRows, ApiError> {
        to.ensure_empty().await?;
        let mut copied = CopiedRows::default();
        let mut tx = to.begin_write().await?;
        for table in self.tables().await? {
            let kinds = to.column_kinds(&table).await?;
            let rows = sqlx::query(&format!("SELECT * FROM {table}"))
                .fetch_all(&self.pool)
                .await?;
            for row in &rows {
                insert(&mut tx, &table, &kinds, row).await?;
            }
            copied.tables.push((table, rows.len() as u64));
        }
        if to.is_shared() {
            // ids copied as they were: the sequence goes on after them
            sqlx::query(
                "SELECT setval(pg_get_serial_sequence('xapi_queue', 'id'),
                   COALESCE((SELECT MAX(id) FROM xapi_queue), 0) + 1, false)",
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(copied)
    }

    /// This store's tables but the migrations' own, those others refer to first.
    async fn tables(&self) -> Result<Vec<String>, ApiError> {
        let sql = if self.is_shared() {
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = current_schema() AND table_name NOT LIKE '\\_sqlx%' ESCAPE '\\'"
        } else {
            "SELECT name FROM sqlite_master WHERE type = 'table'
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_sqlx%' ESCAPE '\\'"
        };
        let mut names: Vec<String> = sqlx::query_scalar(sql).fetch_all(&self.pool).await?;
        names.sort_by_key(|n| {
            (
                FIRST.iter().position(|f| f == n).unwrap_or(FIRST.len()),
                n.clone(),
            )
        });
        Ok(names)
    }

    /// The columns of a table of this store and how each takes a value.
    async fn column_kinds(&self, table: &str) -> Result<Vec<(String, Kind)>, ApiError> {
        let sql = if self.is_shared() {
            "SELECT column_name::text, data_type::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position"
        } else {
            "SELECT name, type FROM pragma_table_info($1)"
        };
        let columns: Vec<(String, String)> = sqlx::query_as(sql)
            .bind(table)
            .fetch_all(&self.pool)
            .await?;
        if columns.is_empty() {
            return Err(ApiError::Internal(format!(
                "the destination has no table {table}: is it migrated to this version?"
            )));
        }
        Ok(columns
            .into_iter()
            .map(|(name, kind)| {
                let kind = kind.to_ascii_lowercase();
                let kind = if kind.contains("int") {
                    Kind::Integer
                } else if kind.contains("double") || kind.contains("real") {
                    Kind::Real
                } else {
                    Kind::Text
                };
                (name, kind)
            })
            .collect())
    }
}

/// Inserts one source row into the destination's table, each value as its column takes it.
async fn insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    table: &str,
    kinds: &[(String, Kind)],
    row: &AnyRow,
) -> Result<(), ApiError> {
    let names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
    let placeholders: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        names.join(", "),
        placeholders.join(", ")
    );
    let mut query = sqlx::query(&sql);
    for (index, name) in names.iter().enumerate() {
        let kind = kinds
            .iter()
            .find(|(column, _)| column == name)
            .map(|(_, kind)| *kind)
            .ok_or_else(|| {
                ApiError::Internal(format!("the destination's {table} has no column {name}"))
            })?;
        query = match kind {
            Kind::Integer => query.bind(row.try_get::<Option<i64>, _>(index)?),
            Kind::Real => query.bind(row.try_get::<Option<f64>, _>(index)?),
            Kind::Text => query.bind(row.try_get::<Option<String>, _>(index)?),
        };
    }
    query.execute(&mut **tx).await?;
    Ok(())
}
