//! Chunk extraction: a chunk's rows streamed and encoded into binary COPY blocks with their
//! canonical row hashes.

use bytes::Bytes;
use mysql::prelude::Queryable;
use mysql::{Params, Row, Value};

use super::keys::{chunk_where, order_by, value_text};
use super::set_aside::{SetAside, SET_ASIDE_ABOVE};
use super::types::{column_conv, conv_fn, ColPlan, Conv, Problem, TypeInfo};
use super::{failed, my_table, start_snapshot, MySource};
use crate::canonical::{DigestBuilder, RowEncoder};
use crate::config::ZeroDates;
use crate::copy_format::{add_row, ChunkSummary, CopyEncoder, RowSink};
use crate::error::{Error, ErrorCode, Result};
use crate::pipeline::Permit;
use crate::plan::Chunk;
use crate::schema::{quote_ident, Column, Table};
use crate::source::Block;
use crate::wait::Waiting;

impl MySource {
    /// Streams one chunk's rows (`SELECT … WHERE key in [lo, hi) ORDER BY key`, binary
    /// protocol, rows consumed as they arrive) into binary COPY blocks of at least
    /// `block_bytes`, hashing each row. Returns the chunk's rows, COPY bytes and digest.
    pub fn extract_chunk(
        &mut self,
        table: &Table,
        chunk: &Chunk,
        block_bytes: usize,
        on_block: impl FnMut(Block) -> Result<bool>,
    ) -> Result<ChunkSummary> {
        self.stream_chunk(table, chunk, None, block_bytes, on_block, None)
    }

    /// Reads one chunk for verification: its summary and, with `on_row`, every row's values
    /// (long ones as stand-ins) and hash, as they are read (no COPY data is kept).
    /// `pace(rows, bytes)` is called for every block read, to hold the read to a rate.
    /// `filter` (an SQL condition) leaves rows out.
    pub fn scan_range(
        &mut self,
        table: &Table,
        chunk: &Chunk,
        filter: Option<&str>,
        on_row: Option<RowSink<'_>>,
        pace: &mut dyn FnMut(u64, u64) -> Result<()>,
    ) -> Result<ChunkSummary> {
        let on_block = |block: Block| pace(block.rows, block.bytes.len() as u64).map(|()| true);
        self.stream_chunk(table, chunk, filter, 1 << 20, on_block, on_row)
    }

    /// One chunk's rows, encoded for COPY (blocks to `on_block` with their row counts) and
    /// hashed; with `capture`, every row's canonical bytes and hash are kept as well.
    ///
    /// A table with wide columns (see [`SetAside`]) has its huge rows set aside by the streaming
    /// query and read whole afterwards, one by one, in the same snapshot: the chunk runs in a
    /// consistent-snapshot transaction of its own unless the connection is already in one
    /// (`--consistent`).
    fn stream_chunk(
        &mut self,
        table: &Table,
        chunk: &Chunk,
        filter: Option<&str>,
        block_bytes: usize,
        mut on_block: impl FnMut(Block) -> Result<bool>,
        capture: Option<RowSink<'_>>,
    ) -> Result<ChunkSummary> {
        let what = format!("reading {}", table.name);
        let columns: Vec<&Column> = table.copied_columns().collect();
        let mut plans = Vec::with_capacity(columns.len());
        let mut select = Vec::with_capacity(columns.len());
        for col in &columns {
            let (conv, expr) = column_conv(col).map_err(|e| Error::input(format!("{}: {e}", table.name)))?;
            let info = TypeInfo::parse(&col.source_type);
            plans.push(ColPlan {
                name: col.name.clone(),
                conv: conv_fn(conv),
                width: info.arg(0).unwrap_or(1),
                empty_label: conv == Conv::Enum && info.labels().iter().any(|l| l.is_empty()),
            });
            select.push(expr);
        }
        // Where the key's values sit in each row, for error messages and set-aside rows.
        let key_pos: Vec<usize> =
            table.key_columns().iter().filter_map(|k| columns.iter().position(|c| c.name == k.name)).collect();
        let (mut cond, params) =
            chunk_where(table, &chunk.lo, &chunk.hi).map_err(|e| Error::input(format!("{what}: {e}")))?;
        if let Some(filter) = filter {
            cond = if cond.is_empty() { format!(" WHERE ({filter})") } else { format!("{cond} AND ({filter})") };
        }
        let params = if params.is_empty() { Params::Empty } else { Params::Positional(params) };
        let aside = SetAside::plan(table, &columns, &select, &key_pos);
        let list = aside.as_ref().map_or(&select, |a| &a.streamed);
        let sql = format!("SELECT {} FROM {}{cond}{}", list.join(", "), my_table(&table.name), order_by(table));
        let query = ChunkQuery { table, columns, key_pos, what };
        let mut rows = ChunkRows::new(plans, self.options.zero_dates, block_bytes, capture);

        let Some(aside) = aside else {
            self.read_streamed(&query, &sql, params, &mut rows, &mut on_block, None)?;
            return rows.finish(table, chunk, on_block);
        };
        let own_snapshot = !self.in_snapshot;
        if own_snapshot {
            self.short(&format!("{}: starting a snapshot", query.what), start_snapshot)?;
        }
        let read = self.read_streamed(&query, &sql, params, &mut rows, &mut on_block, Some(&aside)).and_then(|keys| {
            let huge = !keys.is_empty();
            self.read_set_aside(&query, &aside, keys, &mut rows, &mut on_block).map(|()| huge)
        });
        if own_snapshot {
            let ended = self.short("ending a snapshot", |conn| conn.query_drop("COMMIT"));
            if read? {
                // The driver keeps the read buffer that grew to hold the huge rows for as long
                // as the connection lives; a fresh connection gives it back. When none can be
                // had now, this one goes on, buffer and all.
                if let Some(fresh) = ended.as_ref().ok().and_then(|()| MySource::connect(&self.ep).ok()) {
                    *self = fresh;
                }
            }
            ended?;
        } else {
            read?;
        }
        rows.finish(table, chunk, on_block)
    }

