//! Chunk planning: cutting each table's key space into half-open ranges of about
//! `chunk_rows` rows by walking the key, and persisting each chunk before anyone copies it.
//!
//! Planning runs ahead of the workers, one table after another, so the first chunk starts
//! copying while later boundaries are still being found. It must never copy rows itself.

use crate::error::Result;
use crate::schema::Table;
use crate::source::Source;

/// One side of a key range: the key tuple as text, or `None` for unbounded.
pub type Bound = Option<Vec<String>>;

/// A half-open range `[lo, hi)` of one table's key: the unit of work, resume and checksums.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Chunk {
    pub table_no: usize,
    pub chunk_no: u32,
    pub lo: Bound,
    pub hi: Bound,
}

impl Chunk {
    /// `[lo, hi)` for messages, with `-∞`/`+∞` for open ends.
    pub fn range_text(&self) -> String {
        format!("[{}, {})", bound_text(&self.lo, "-∞"), bound_text(&self.hi, "+∞"))
    }
}

/// A bound for messages: the key value, a tuple of them, or `inf` for an open end.
pub fn bound_text(b: &Bound, inf: &str) -> String {
    match b {
        None => inf.to_string(),
        Some(v) if v.len() == 1 => v[0].clone(),
        Some(v) => format!("({})", v.join(", ")),
    }
}

/// Where planning of a table stands: the next chunk number and where its range starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanCursor {
    pub next_chunk_no: u32,
    pub lo: Bound,
}

impl PlanCursor {
    pub fn start() -> Self {
        PlanCursor { next_chunk_no: 0, lo: None }
    }
}

/// Plans the rest of a table's chunks from `cursor`, handing each one to `emit` (which must
/// persist it before it is copied). Returns `false` if `emit` asked to stop early.
/// A table without a usable key is a single chunk covering everything.
pub fn plan_table(
    source: &mut Source,
    table_no: usize,
    table: &Table,
    chunk_rows: u64,
    cursor: PlanCursor,
    mut emit: impl FnMut(Chunk, bool) -> Result<bool>,
) -> Result<bool> {
    let PlanCursor { mut next_chunk_no, mut lo } = cursor;
    if table.key.is_none() {
        return emit(Chunk { table_no, chunk_no: next_chunk_no, lo: None, hi: None }, true);
    }
    loop {
        let hi = source.next_boundary(table, &lo, chunk_rows)?;
        let last = hi.is_none();
        let chunk = Chunk { table_no, chunk_no: next_chunk_no, lo: lo.clone(), hi: hi.clone() };
        if !emit(chunk, last)? {
            return Ok(false);
        }
        if last {
            return Ok(true);
        }
        next_chunk_no += 1;
        lo = hi;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_read_as_half_open_intervals() {
        let c = Chunk { table_no: 0, chunk_no: 0, lo: None, hi: Some(vec!["10".into()]) };
        assert_eq!(c.range_text(), "[-∞, 10)");
        let c = Chunk { table_no: 0, chunk_no: 1, lo: Some(vec!["a".into(), "1".into()]), hi: None };
        assert_eq!(c.range_text(), "[(a, 1), +∞)");
    }
}
