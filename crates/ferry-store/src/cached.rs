//! Statements through the connection's cache of prepared statements.
//!
//! `Connection::execute` and `query_row` parse their SQL on every call. A
//! transfer-log row per uploaded file runs a dozen statements (the row, its
//! triggers, route matching, notices), and parsing them again was 7 % of
//! the server's CPU in a small-file upload; these keep each parsed once per
//! connection.

use rusqlite::{Connection, Params, Row};

/// Statements kept parsed per connection: more than the store has.
pub(crate) const CAPACITY: usize = 512;

/// `execute` and `query_row` through the statement cache.
pub(crate) trait Cached {
    /// Like `Connection::execute`.
    fn exec<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    /// Like `Connection::query_row`.
    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn exec<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}