    /// Runs a chunk's streaming query and encodes its rows as they arrive. With `aside`, rows
    /// whose wide values exceed [`SET_ASIDE_ABOVE`] are not encoded: their key parameters and
    /// sizes are returned, in key order.
    fn read_streamed(
        &mut self,
        query: &ChunkQuery<'_>,
        sql: &str,
        params: Params,
        rows: &mut ChunkRows<'_>,
        on_block: &mut impl FnMut(Block) -> Result<bool>,
        aside: Option<&SetAside>,
    ) -> Result<Vec<(Vec<Value>, u64)>> {
        let endpoint = self.endpoint.clone();
        // Registered while it waits for rows; handing a block on is not waiting for the server.
        let waiting = Waiting::begin(&endpoint, &query.what, true);
        let mut on_block = |block: Block| {
            waiting.pause();
            let more = on_block(block);
            waiting.resume();
            more
        };
        let mut result = match self.conn.exec_iter(sql, params) {
            Ok(r) => r,
            Err(e) => return Err(failed(&self.ep, self.id, &query.what, e)),
        };
        let mut set_aside = Vec::new();
        let mut read_error = None;
        let mut failure: Option<String> = None;
        let mut seen = 0u32;
        for row in result.by_ref() {
            let row = match row {
                Ok(r) => r,
                Err(e) => {
                    read_error = Some(e);
                    break;
                }
            };
            // Cheaper than a clock read per row; the socket's read timeout is the real bound.
            seen = seen.wrapping_add(1);
            if seen % 256 == 0 {
                waiting.heard();
            }
            if let Some(aside) = aside {
                let size = aside.size(&row, rows.plans.len());
                if size > SET_ASIDE_ABOVE {
                    set_aside.push((aside.key_params(&row)?, size));
                    continue;
                }
            }
            if let Err((i, problem)) = rows.add(&row) {
                failure = Some(query.failure(&row, &rows.plans[i], problem));
                break;
            }
            rows.flush(&mut on_block, None)?;
            if rows.stopped {
                break;
            }
        }
        drop(result);
        drop(waiting);
        if let Some(e) = read_error {
            return Err(failed(&self.ep, self.id, &query.what, e));
        }
        if let Some(detail) = failure {
            return Err(Error::Sql { endpoint, what: query.what.clone(), detail, code: ErrorCode::Other });
        }
        Ok(set_aside)
    }
}

/// What a chunk's read is about, for its messages.
pub(super) struct ChunkQuery<'a> {
    table: &'a Table,
    columns: Vec<&'a Column>,
    key_pos: Vec<usize>,
    pub(super) what: String,
}

impl ChunkQuery<'_> {
    #[cold]
    pub(super) fn failure(&self, row: &Row, plan: &ColPlan, problem: Problem) -> String {
        value_failure(self.table, &self.columns, &self.key_pos, row, plan, problem)
    }
}

/// One chunk's rows on their way out: encoded into COPY blocks and hashed into the digest,
/// zero dates copied as NULL counted.
pub(super) struct ChunkRows<'a> {
    pub(super) plans: Vec<ColPlan>,
    zero_policy: ZeroDates,
    /// The encoder owns its block buffer: `take_buffer` hands it over and starts a fresh one
    /// of the same capacity.
    copy: CopyEncoder,
    hasher: RowEncoder,
    digest: DigestBuilder,
    zero_counts: Vec<u64>,
    capture: Option<RowSink<'a>>,
    block_bytes: usize,
    /// COPY bytes handed on so far, and the rows in them.
    bytes: u64,
    rows_sent: u64,
    /// `on_block` asked to stop.
    pub(super) stopped: bool,
}

impl<'a> ChunkRows<'a> {
    pub(super) fn new(
        plans: Vec<ColPlan>,
        zero_policy: ZeroDates,
        block_bytes: usize,
        capture: Option<RowSink<'a>>,
    ) -> Self {
        ChunkRows {
            zero_counts: vec![0; plans.len()],
            plans,
            zero_policy,
            copy: CopyEncoder::with_capacity(block_bytes + block_bytes / 4),
            // Captured rows are compared value by value, so their values must be kept.
            hasher: if capture.is_some() { RowEncoder::capturing() } else { RowEncoder::new() },
            digest: DigestBuilder::new(),
            capture,
            block_bytes,
            bytes: 0,
            rows_sent: 0,
            stopped: false,
        }
    }

    /// Encodes and hashes a row's first `plans.len()` values; a value the mapping cannot hold
    /// comes back with its column's index.
    #[inline]
    pub(super) fn add(&mut self, row: &Row) -> std::result::Result<(), (usize, Problem)> {
        self.copy.begin_row(self.plans.len());
        for (i, plan) in self.plans.iter().enumerate() {
            let v = row.as_ref(i).unwrap_or(&Value::NULL);
            if let Value::NULL = v {
                self.copy.null();
                self.hasher.null();
                continue;
            }
            match (plan.conv)(v, plan, &mut self.copy, &mut self.hasher) {
                Ok(()) => {}
                Err(Problem::ZeroDate(_)) if self.zero_policy == ZeroDates::Null => {
                    self.copy.null();
                    self.hasher.null();
                    self.zero_counts[i] += 1;
                }
                Err(problem) => return Err((i, problem)),
            }
        }
        add_row(&mut self.digest, &mut self.hasher, self.capture.as_deref_mut().map(|sink| sink as _));
        Ok(())
    }

    /// Hands the bytes encoded so far to `on_block` once they fill a block, or at once when
    /// they end with a set-aside row (whose `permit` then goes with the block).
    #[inline]
    pub(super) fn flush(
        &mut self,
        on_block: &mut impl FnMut(Block) -> Result<bool>,
        permit: Option<Permit<'static>>,
    ) -> Result<()> {
        if permit.is_none() && self.copy.buffered().len() < self.block_bytes {
            return Ok(());
        }
        let bytes = self.copy.take_buffer();
        self.bytes += bytes.len() as u64;
        let rows = self.copy.rows() - self.rows_sent;
        self.rows_sent = self.copy.rows();
        if !on_block(Block { bytes: Bytes::from(bytes), rows, hold: permit })? {
            self.stopped = true;
        }
        Ok(())
    }

    /// Reports the zero dates copied as NULL, hands on the last block (unless stopped) and
    /// returns the chunk's summary.
    fn finish(
        self,
        table: &Table,
        chunk: &Chunk,
        mut on_block: impl FnMut(Block) -> Result<bool>,
    ) -> Result<ChunkSummary> {
        report_zero_dates(table, chunk, &self.plans, &self.zero_counts);
        let rows = self.copy.rows();
        let mut bytes = self.bytes;
        if !self.stopped {
            let tail = self.copy.finish();
            bytes += tail.bytes.len() as u64;
            on_block(Block::new(Bytes::from(tail.bytes), rows - self.rows_sent))?;
        }
        let nulled = self
            .plans
            .iter()
            .zip(&self.zero_counts)
            .filter(|(_, &n)| n > 0)
            .map(|(p, &n)| (p.name.clone(), n))
            .collect();
        Ok(ChunkSummary { rows, bytes, digest: self.digest.finish(), nulled })
    }
}

/// The message of a value the mapping cannot hold: table, column, key and what is wrong.
#[cold]
fn value_failure(
    table: &Table,
    columns: &[&Column],
    key_pos: &[usize],
    row: &Row,
    plan: &ColPlan,
    problem: Problem,
) -> String {
    let key = if key_pos.is_empty() {
        "(the table has no key)".to_string()
    } else {
        let names: Vec<String> = key_pos.iter().map(|&i| quote_ident(&columns[i].name)).collect();
        let values: Vec<String> = key_pos.iter().map(|&i| value_text(row.as_ref(i).unwrap_or(&Value::NULL))).collect();
        format!("({}) = ({})", names.join(", "), values.join(", "))
    };
    let why = match problem {
        Problem::ZeroDate(text) => format!(
            "zero date {text:?} has no PostgreSQL equivalent and --zero-dates error refuses it \
             (--zero-dates null copies zero dates as NULL)"
        ),
        Problem::Invalid(why) => why,
    };
    format!("table {}, column {}, row with key {key}: {why}", table.name, quote_ident(&plan.name))
}

/// One warning line per column that had zero dates copied as NULL in this chunk.
fn report_zero_dates(table: &Table, chunk: &Chunk, plans: &[ColPlan], counts: &[u64]) {
    for (plan, &count) in plans.iter().zip(counts) {
        if count > 0 {
            eprintln!(
                "warning: {} column {}: {count} zero date{} copied as NULL (chunk {}, key range {}; --zero-dates null)",
                table.name,
                quote_ident(&plan.name),
                if count == 1 { "" } else { "s" },
                chunk.chunk_no,
                chunk.range_text()
            );
        }
    }
}
