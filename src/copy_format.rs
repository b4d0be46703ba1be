//! PostgreSQL binary COPY streams: decoding them for hashing as they pass through, and encoding
//! them from plain values.
//!
//! [`ChunkHasher`] sits between `COPY (…) TO STDOUT (FORMAT binary)` on the source and
//! `COPY … FROM STDIN (FORMAT binary)` on the target. It takes the stream in whatever blocks the
//! network delivers, hashes every tuple into the chunk's [`RangeDigest`] through the canonical
//! encoding, and hands back the bytes to forward, unchanged except for array element type OIDs
//! that differ between the two servers. [`CopyEncoder`] writes the same format from values read
//! from another engine.
//!
//! This module owns the wire format (see PostgreSQL's `COPY` "Binary Format" and each type's
//! `*_send` function) and nothing else: it never opens a connection, never decides which columns
//! are copied and never defines canonical values (that is `canonical`'s job). The decoder for each
//! column is chosen once per chunk from its [`LogicalType`]; the per-row loop only dispatches on
//! that prepared plan and allocates nothing in the steady state.

use crate::canonical::{ArrayDim, CanonicalError, DigestBuilder, ParsedDecimal, RangeDigest, RowEncoder, RowHash};
use crate::schema::{Column, LogicalType};

/// `PGCOPY\n\377\r\n\0`: the first 11 bytes of every binary COPY stream.
pub const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";
/// Signature, flags and header-extension length.
const HEADER_FIXED_LEN: usize = 19;
/// Header flag bit 16: every tuple carries an OID field, which we never ask for.
const FLAG_HAS_OIDS: u32 = 1 << 16;
/// Bits 0–15 are "critical": a reader must reject a stream with an unknown one set.
const FLAGS_CRITICAL: u32 = 0xFFFF;
/// A header extension longer than this is taken as corruption rather than buffered.
const MAX_HEADER_EXTENSION: u32 = 1 << 20;
/// The trailer: a field count of -1.
const TRAILER: [u8; 2] = [0xFF, 0xFF];

/// 2000-01-01 (PostgreSQL's epoch) in microseconds and days since 1970-01-01.
const PG_EPOCH_UNIX_US: i64 = 946_684_800_000_000;
const PG_EPOCH_UNIX_DAYS: i32 = 10_957;

/// PostgreSQL's MAXDIM.
const MAX_ARRAY_DIMS: usize = 6;
/// numeric sign words.
const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;
/// PostgreSQL's numeric limits: digits before the point, digits after it (NUMERIC_DSCALE_MAX).
const NUMERIC_MAX_INT_DIGITS: i64 = 131_072;
const NUMERIC_MAX_SCALE: i64 = 0x3FFF;

/// A binary COPY stream that cannot be hashed or forwarded, or a value that cannot be encoded.
#[derive(Debug, thiserror::Error)]
pub enum CopyFormatError {
    /// The stream does not start with `PGCOPY\n\377\r\n\0`.
    #[error("not a PostgreSQL binary COPY stream: bad signature")]
    BadSignature,
    /// The header asks for something this reader does not understand (tuple OIDs, or an unknown
    /// critical flag), or its extension is implausibly long.
    #[error("unsupported binary COPY header: {reason}")]
    BadHeader { reason: String },
    /// A tuple's field count is not the number of copied columns.
    #[error("row {row}: binary COPY tuple has {got} fields, expected {expected} ({names})")]
    FieldCount { row: u64, expected: usize, got: i16, names: String },
    /// A field could not be decoded as its column's type.
    #[error("row {row}, column {column} ({type_sql}): {problem}")]
    Field { row: u64, column: String, type_sql: String, problem: FieldProblem },
    /// The stream ended inside the header or a tuple.
    #[error("binary COPY stream truncated after {rows} rows: {pending} bytes of an incomplete {what}")]
    Truncated { rows: u64, pending: usize, what: &'static str },
    /// The stream ended cleanly between tuples but without the trailer.
    #[error("binary COPY stream ended after {rows} rows without its trailer")]
    MissingTrailer { rows: u64 },
    /// Bytes arrived after the trailer.
    #[error("{bytes} bytes of data after the binary COPY trailer")]
    DataAfterTrailer { bytes: usize },
    /// A previous call failed; the hasher's state is no longer meaningful.
    #[error("the chunk hasher already failed and cannot take more data")]
    AlreadyFailed,
    /// A value given to [`CopyEncoder`] has no PostgreSQL binary form.
    #[error("cannot encode {what} for binary COPY: {reason}")]
    Unencodable { what: &'static str, reason: String },
}

/// What is wrong with one field; [`CopyFormatError::Field`] adds the row and column.
#[derive(Debug, thiserror::Error)]
pub enum FieldProblem {
    #[error("field of {got} bytes, expected {expected}")]
    Length { expected: usize, got: usize },
    #[error("field of {got} bytes is too short, expected at least {min}")]
    TooShort { min: usize, got: usize },
    #[error("invalid field length {0}")]
    NegativeLength(i32),
    #[error("invalid numeric: {0}")]
    Numeric(String),
    #[error("invalid array: {0}")]
    Array(String),
    #[error("JSON is not valid UTF-8")]
    JsonUtf8,
    #[error("unsupported jsonb version {0}")]
    JsonbVersion(u8),
    #[error(transparent)]
    Json(CanonicalError),
    #[error("timestamp {0} µs since 2000-01-01 is beyond the canonical range (year 294247)")]
    TimestampRange(i64),
}

/// How one non-array value is decoded: chosen once per column from its [`LogicalType`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scalar {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Numeric,
    Float4,
    Float8,
    Text,
    Bpchar,
    Bytea,
    Date,
    Time,
    TimeTz,
    Timestamp,
    Interval,
    Uuid,
    Json,
    Jsonb,
    Raw(u32),
}

impl Scalar {
    /// The decoder for a non-array type; arrays of arrays are PostgreSQL's multi-dimensional
    /// arrays, so nested `Array`s resolve to their innermost element.
    fn of(logical: &LogicalType) -> Scalar {
        match logical {
            LogicalType::Bool => Scalar::Bool,
            LogicalType::Int2 => Scalar::Int2,
            LogicalType::Int4 => Scalar::Int4,
            LogicalType::Int8 => Scalar::Int8,
            LogicalType::Oid => Scalar::Oid,
            LogicalType::Numeric => Scalar::Numeric,
            LogicalType::Float4 => Scalar::Float4,
            LogicalType::Float8 => Scalar::Float8,
            LogicalType::Text | LogicalType::Enum => Scalar::Text,
            LogicalType::Bpchar => Scalar::Bpchar,
            LogicalType::Bytea => Scalar::Bytea,
            LogicalType::Date => Scalar::Date,
            LogicalType::Time => Scalar::Time,
            LogicalType::TimeTz => Scalar::TimeTz,
            LogicalType::Timestamp | LogicalType::TimestampTz => Scalar::Timestamp,
            LogicalType::Interval => Scalar::Interval,
            LogicalType::Uuid => Scalar::Uuid,
            LogicalType::Json => Scalar::Json,
            LogicalType::Jsonb => Scalar::Jsonb,
            LogicalType::Array(inner) => Scalar::of(inner),
            LogicalType::Raw(oid) => Scalar::Raw(*oid),
        }
    }
}

/// The decoding plan of one copied column, prepared before the row loop.
#[derive(Debug)]
struct ColumnPlan {
    name: String,
    type_sql: String,
    /// The element decoder for arrays, the value decoder otherwise.
    scalar: Scalar,
    is_array: bool,
    /// Target element type OID (network order) written over the source's in array fields.
    rewrite_elem_oid: Option<[u8; 4]>,
}

/// Reusable buffers the decoders write into, so rows allocate nothing.
#[derive(Debug, Default)]
struct Scratch {
    /// Canonical decimal text of a numeric.
    text: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Tuples,
    Done,
    Failed,
}

/// What a chunk's stream amounted to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkSummary {
    pub rows: u64,
    /// Stream bytes seen, header and trailer included (before any OID rewrite, which keeps sizes).
    pub bytes: u64,
    pub digest: RangeDigest,
    /// Per column, values the source could not represent that were copied as NULL by policy
    /// (MySQL zero dates under `--zero-dates null`); recorded with the chunk, reported per table.
    pub nulled: Vec<(String, u64)>,
}

/// Hashes one chunk's binary COPY stream while passing it through.
///
/// Feed it the source's blocks in order with [`feed`](Self::feed), forward what it appends to
/// `out`, and call [`finish`](Self::finish) once the source is done: a stream without its
/// trailer is an error, never a short chunk.
#[derive(Debug)]
pub struct ChunkHasher {
    columns: Vec<ColumnPlan>,
    encoder: RowEncoder,
    digest: DigestBuilder,
    scratch: Scratch,
    /// The start of an item (header or tuple) that the blocks so far did not complete.
    carry: Vec<u8>,
    /// Where in the run of tuples being forwarded an element OID is overwritten, and with what.
    patches: Vec<(usize, [u8; 4])>,
    state: State,
    rows: u64,
    bytes: u64,
    /// Every row's canonical bytes and hash, when asked for (row-level verification).
    captured: Option<Vec<CapturedRow>>,
}

/// Where captured rows go: called with each row's bytes (see [`RowEncoder::capturing`]) and
/// hash, in the order the rows are read.
pub type RowSink<'a> = &'a mut dyn FnMut(&[u8], &RowHash);

/// Adds the encoder's row to `digest`, and when rows are being captured, hands its bytes and
/// hash to `sink`.
#[inline]
pub fn add_row(digest: &mut DigestBuilder, encoder: &mut RowEncoder, sink: Option<RowSink<'_>>) {
    match sink {
        Some(sink) => {
            let hash = encoder.finish_row_with(sink);
            digest.add_hash(&hash);
        }
        None => digest.add_row(encoder),
    }
}

/// One row as captured: its values (self-delimiting, one per column, long ones as ELIDED
/// stand-ins; see [`RowEncoder::capturing`]) and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedRow {
    pub canonical: Vec<u8>,
    pub hash: RowHash,
}

impl ChunkHasher {
    /// A hasher for a stream of `columns` (the copied columns, in COPY order).
    pub fn new(columns: &[&Column]) -> Self {
        let columns = columns
            .iter()
            .map(|c| ColumnPlan {
                name: c.name.clone(),
                type_sql: c.type_sql.clone(),
                scalar: Scalar::of(&c.logical),
                is_array: matches!(c.logical, LogicalType::Array(_)),
                rewrite_elem_oid: None,
            })
            .collect();
        ChunkHasher {
            columns,
            encoder: RowEncoder::new(),
            digest: DigestBuilder::new(),
            scratch: Scratch::default(),
            carry: Vec::new(),
            patches: Vec::new(),
            state: State::Header,
            rows: 0,
            bytes: 0,
            captured: None,
        }
    }

    /// Keeps every row's values (long ones as stand-ins) and hash, for row-level comparison of
    /// a range whose digest differs. They pile up until taken: take them after every block.
    pub fn capturing_rows(mut self) -> Self {
        self.captured = Some(Vec::new());
        self.encoder = RowEncoder::capturing();
        self
    }

    /// Hands the rows captured since the last call to `sink`, in order (none unless
    /// [`capturing_rows`](Self::capturing_rows)).
    pub fn drain_captured(&mut self, sink: &mut dyn FnMut(&[u8], &RowHash)) {
        for row in self.captured.iter_mut().flat_map(|rows| rows.drain(..)) {
            sink(&row.canonical, &row.hash);
        }
    }

    /// Rewrites the element type OID of array column `col_index` to `target_oid` in the
    /// forwarded bytes: arrays of user-defined types (enums, domains, composites) carry the
    /// source server's OID, which the target's `array_recv` rejects as "wrong element type".
    /// Hashing is unaffected.
    ///
    /// # Panics
    /// If `col_index` is not an array column of this hasher.
    pub fn with_elem_oid_rewrite(mut self, col_index: usize, target_oid: u32) -> Self {
        let column = &mut self.columns[col_index];
        assert!(column.is_array, "column {} ({}) is not an array", column.name, column.type_sql);
        column.rewrite_elem_oid = Some(target_oid.to_be_bytes());
        self
    }

    /// Tuples hashed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Takes the next slice of the stream, cut anywhere. Hashes every tuple it completes and
    /// appends to `out` the bytes ready to forward: the header, complete tuples (with OID
    /// rewrites applied) and the trailer. Bytes of an incomplete item wait for the next call.
    ///
    /// After an error the hasher is unusable: further calls fail with
    /// [`CopyFormatError::AlreadyFailed`].
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), CopyFormatError> {
        self.take(data, Some(out))
    }

    /// Like [`feed`](Self::feed), but only hashes: for a stream forwarded as it is (no OID
    /// rewrites) or not forwarded at all, so no copy of it is made.
    ///
    /// # Panics
    /// If the hasher rewrites element OIDs (the forwarded bytes would differ from `data`).
    pub fn hash(&mut self, data: &[u8]) -> Result<(), CopyFormatError> {
        assert!(!self.rewrites(), "a hasher that rewrites OIDs must forward through feed()");
        self.take(data, None)
    }

    /// Whether forwarded bytes differ from the input (array element OIDs are rewritten).
    pub fn rewrites(&self) -> bool {
        self.columns.iter().any(|c| c.rewrite_elem_oid.is_some())
    }

    fn take(&mut self, data: &[u8], out: Option<&mut Vec<u8>>) -> Result<(), CopyFormatError> {
        if self.state == State::Failed {
            return Err(CopyFormatError::AlreadyFailed);
        }
        self.bytes += data.len() as u64;
        let result = self.feed_inner(data, out);
        if result.is_err() {
            self.state = State::Failed;
            self.encoder.discard_row();
        }
        result
    }

    /// The digest and counts of the whole stream; an error unless it ended with its trailer.
    pub fn finish(self) -> Result<ChunkSummary, CopyFormatError> {
        match self.state {
            State::Done => Ok(ChunkSummary {
                rows: self.rows,
                bytes: self.bytes,
                digest: self.digest.finish(),
                nulled: Vec::new(),
            }),
            State::Failed => Err(CopyFormatError::AlreadyFailed),
            State::Header if !self.carry.is_empty() || self.bytes > 0 => {
                Err(CopyFormatError::Truncated { rows: 0, pending: self.carry.len(), what: "header" })
            }
            State::Header => Err(CopyFormatError::MissingTrailer { rows: 0 }),
            State::Tuples if !self.carry.is_empty() => {
                Err(CopyFormatError::Truncated { rows: self.rows, pending: self.carry.len(), what: "tuple" })
            }
            State::Tuples => Err(CopyFormatError::MissingTrailer { rows: self.rows }),
        }
    }

    fn feed_inner(&mut self, mut data: &[u8], mut out: Option<&mut Vec<u8>>) -> Result<(), CopyFormatError> {
        if self.state == State::Done {
            return if data.is_empty() { Ok(()) } else { Err(CopyFormatError::DataAfterTrailer { bytes: data.len() }) };
        }
        if !self.carry.is_empty() {
            // Complete the pending item with just the bytes it still needs, so the carry never
            // holds more than one item.
            let Some(total) = self.item_len(data)? else {
                self.carry.extend_from_slice(data);
                return Ok(());
            };
            let (head, rest) = data.split_at(total - self.carry.len());
            self.carry.extend_from_slice(head);
            data = rest;
            let item = std::mem::take(&mut self.carry);
            let consumed = self.process(&item, out.as_deref_mut());
            self.carry = item;
            self.carry.clear();
            debug_assert!(consumed.as_ref().map_or(true, |&n| n == total));
            consumed?;
            if self.state == State::Done && !data.is_empty() {
                return Err(CopyFormatError::DataAfterTrailer { bytes: data.len() });
            }
        }
        let consumed = self.process(data, out)?;
        self.carry.extend_from_slice(&data[consumed..]);
        Ok(())
    }

    /// Hashes and forwards the complete items at the start of `buf`; returns the bytes used.
    fn process(&mut self, buf: &[u8], mut out: Option<&mut Vec<u8>>) -> Result<usize, CopyFormatError> {
        let mut pos = 0;
        if self.state == State::Header {
            match self.header_len(buf)? {
                Some(len) if len <= buf.len() => {
                    if let Some(out) = out.as_deref_mut() {
                        out.extend_from_slice(&buf[..len]);
                    }
                    pos = len;
                    self.state = State::Tuples;
                }
                _ => return Ok(0),
            }
        }
        if self.state == State::Tuples {
            let run_start = pos;
            self.patches.clear();
            while buf.len() - pos >= 2 {
                if buf[pos..pos + 2] == TRAILER {
                    self.state = State::Done;
                    pos += 2;
                    break;
                }
                match self.decode_tuple(buf, pos)? {
                    Some(len) => pos += len,
                    None => break,
                }
            }
            if let Some(out) = out {
                let base = out.len();
                out.extend_from_slice(&buf[run_start..pos]);
                for &(at, oid) in &self.patches {
                    let at = base + at - run_start;
                    out[at..at + 4].copy_from_slice(&oid);
                }
            }
            self.patches.clear();
        }
        if self.state == State::Done && pos < buf.len() {
            return Err(CopyFormatError::DataAfterTrailer { bytes: buf.len() - pos });
        }
        Ok(pos)
    }

    /// The header's total length once `buf` holds its fixed part; checks the signature (as far
    /// as `buf` goes) and the flags.
    fn header_len(&self, buf: &[u8]) -> Result<Option<usize>, CopyFormatError> {
        let n = buf.len().min(SIGNATURE.len());
        if buf[..n] != SIGNATURE[..n] {
            return Err(CopyFormatError::BadSignature);
        }
        if buf.len() < HEADER_FIXED_LEN {
            return Ok(None);
        }
        let flags = u32::from_be_bytes(buf[11..15].try_into().expect("4 bytes"));
        if flags & FLAG_HAS_OIDS != 0 {
            return Err(CopyFormatError::BadHeader { reason: "tuples carry OIDs".into() });
        }
        if flags & FLAGS_CRITICAL != 0 {
            return Err(CopyFormatError::BadHeader { reason: format!("unknown critical flags {flags:#010x}") });
        }
        let extension = u32::from_be_bytes(buf[15..19].try_into().expect("4 bytes"));
        if extension > MAX_HEADER_EXTENSION {
            return Err(CopyFormatError::BadHeader { reason: format!("header extension of {extension} bytes") });
        }
        Ok(Some(HEADER_FIXED_LEN + extension as usize))
    }

    /// The length of the item that starts in `carry` and may continue in `data`, once the
    /// bytes that determine it have arrived.
    fn item_len(&self, data: &[u8]) -> Result<Option<usize>, CopyFormatError> {
        let joined = Joined { a: &self.carry, b: data };
        match self.state {
            State::Header => {
                let mut head = [0u8; HEADER_FIXED_LEN];
                let n = joined.len().min(HEADER_FIXED_LEN);
                joined.copy_to(0, &mut head[..n]);
                Ok(self.header_len(&head[..n])?.filter(|&len| joined.len() >= len))
            }
            State::Tuples => {
                let Some(count) = joined.array::<2>(0) else {
                    return Ok(None);
                };
                if count == TRAILER {
                    return Ok(Some(2));
                }
                let count = i16::from_be_bytes(count);
                self.check_field_count(count)?;
                let mut pos = 2usize;
                for column in 0..count as usize {
                    let Some(len) = joined.array::<4>(pos) else {
                        return Ok(None);
                    };
                    let len = i32::from_be_bytes(len);
                    pos += 4;
                    if len == -1 {
                        continue;
                    }
                    if len < 0 {
                        return Err(self.field_error(column, FieldProblem::NegativeLength(len)));
                    }
                    pos += len as usize;
                }
                Ok((joined.len() >= pos).then_some(pos))
            }
            State::Done | State::Failed => unreachable!("no item is pending once the stream ended"),
        }
    }

    fn check_field_count(&self, got: i16) -> Result<(), CopyFormatError> {
        if got >= 0 && got as usize == self.columns.len() {
            return Ok(());
        }
        let names = self.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ");
        Err(CopyFormatError::FieldCount { row: self.rows + 1, expected: self.columns.len(), got, names })
    }

    #[cold]
    fn field_error(&self, column: usize, problem: FieldProblem) -> CopyFormatError {
        let plan = &self.columns[column];
        CopyFormatError::Field {
            row: self.rows + 1,
            column: plan.name.clone(),
            type_sql: plan.type_sql.clone(),
            problem,
        }
    }

    /// Decodes and hashes the tuple at `buf[start..]`; returns its length, or None (having
    /// hashed nothing) when `buf` ends inside it.
    #[inline]
    fn decode_tuple(&mut self, buf: &[u8], start: usize) -> Result<Option<usize>, CopyFormatError> {
        let count = i16::from_be_bytes([buf[start], buf[start + 1]]);
        self.check_field_count(count)?;
        let patches_before = self.patches.len();
        let mut pos = start + 2;
        for (column, plan) in self.columns.iter().enumerate() {
            let Some(len) = buf.get(pos..pos + 4) else {
                return Ok(self.abandon_tuple(patches_before));
            };
            let len = i32::from_be_bytes(len.try_into().expect("4 bytes"));
            pos += 4;
            if len < 0 {
                if len != -1 {
                    return Err(self.field_error(column, FieldProblem::NegativeLength(len)));
                }
                self.encoder.null();
                continue;
            }
            let Some(field) = buf.get(pos..pos + len as usize) else {
                return Ok(self.abandon_tuple(patches_before));
            };
            let decoded = if plan.is_array {
                decode_array(plan.scalar, field, &mut self.encoder, &mut self.scratch)
            } else {
                decode_scalar(plan.scalar, field, &mut self.encoder, &mut self.scratch)
            };
            if let Err(problem) = decoded {
                return Err(self.field_error(column, problem));
            }
            if let Some(oid) = plan.rewrite_elem_oid {
                // decode_array checked that the field holds the 12-byte array header.
                self.patches.push((pos + 8, oid));
            }
            pos += len as usize;
        }
        self.rows += 1;
        match &mut self.captured {
            Some(rows) => {
                let hash = self
                    .encoder
                    .finish_row_with(|canonical, &hash| rows.push(CapturedRow { canonical: canonical.to_vec(), hash }));
                self.digest.add_hash(&hash);
            }
            None => self.digest.add_row(&mut self.encoder),
        }
        Ok(Some(pos - start))
    }

    #[inline]
    fn abandon_tuple(&mut self, patches_before: usize) -> Option<usize> {
        self.encoder.discard_row();
        self.patches.truncate(patches_before);
        None
    }
}

/// Two slices read as one, for the item that straddles the carry and the new block.
struct Joined<'a> {
    a: &'a [u8],
    b: &'a [u8],
}

impl Joined<'_> {
    fn len(&self) -> usize {
        self.a.len() + self.b.len()
    }

    fn copy_to(&self, at: usize, dst: &mut [u8]) {
        for (i, byte) in dst.iter_mut().enumerate() {
            let k = at + i;
            *byte = if k < self.a.len() { self.a[k] } else { self.b[k - self.a.len()] };
        }
    }

    fn array<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        if at.checked_add(N)? > self.len() {
            return None;
        }
        let mut out = [0; N];
        self.copy_to(at, &mut out);
        Some(out)
    }
}

#[inline]
fn fixed<const N: usize>(field: &[u8]) -> Result<[u8; N], FieldProblem> {
    field.try_into().map_err(|_| FieldProblem::Length { expected: N, got: field.len() })
}

/// Decodes one non-NULL value in its `*_send` format into the canonical encoder.
#[inline]
fn decode_scalar(
    scalar: Scalar,
    field: &[u8],
    enc: &mut RowEncoder,
    scratch: &mut Scratch,
) -> Result<(), FieldProblem> {
    match scalar {
        // boolrecv: any non-zero byte is true.
        Scalar::Bool => enc.bool(fixed::<1>(field)?[0] != 0),
        Scalar::Int2 => enc.int(i16::from_be_bytes(fixed(field)?).into()),
        Scalar::Int4 => enc.int(i32::from_be_bytes(fixed(field)?).into()),
        Scalar::Int8 => enc.int(i64::from_be_bytes(fixed(field)?).into()),
        Scalar::Oid => enc.int(u32::from_be_bytes(fixed(field)?).into()),
        Scalar::Numeric => decode_numeric(field, enc, scratch)?,
        Scalar::Float4 => enc.float(f32::from_be_bytes(fixed(field)?).into()),
        Scalar::Float8 => enc.float(f64::from_be_bytes(fixed(field)?)),
        Scalar::Text => enc.text(field),
        Scalar::Bpchar => enc.bpchar(field),
        Scalar::Bytea => enc.bytes(field),
        Scalar::Date => match i32::from_be_bytes(fixed(field)?) {
            i32::MAX => enc.date_infinity(true),
            i32::MIN => enc.date_infinity(false),
            // PostgreSQL's dates end in 5874897 AD, far from i32's limits in either epoch.
            days => enc.date_days(days.saturating_add(PG_EPOCH_UNIX_DAYS)),
        },
        Scalar::Time => enc.time_us(i64::from_be_bytes(fixed(field)?)),
        Scalar::TimeTz => {
            let bytes: [u8; 12] = fixed(field)?;
            let us = i64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
            let west = i32::from_be_bytes(bytes[8..].try_into().expect("4 bytes"));
            enc.timetz(us, west.wrapping_neg());
        }
        Scalar::Timestamp => match i64::from_be_bytes(fixed(field)?) {
            i64::MAX => enc.timestamp_infinity(true),
            i64::MIN => enc.timestamp_infinity(false),
            us => enc.timestamp_us_since_2000(us),
        },
        Scalar::Interval => {
            let bytes: [u8; 16] = fixed(field)?;
            let us = i64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
            let days = i32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes"));
            let months = i32::from_be_bytes(bytes[12..].try_into().expect("4 bytes"));
            enc.interval(months, days, us);
        }
        Scalar::Uuid => enc.uuid(&fixed(field)?),
        Scalar::Json => decode_json(field, enc)?,
        Scalar::Jsonb => match field.split_first() {
            Some((1, text)) => decode_json(text, enc)?,
            Some((&version, _)) => return Err(FieldProblem::JsonbVersion(version)),
            None => return Err(FieldProblem::TooShort { min: 1, got: 0 }),
        },
        Scalar::Raw(oid) => enc.raw(oid, field),
    }
    Ok(())
}

fn decode_json(text: &[u8], enc: &mut RowEncoder) -> Result<(), FieldProblem> {
    let text = std::str::from_utf8(text).map_err(|_| FieldProblem::JsonUtf8)?;
    enc.json(text).map_err(FieldProblem::Json)
}

/// numeric_send: ndigits, weight, sign, dscale (int16 each), then ndigits base-10000 digits,
/// the first worth 10000^weight. Rendered straight into canonical decimal text.
fn decode_numeric(field: &[u8], enc: &mut RowEncoder, scratch: &mut Scratch) -> Result<(), FieldProblem> {
    if field.len() < 8 {
        return Err(FieldProblem::TooShort { min: 8, got: field.len() });
    }
    let word = |i: usize| u16::from_be_bytes([field[2 * i], field[2 * i + 1]]);
    let ndigits = word(0) as usize;
    let mut weight = i32::from(word(1) as i16);
    let sign = word(2);
    if field.len() != 8 + 2 * ndigits {
        return Err(FieldProblem::Length { expected: 8 + 2 * ndigits, got: field.len() });
    }
    let special: &[u8] = match sign {
        NUMERIC_POS | NUMERIC_NEG => b"",
        NUMERIC_NAN => b"NaN",
        NUMERIC_PINF => b"Infinity",
        NUMERIC_NINF => b"-Infinity",
        other => return Err(FieldProblem::Numeric(format!("sign word {other:#06x}"))),
    };
    if !special.is_empty() {
        enc.decimal_canonical(special);
        return Ok(());
    }
    let negative = sign == NUMERIC_NEG;
    let digits = &field[8..];
    let digit = |i: usize| u16::from_be_bytes([digits[2 * i], digits[2 * i + 1]]);
    if let Some(bad) = (0..ndigits).map(digit).find(|&d| d >= 10_000) {
        return Err(FieldProblem::Numeric(format!("base-10000 digit {bad}")));
    }
    // Leading and trailing zero digits carry no value (PostgreSQL strips them, but need not).
    let Some(first) = (0..ndigits).find(|&i| digit(i) != 0) else {
        enc.decimal_canonical(b"0");
        return Ok(());
    };
    let last = (0..ndigits).rfind(|&i| digit(i) != 0).expect("a non-zero digit exists");
    weight -= first as i32;
    let n = last - first + 1;
    let group = |i: i32| {
        if (0..n as i32).contains(&i) {
            digit(first + i as usize)
        } else {
            0
        }
    };

    let text = &mut scratch.text;
    text.clear();
    if negative {
        text.push(b'-');
    }
    if weight < 0 {
        text.push(b'0');
    } else {
        for i in 0..=weight {
            push_group(text, group(i), i > 0);
        }
    }
    // The last group's power of 10000 is weight - (n - 1); below 0 there is a fraction.
    let lowest = weight - (n as i32 - 1);
    if lowest < 0 {
        text.push(b'.');
        for power in (lowest..=-1).rev() {
            push_group(text, group(weight - power), true);
        }
        while text.last() == Some(&b'0') {
            text.pop();
        }
    }
    enc.decimal_canonical(text);
    Ok(())
}

/// Appends a base-10000 digit as 4 decimal digits, or without leading zeros unless `pad`.
#[inline]
fn push_group(text: &mut Vec<u8>, group: u16, pad: bool) {
    let ds = [group / 1000, group / 100 % 10, group / 10 % 10, group % 10];
    let skip = if pad { 0 } else { ds.iter().take_while(|&&d| d == 0).count().min(3) };
    text.extend(ds[skip..].iter().map(|&d| b'0' + d as u8));
}

/// array_send: ndim, has-nulls flag, element OID (int32 each), then per dimension its length
/// and lower bound, then every element as int32 length (-1 NULL) and its `*_send` bytes.
fn decode_array(elem: Scalar, field: &[u8], enc: &mut RowEncoder, scratch: &mut Scratch) -> Result<(), FieldProblem> {
    let int = |at: usize| field.get(at..at + 4).map(|b| i32::from_be_bytes(b.try_into().expect("4 bytes")));
    if field.len() < 12 {
        return Err(FieldProblem::TooShort { min: 12, got: field.len() });
    }
    let ndim = int(0).expect("checked length");
    let flags = int(4).expect("checked length");
    if !(0..=MAX_ARRAY_DIMS as i32).contains(&ndim) {
        return Err(FieldProblem::Array(format!("{ndim} dimensions")));
    }
    if flags != 0 && flags != 1 {
        return Err(FieldProblem::Array(format!("flags {flags}")));
    }
    let ndim = ndim as usize;
    let mut dims = [ArrayDim::default(); MAX_ARRAY_DIMS];
    let mut items: u64 = 1;
    for (i, dim) in dims[..ndim].iter_mut().enumerate() {
        let (Some(len), Some(lower_bound)) = (int(12 + 8 * i), int(16 + 8 * i)) else {
            return Err(FieldProblem::TooShort { min: 12 + 8 * ndim, got: field.len() });
        };
        if len < 0 {
            return Err(FieldProblem::Array(format!("dimension {} has length {len}", i + 1)));
        }
        *dim = ArrayDim { len, lower_bound };
        items = items.saturating_mul(len as u64);
    }
    if ndim == 0 {
        items = 0;
    }
    let mark = enc.begin_array(&dims[..ndim]);
    let mut pos = 12 + 8 * ndim;
    for item in 0..items {
        let Some(len) = int(pos) else {
            return Err(FieldProblem::Array(format!("ends before element {} of {items}", item + 1)));
        };
        pos += 4;
        if len == -1 {
            enc.null();
            continue;
        }
        let element = usize::try_from(len).ok().and_then(|len| field.get(pos..pos + len));
        let Some(element) = element else {
            return Err(FieldProblem::Array(format!("element {} of {items} has length {len}", item + 1)));
        };
        decode_scalar(elem, element, enc, scratch)?;
        pos += element.len();
    }
    if pos != field.len() {
        return Err(FieldProblem::Array(format!("{} bytes after the last element", field.len() - pos)));
    }
    enc.end_array(mark);
    Ok(())
}

/// Writes a PostgreSQL binary COPY stream from plain values (the MySQL → PostgreSQL path).
///
/// The header is written on creation. Each row is [`begin_row`](Self::begin_row) followed by
/// exactly that many field writes. The stream is only valid once [`finish`](Self::finish) has
/// written the trailer; hand intermediate bytes to the target with
/// [`take_buffer`](Self::take_buffer).
#[derive(Debug)]
#[must_use = "a binary COPY stream needs its trailer: call CopyEncoder::finish"]
pub struct CopyEncoder {
    buf: Vec<u8>,
    rows: u64,
    /// Fields the current row still expects (checked in debug builds).
    fields_left: usize,
}

/// A finished binary COPY stream: the bytes not yet taken, trailer included, and the row count.
#[derive(Debug)]
pub struct FinishedCopy {
    pub bytes: Vec<u8>,
    pub rows: u64,
}

impl Default for CopyEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl CopyEncoder {
    pub fn new() -> Self {
        Self::with_capacity(64 * 1024)
    }

    pub fn with_capacity(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity.max(HEADER_FIXED_LEN));
        buf.extend_from_slice(SIGNATURE);
        buf.extend_from_slice(&0u32.to_be_bytes());
        buf.extend_from_slice(&0u32.to_be_bytes());
        CopyEncoder { buf, rows: 0, fields_left: 0 }
    }

    /// Rows begun so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The bytes encoded and not yet taken.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Hands over the bytes encoded so far (cut anywhere: the target's COPY accepts any split).
    pub fn take_buffer(&mut self) -> Vec<u8> {
        let capacity = self.buf.capacity();
        std::mem::replace(&mut self.buf, Vec::with_capacity(capacity))
    }

    /// Writes the trailer; returns the remaining bytes and the row count.
    pub fn finish(mut self) -> FinishedCopy {
        debug_assert_eq!(self.fields_left, 0, "the last row is missing fields");
        self.buf.extend_from_slice(&TRAILER);
        FinishedCopy { bytes: std::mem::take(&mut self.buf), rows: self.rows }
    }

    /// Starts a row of `fields` fields.
    ///
    /// # Panics
    /// If `fields` exceeds PostgreSQL's int16 field count.
    #[inline]
    pub fn begin_row(&mut self, fields: usize) {
        debug_assert_eq!(self.fields_left, 0, "the previous row is missing fields");
        let count = i16::try_from(fields).expect("a binary COPY row has at most 32767 fields");
        self.buf.extend_from_slice(&count.to_be_bytes());
        self.fields_left = fields;
        self.rows += 1;
    }

    #[inline]
    fn field_len(&mut self, len: usize) {
        debug_assert!(self.fields_left > 0, "more fields than begin_row announced");
        self.fields_left = self.fields_left.wrapping_sub(1);
        let len = i32::try_from(len).expect("a binary COPY field is shorter than 2 GiB");
        self.buf.extend_from_slice(&len.to_be_bytes());
    }

    #[inline]
    fn fixed<const N: usize>(&mut self, bytes: [u8; N]) {
        self.field_len(N);
        self.buf.extend_from_slice(&bytes);
    }

    #[inline]
    pub fn null(&mut self) {
        debug_assert!(self.fields_left > 0, "more fields than begin_row announced");
        self.fields_left = self.fields_left.wrapping_sub(1);
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    /// A field already in its type's binary form (text, varchar, bytea, json…: the raw bytes).
    #[inline]
    pub fn field(&mut self, bytes: &[u8]) {
        self.field_len(bytes.len());
        self.buf.extend_from_slice(bytes);
    }

    #[inline]
    pub fn bool(&mut self, value: bool) {
        self.fixed([value as u8]);
    }

    #[inline]
    pub fn i16(&mut self, value: i16) {
        self.fixed(value.to_be_bytes());
    }

    #[inline]
    pub fn i32(&mut self, value: i32) {
        self.fixed(value.to_be_bytes());
    }

    #[inline]
    pub fn i64(&mut self, value: i64) {
        self.fixed(value.to_be_bytes());
    }

    #[inline]
    pub fn f32(&mut self, value: f32) {
        self.fixed(value.to_be_bytes());
    }

    #[inline]
    pub fn f64(&mut self, value: f64) {
        self.fixed(value.to_be_bytes());
    }

    #[inline]
    pub fn uuid(&mut self, value: &[u8; 16]) {
        self.fixed(*value);
    }

    /// jsonb's binary form: version 1, then the text.
    #[inline]
    pub fn jsonb(&mut self, text: &str) {
        self.field_len(1 + text.len());
        self.buf.push(1);
        self.buf.extend_from_slice(text.as_bytes());
    }

    /// A date given as days since 1970-01-01.
    #[inline]
    pub fn date_from_days_since_1970(&mut self, days: i32) -> Result<(), CopyFormatError> {
        match days.checked_sub(PG_EPOCH_UNIX_DAYS) {
            Some(pg_days) if pg_days != i32::MIN && pg_days != i32::MAX => {
                self.i32(pg_days);
                Ok(())
            }
            _ => Err(CopyFormatError::Unencodable { what: "date", reason: format!("{days} days since 1970") }),
        }
    }

    #[inline]
    pub fn date_infinity(&mut self, positive: bool) {
        self.i32(if positive { i32::MAX } else { i32::MIN });
    }

    /// A timestamp (or timestamptz, in UTC) given as microseconds since 1970-01-01 00:00.
    #[inline]
    pub fn timestamp_from_unix_us(&mut self, unix_us: i64) -> Result<(), CopyFormatError> {
        match unix_us.checked_sub(PG_EPOCH_UNIX_US) {
            Some(pg_us) if pg_us != i64::MIN && pg_us != i64::MAX => {
                self.i64(pg_us);
                Ok(())
            }
            _ => Err(CopyFormatError::Unencodable { what: "timestamp", reason: format!("{unix_us} µs since 1970") }),
        }
    }

    #[inline]
    pub fn timestamp_infinity(&mut self, positive: bool) {
        self.i64(if positive { i64::MAX } else { i64::MIN });
    }

    /// A time of day in microseconds.
    #[inline]
    pub fn time_us(&mut self, us: i64) {
        self.i64(us);
    }

    /// A time with time zone: local microseconds and the offset in seconds *east* of UTC
    /// (the wire format stores it west of UTC).
    #[inline]
    pub fn timetz(&mut self, us: i64, offset_east_s: i32) {
        let mut bytes = [0; 12];
        bytes[..8].copy_from_slice(&us.to_be_bytes());
        bytes[8..].copy_from_slice(&offset_east_s.wrapping_neg().to_be_bytes());
        self.fixed(bytes);
    }

    #[inline]
    pub fn interval(&mut self, months: i32, days: i32, us: i64) {
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&us.to_be_bytes());
        bytes[8..12].copy_from_slice(&days.to_be_bytes());
        bytes[12..].copy_from_slice(&months.to_be_bytes());
        self.fixed(bytes);
    }

    /// numeric's binary form from decimal text (`-12.50`, `1e3`, `NaN`, `Infinity`). The scale
    /// is the text's: `1.50` is sent with dscale 2, as PostgreSQL would. Infinities need
    /// PostgreSQL 14 or later on the target.
    pub fn numeric_from_decimal_str(&mut self, text: &str) -> Result<(), CopyFormatError> {
        let unencodable = |reason: String| CopyFormatError::Unencodable { what: "numeric", reason };
        let parsed = ParsedDecimal::parse(text).map_err(|e| unencodable(e.to_string()))?;
        let special = match parsed {
            ParsedDecimal::NaN => NUMERIC_NAN,
            ParsedDecimal::Infinity { negative: false } => NUMERIC_PINF,
            ParsedDecimal::Infinity { negative: true } => NUMERIC_NINF,
            ParsedDecimal::Finite(_) => NUMERIC_POS,
        };
        let ParsedDecimal::Finite(d) = parsed else {
            self.numeric_header(0, 0, special, 0);
            return Ok(());
        };
        let dscale = (d.frac.len() as i64).saturating_sub(d.exp).max(0);
        if dscale > NUMERIC_MAX_SCALE {
            return Err(unencodable(format!("scale {dscale} of {text:?} exceeds {NUMERIC_MAX_SCALE}")));
        }
        let Some((first, last, point)) = d.significant() else {
            // Zero: no digits, positive, keeping the scale.
            self.numeric_header(0, 0, NUMERIC_POS, dscale as u16);
            return Ok(());
        };
        if point - first > NUMERIC_MAX_INT_DIGITS {
            return Err(unencodable(format!("{text:?} has more than {NUMERIC_MAX_INT_DIGITS} integer digits")));
        }
        // The digit at index k of int ++ frac is worth 10^(point - 1 - k); base-10000 digit w
        // covers 10^(4w) ..= 10^(4w + 3).
        let power = |k: i64| point - 1 - k;
        let high = power(first).div_euclid(4);
        let low = power(last).div_euclid(4);
        let ndigits = (high - low + 1) as usize;
        self.field_len(8 + 2 * ndigits);
        let negative = d.negative;
        self.buf.extend_from_slice(&(ndigits as u16).to_be_bytes());
        self.buf.extend_from_slice(&(high as i16).to_be_bytes());
        self.buf.extend_from_slice(&(if negative { NUMERIC_NEG } else { NUMERIC_POS }).to_be_bytes());
        self.buf.extend_from_slice(&(dscale as u16).to_be_bytes());
        for w in (low..=high).rev() {
            let group = (0..4).fold(0u16, |acc, j| acc * 10 + u16::from(d.digit(point - 1 - (4 * w + 3 - j))));
            self.buf.extend_from_slice(&group.to_be_bytes());
        }
        Ok(())
    }

    fn numeric_header(&mut self, ndigits: u16, weight: i16, sign: u16, dscale: u16) {
        let mut bytes = [0; 8];
        bytes[..2].copy_from_slice(&ndigits.to_be_bytes());
        bytes[2..4].copy_from_slice(&weight.to_be_bytes());
        bytes[4..6].copy_from_slice(&sign.to_be_bytes());
        bytes[6..].copy_from_slice(&dscale.to_be_bytes());
        self.fixed(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::RowHash;

    fn column(name: &str, logical: LogicalType) -> Column {
        Column {
            name: name.to_string(),
            type_sql: format!("{logical:?}").to_lowercase(),
            logical,
            not_null: false,
            default_sql: None,
            identity_sql: None,
            generated_sql: None,
            user_elem_oid: None,
            user_elem_type_sql: None,
            source_type: String::new(),
        }
    }

    fn hasher(columns: &[Column]) -> ChunkHasher {
        ChunkHasher::new(&columns.iter().collect::<Vec<_>>())
    }

    /// Feeds `stream` cut at `cuts` (increasing offsets); returns the summary and forwarded bytes.
    fn run_split(
        mut h: ChunkHasher,
        stream: &[u8],
        cuts: &[usize],
    ) -> Result<(ChunkSummary, Vec<u8>), CopyFormatError> {
        let mut out = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
            h.feed(&stream[start..cut], &mut out)?;
            start = cut;
        }
        Ok((h.finish()?, out))
    }

    fn run(h: ChunkHasher, stream: &[u8]) -> Result<(ChunkSummary, Vec<u8>), CopyFormatError> {
        run_split(h, stream, &[])
    }

    fn digest_of(rows: &[RowHash]) -> RangeDigest {
        let mut d = RangeDigest::new();
        rows.iter().for_each(|h| d.add(h));
        d
    }

    /// A deterministic pseudo-random sequence (no dependency needed for cut points).
    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *seed >> 33
    }

    /// Asserts that every way of cutting `stream` gives the same digest and forwarded bytes.
    fn assert_split_invariant(make: impl Fn() -> ChunkHasher, stream: &[u8]) {
        let (whole, whole_out) = run(make(), stream).unwrap();
        let all_bytes: Vec<usize> = (1..stream.len()).collect();
        let mut splits: Vec<Vec<usize>> = vec![all_bytes];
        splits.extend((1..stream.len()).map(|cut| vec![cut]));
        let mut seed = 42;
        for _ in 0..200 {
            let mut cuts: Vec<usize> =
                (0..1 + lcg(&mut seed) % 8).map(|_| (lcg(&mut seed) as usize) % (stream.len() + 1)).collect();
            cuts.sort_unstable();
            splits.push(cuts);
        }
        for cuts in splits {
            let (summary, out) = run_split(make(), stream, &cuts).unwrap();
            assert_eq!(summary, whole, "cuts {cuts:?}");
            assert_eq!(out, whole_out, "cuts {cuts:?}");
        }
    }

    // A real `COPY (…) TO STDOUT (FORMAT binary)` from PostgreSQL 15 of one row of the values in
    // `real_fixture_hashes_as_its_values` and one row of NULLs.
    const REAL_FIXTURE: &[u8] = &[
        0x50, 0x47, 0x43, 0x4f, 0x50, 0x59, 0x0a, 0xff, 0x0d, 0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x28, 0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00, 0x02, 0x80, 0x00, 0x00, 0x00, 0x00, 0x04,
        0x7f, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x08, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x04, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x0c, 0x00, 0x02, 0x00, 0x00, 0x40, 0x00, 0x00, 0x04, 0x04, 0xd2, 0x15, 0xe0, 0x00, 0x00,
        0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00,
        0xd0, 0x00, 0x00, 0x20, 0x00, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0xf0, 0x00, 0x00, 0x20, 0x00, 0x00,
        0x00, 0x0a, 0x00, 0x01, 0xff, 0xfe, 0x00, 0x00, 0x00, 0x09, 0x00, 0x7b, 0x00, 0x00, 0x00, 0x1a, 0x00, 0x09,
        0x00, 0x07, 0x00, 0x00, 0x00, 0x01, 0x00, 0x0c, 0x0d, 0x80, 0x1e, 0xd2, 0x04, 0xd2, 0x16, 0x2e, 0x23, 0x34,
        0x0d, 0x80, 0x1e, 0xd2, 0x13, 0x88, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x01, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x04, 0x3f, 0x8c, 0xcc, 0xcd, 0x00, 0x00, 0x00, 0x08, 0x80, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x7f, 0xf8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x08, 0xff, 0xf0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x68, 0xc3, 0xa9, 0x6c,
        0x6c, 0x6f, 0x00, 0x00, 0x00, 0x06, 0x61, 0x62, 0x20, 0x20, 0x20, 0x20, 0x00, 0x00, 0x00, 0x02, 0x00, 0xff,
        0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x22, 0x79, 0x00, 0x00, 0x00, 0x04, 0x7f, 0xff, 0xff, 0xff, 0x00, 0x00,
        0x00, 0x04, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0xff, 0xff, 0x71, 0x54, 0x00, 0x00, 0x00, 0x08,
        0x00, 0x00, 0x00, 0x14, 0x1d, 0xd7, 0x5f, 0xff, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x0a, 0x0e, 0xeb,
        0xb0, 0x00, 0xff, 0xff, 0xe3, 0xe0, 0x00, 0x00, 0x00, 0x08, 0x00, 0x02, 0xb5, 0x83, 0x41, 0x72, 0x86, 0x14,
        0x00, 0x00, 0x00, 0x08, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00, 0x02,
        0xb0, 0xd1, 0xa4, 0x07, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x03, 0x6c, 0x96, 0x6e, 0xe0,
        0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x0e, 0x00, 0x00, 0x00, 0x10, 0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b,
        0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11, 0x00, 0x00, 0x00, 0x15, 0x7b, 0x22, 0x62, 0x22,
        0x3a, 0x31, 0x2c, 0x20, 0x22, 0x61, 0x22, 0x3a, 0x5b, 0x31, 0x2e, 0x35, 0x30, 0x2c, 0x32, 0x5d, 0x7d, 0x00,
        0x00, 0x00, 0x19, 0x01, 0x7b, 0x22, 0x61, 0x22, 0x3a, 0x20, 0x5b, 0x31, 0x2e, 0x35, 0x30, 0x2c, 0x20, 0x32,
        0x5d, 0x2c, 0x20, 0x22, 0x62, 0x22, 0x3a, 0x20, 0x31, 0x7d, 0x00, 0x00, 0x00, 0x38, 0x00, 0x00, 0x00, 0x02,
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x17, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
        0x00, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01, 0xff, 0xff, 0xff, 0xff,
        0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00,
        0x00, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x17, 0x00, 0x00, 0x00, 0x1d,
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x19, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00,
        0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x61, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x24, 0x00, 0x00, 0x00,
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x17, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00,
        0x24, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x05, 0x00, 0x00, 0x00, 0x02, 0x00,
        0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x05, 0x68, 0x61, 0x70, 0x70, 0x79, 0x00, 0x00, 0x00, 0x03, 0x73, 0x61,
        0x64, 0x00, 0x00, 0x00, 0x02, 0x6f, 0x6b, 0x00, 0x00, 0x00, 0x10, 0x3f, 0xf0, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x28, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ];

    /// The source OID of the `mood` enum in `REAL_FIXTURE`.
    const FIXTURE_MOOD_OID: u32 = 16389;

    fn fixture_columns() -> Vec<Column> {
        use LogicalType::*;
        let types = [
            Bool,
            Int2,
            Int4,
            Int8,
            Oid,
            Numeric,
            Numeric,
            Numeric,
            Numeric,
            Numeric,
            Numeric,
            Numeric,
            Numeric,
            Float4,
            Float8,
            Float8,
            Float8,
            Text,
            Bpchar,
            Bytea,
            Date,
            Date,
            Date,
            Date,
            Time,
            TimeTz,
            Timestamp,
            Timestamp,
            TimestampTz,
            Interval,
            Uuid,
            Json,
            Jsonb,
            Array(Box::new(Int4)),
            Array(Box::new(Int4)),
            Array(Box::new(Text)),
            Array(Box::new(Int4)),
            Array(Box::new(Enum)),
            Enum,
            Raw(600),
        ];
        let mut columns: Vec<Column> =
            types.into_iter().enumerate().map(|(i, t)| column(&format!("c{i}"), t)).collect();
        columns[37].user_elem_oid = Some(FIXTURE_MOOD_OID);
        columns
    }

    /// The fixture's first row, written directly with the canonical encoder.
    fn fixture_row_hash() -> RowHash {
        let mut e = RowEncoder::new();
        e.bool(true);
        e.int(-32768);
        e.int(2147483647);
        e.int(i64::MIN.into());
        e.int(4294967295);
        for d in [
            "0",
            "-1234.56",
            "NaN",
            "Infinity",
            "-Infinity",
            "0.00000123",
            "123456789012345678901234567890.5",
            "100000000000000000000",
        ] {
            e.decimal(d).unwrap();
        }
        e.float(f64::from(1.1f32));
        e.float(0.0);
        e.float(f64::NAN);
        e.float(f64::NEG_INFINITY);
        e.text("héllo".as_bytes());
        e.text(b"ab");
        e.bytes(&[0x00, 0xff]);
        e.date_days(19782);
        e.date_infinity(true);
        e.date_infinity(false);
        e.date_days(-25567);
        e.time_us(86_399_999_999);
        e.timetz(12 * 3600 * 1_000_000, 2 * 3600);
        e.timestamp_us(1_709_210_096_789_012);
        e.timestamp_infinity(false);
        e.timestamp_us(1_704_049_200_000_000);
        e.interval(14, 3, ((4 * 60 + 5) * 60 + 6) * 1_000_000 + 700_000);
        e.uuid(&[0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11]);
        e.json(r#"{"a":[1.5,2],"b":1}"#).unwrap();
        e.json(r#"{"a":[1.5,2],"b":1}"#).unwrap();
        let dim = |len, lower_bound| ArrayDim { len, lower_bound };
        let a = e.begin_array(&[dim(2, 1), dim(2, 1)]);
        e.int(1);
        e.null();
        e.int(3);
        e.int(4);
        e.end_array(a);
        let a = e.begin_array(&[]);
        e.end_array(a);
        let a = e.begin_array(&[dim(2, 1)]);
        e.text(b"a");
        e.null();
        e.end_array(a);
        let a = e.begin_array(&[dim(2, 0)]);
        e.int(5);
        e.int(6);
        e.end_array(a);
        let a = e.begin_array(&[dim(2, 1)]);
        e.text(b"happy");
        e.text(b"sad");
        e.end_array(a);
        e.text(b"ok");
        let mut point = 1.0f64.to_be_bytes().to_vec();
        point.extend(2.0f64.to_be_bytes());
        e.raw(600, &point);
        e.finish_row()
    }

    fn null_row_hash(columns: usize) -> RowHash {
        let mut e = RowEncoder::new();
        (0..columns).for_each(|_| e.null());
        e.finish_row()
    }

    #[test]
    fn real_fixture_hashes_as_its_values() {
        let columns = fixture_columns();
        let (summary, out) = run(hasher(&columns), REAL_FIXTURE).unwrap();
        assert_eq!(summary.rows, 2);
        assert_eq!(summary.bytes, REAL_FIXTURE.len() as u64);
        assert_eq!(summary.digest, digest_of(&[fixture_row_hash(), null_row_hash(columns.len())]));
        assert_eq!(out, REAL_FIXTURE);
    }

    #[test]
    fn real_fixture_in_every_split() {
        let columns = fixture_columns();
        assert_split_invariant(|| hasher(&columns), REAL_FIXTURE);
    }

    #[test]
    fn element_oid_rewrite_changes_only_the_oid() {
        let columns = fixture_columns();
        let make = || hasher(&columns).with_elem_oid_rewrite(37, 0x0102_0304);
        let (summary, out) = run(make(), REAL_FIXTURE).unwrap();
        let (plain, _) = run(hasher(&columns), REAL_FIXTURE).unwrap();
        assert_eq!(summary, plain, "hashing ignores the rewrite");
        let old = FIXTURE_MOOD_OID.to_be_bytes();
        let at: Vec<usize> = REAL_FIXTURE.windows(4).enumerate().filter(|(_, w)| *w == old).map(|(i, _)| i).collect();
        assert_eq!(at.len(), 1, "the fixture holds the enum OID once");
        let mut expected = REAL_FIXTURE.to_vec();
        expected[at[0]..at[0] + 4].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(out, expected);
        assert_split_invariant(make, REAL_FIXTURE);
    }

    #[test]
    #[should_panic(expected = "not an array")]
    fn element_oid_rewrite_needs_an_array_column() {
        let _ = hasher(&fixture_columns()).with_elem_oid_rewrite(0, 1);
    }

    fn orders_columns() -> Vec<Column> {
        use LogicalType::*;
        [
            ("id", Int8),
            ("customer_id", Int8),
            ("amount", Numeric),
            ("status", Text),
            ("created_at", Timestamp),
            ("shipped", Bool),
            ("weight", Float8),
            ("note", Text),
        ]
        .into_iter()
        .map(|(n, t)| column(n, t))
        .collect()
    }

    /// Writes `rows` orders-shaped rows both ways; returns the stream and the direct digest.
    fn orders_stream(rows: u64) -> (Vec<u8>, RangeDigest) {
        let mut copy = CopyEncoder::new();
        let mut canon = RowEncoder::new();
        let mut digest = RangeDigest::new();
        for i in 0..rows {
            let amount = format!("{}.{:02}", i * 37 % 100_000, i % 100);
            let note = "x".repeat((i % 7) as usize);
            copy.begin_row(8);
            copy.i64(i as i64);
            canon.int(i.into());
            copy.i64(-(i as i64) * 3);
            canon.int(-(i128::from(i)) * 3);
            copy.numeric_from_decimal_str(&amount).unwrap();
            canon.decimal(&amount).unwrap();
            if i % 5 == 0 {
                copy.null();
                canon.null();
            } else {
                copy.field(b"shipped");
                canon.text(b"shipped");
            }
            copy.timestamp_from_unix_us(1_600_000_000_000_000 + i as i64 * 1_000_003).unwrap();
            canon.timestamp_us(1_600_000_000_000_000 + i as i64 * 1_000_003);
            copy.bool(i % 2 == 0);
            canon.bool(i % 2 == 0);
            copy.f64(i as f64 / 3.0);
            canon.float(i as f64 / 3.0);
            copy.field(note.as_bytes());
            canon.text(note.as_bytes());
            digest.add(&canon.finish_row());
        }
        let finished = copy.finish();
        assert_eq!(finished.rows, rows);
        (finished.bytes, digest)
    }

    #[test]
    fn encoder_stream_hashes_like_the_canonical_encoder() {
        let (stream, expected) = orders_stream(500);
        let (summary, out) = run(hasher(&orders_columns()), &stream).unwrap();
        assert_eq!(summary.digest, expected);
        assert_eq!(summary.rows, 500);
        assert_eq!(out, stream);
        let columns = orders_columns();
        let (small, _) = orders_stream(6);
        assert_split_invariant(|| hasher(&columns), &small);
    }

    #[test]
    fn encoder_round_trips_every_typed_writer() {
        use LogicalType::*;
        let columns: Vec<Column> =
            [Int2, Int4, Float4, Date, Date, Timestamp, Time, TimeTz, Interval, Uuid, Jsonb, Bytea, Numeric]
                .into_iter()
                .enumerate()
                .map(|(i, t)| column(&format!("c{i}"), t))
                .collect();
        let mut copy = CopyEncoder::new();
        let mut canon = RowEncoder::new();
        let mut expected = RangeDigest::new();
        for i in 0..3i32 {
            copy.begin_row(columns.len());
            copy.i16(-7 * i as i16);
            canon.int((-7 * i).into());
            copy.i32(i32::MIN + i);
            canon.int((i32::MIN + i).into());
            copy.f32(0.1 * i as f32);
            canon.float(f64::from(0.1 * i as f32));
            copy.date_from_days_since_1970(-800_000 + i).unwrap();
            canon.date_days(-800_000 + i);
            if i == 1 {
                copy.date_infinity(false);
                canon.date_infinity(false);
                copy.timestamp_infinity(true);
                canon.timestamp_infinity(true);
            } else {
                copy.null();
                canon.null();
                copy.timestamp_from_unix_us(-1).unwrap();
                canon.timestamp_us(-1);
            }
            copy.time_us(i64::from(i) * 1_000_000);
            canon.time_us(i64::from(i) * 1_000_000);
            copy.timetz(5, -3600 * i);
            canon.timetz(5, -3600 * i);
            copy.interval(i, -i, -1);
            canon.interval(i, -i, -1);
            copy.uuid(&[i as u8; 16]);
            canon.uuid(&[i as u8; 16]);
            copy.jsonb(r#"{"z": 1.0, "a": [true, null]}"#);
            canon.json(r#"{"a":[true,null],"z":1}"#).unwrap();
            copy.field(&vec![0xAB; i as usize * 1000]);
            canon.bytes(&vec![0xAB; i as usize * 1000]);
            copy.numeric_from_decimal_str(["NaN", "-Infinity", "-0.000"][i as usize]).unwrap();
            canon.decimal(["NaN", "-Infinity", "0"][i as usize]).unwrap();
            expected.add(&canon.finish_row());
        }
        let (summary, _) = run(hasher(&columns), &copy.finish().bytes).unwrap();
        assert_eq!(summary.digest, expected);
    }

    /// numeric_send bytes (without the field length) of a value.
    fn numeric_bytes(text: &str) -> Vec<u8> {
        let mut copy = CopyEncoder::new();
        copy.begin_row(1);
        copy.numeric_from_decimal_str(text).unwrap();
        copy.buffered()[HEADER_FIXED_LEN + 2 + 4..].to_vec()
    }

    #[test]
    fn numeric_encoding_matches_postgres() {
        // Byte strings from the real fixture (PostgreSQL's numeric_send). PostgreSQL sends the
        // infinities with a meaningless dscale of 32; numeric_recv accepts 0, which we send.
        let cases: [(&str, &[u16]); 7] = [
            ("0", &[0, 0, 0, 0]),
            ("-1234.5600", &[2, 0, 0x4000, 4, 1234, 5600]),
            ("NaN", &[0, 0, 0xC000, 0]),
            ("-Infinity", &[0, 0, 0xF000, 0x20]),
            ("0.000001230", &[1, 0xFFFE, 0, 9, 123]),
            ("123456789012345678901234567890.5", &[9, 7, 0, 1, 12, 3456, 7890, 1234, 5678, 9012, 3456, 7890, 5000]),
            ("1e20", &[1, 5, 0, 0, 1]),
        ];
        for (text, words) in cases {
            let expected: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
            if text.ends_with("Infinity") {
                assert_eq!(numeric_bytes(text)[..6], expected[..6], "{text}");
            } else {
                assert_eq!(numeric_bytes(text), expected, "{text}");
            }
            let at = REAL_FIXTURE.windows(expected.len()).position(|w| w == expected.as_slice());
            assert!(at.is_some(), "{text} is not in the fixture");
        }
    }

    #[test]
    fn numerics_round_trip_through_binary() {
        let columns = [column("n", LogicalType::Numeric)];
        let values = [
            "0",
            "-0",
            "1",
            "-1",
            "9999",
            "10000",
            "-10000.0001",
            "0.1",
            "0.0001",
            "0.00001",
            "1.5",
            "1.50",
            "-000.100",
            "12345678.87654321",
            "1e-20",
            "-7.77e-7",
            "1e100",
            "99999999999999999999.99999999999999",
            "31415.92653e-3",
            "NaN",
            "-Infinity",
            "Infinity",
        ];
        for text in values {
            let mut copy = CopyEncoder::new();
            copy.begin_row(1);
            copy.numeric_from_decimal_str(text).unwrap();
            let (summary, _) = run(hasher(&columns), &copy.finish().bytes).unwrap();
            let mut canon = RowEncoder::new();
            canon.decimal(text).unwrap();
            assert_eq!(summary.digest, digest_of(&[canon.finish_row()]), "{text}");
        }
        let mut copy = CopyEncoder::new();
        copy.begin_row(2);
        assert!(copy.numeric_from_decimal_str("1.2.3").is_err());
        assert!(copy.numeric_from_decimal_str("1e-20000").is_err());
        assert!(copy.numeric_from_decimal_str("1e200000").is_err());
    }

    /// A stream of hand-made tuples, each a list of fields (None = NULL).
    fn stream_of(rows: &[Vec<Option<Vec<u8>>>]) -> Vec<u8> {
        let mut copy = CopyEncoder::new();
        for row in rows {
            copy.begin_row(row.len());
            for field in row {
                match field {
                    Some(bytes) => copy.field(bytes),
                    None => copy.null(),
                }
            }
        }
        copy.finish().bytes
    }

    fn be(words: &[i32]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_be_bytes()).collect()
    }

    #[test]
    fn arrays_with_nulls_and_dimensions() {
        let columns = [column("a", LogicalType::Array(Box::new(LogicalType::Int2)))];
        // int2[][] {{NULL,7},{8,NULL},{NULL,NULL}} with lower bounds 1 and -2.
        let mut field = be(&[2, 1, 21, 3, 1, 2, -2, -1]);
        field.extend(be(&[2]).iter().chain(&7i16.to_be_bytes()));
        field.extend(be(&[2]).iter().chain(&8i16.to_be_bytes()));
        field.extend(be(&[-1, -1, -1]));
        let empty = be(&[0, 0, 21]);
        let stream = stream_of(&[vec![Some(field)], vec![Some(empty)], vec![None]]);
        let mut e = RowEncoder::new();
        let a = e.begin_array(&[ArrayDim { len: 3, lower_bound: 1 }, ArrayDim { len: 2, lower_bound: -2 }]);
        e.null();
        e.int(7);
        e.int(8);
        e.null();
        e.null();
        e.null();
        e.end_array(a);
        let first = e.finish_row();
        let a = e.begin_array(&[]);
        e.end_array(a);
        let second = e.finish_row();
        e.null();
        let third = e.finish_row();
        assert_ne!(second, third, "an empty array is not NULL");
        let (summary, _) = run(hasher(&columns), &stream).unwrap();
        assert_eq!(summary.digest, digest_of(&[first, second, third]));
        assert_split_invariant(|| hasher(&columns), &stream);
    }

    fn field_problem(columns: &[Column], field: Vec<u8>) -> FieldProblem {
        match run(hasher(columns), &stream_of(&[vec![Some(field)]])) {
            Err(CopyFormatError::Field { row: 1, column, problem, .. }) => {
                assert_eq!(column, columns[0].name);
                problem
            }
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn malformed_fields_name_their_column() {
        let int4 = [column("qty", LogicalType::Int4)];
        assert!(matches!(field_problem(&int4, vec![0, 1]), FieldProblem::Length { expected: 4, got: 2 }));
        let json = [column("doc", LogicalType::Json)];
        assert!(matches!(field_problem(&json, vec![b'"', 0xFF, b'"']), FieldProblem::JsonUtf8));
        assert!(matches!(field_problem(&json, b"{".to_vec()), FieldProblem::Json(_)));
        let jsonb = [column("doc", LogicalType::Jsonb)];
        assert!(matches!(field_problem(&jsonb, b"\x02{}".to_vec()), FieldProblem::JsonbVersion(2)));
        let numeric = [column("amount", LogicalType::Numeric)];
        let words = |w: &[u16]| w.iter().flat_map(|w| w.to_be_bytes()).collect::<Vec<u8>>();
        assert!(matches!(field_problem(&numeric, words(&[1, 0, 0, 0, 10_000])), FieldProblem::Numeric(_)));
        assert!(matches!(field_problem(&numeric, words(&[0, 0, 0x1234, 0])), FieldProblem::Numeric(_)));
        assert!(matches!(
            field_problem(&numeric, words(&[2, 0, 0, 0, 1])),
            FieldProblem::Length { expected: 12, got: 10 }
        ));
        assert!(matches!(field_problem(&numeric, vec![0; 6]), FieldProblem::TooShort { min: 8, got: 6 }));
        let array = [column("tags", LogicalType::Array(Box::new(LogicalType::Int4)))];
        assert!(matches!(field_problem(&array, be(&[7, 0, 23])), FieldProblem::Array(_)));
        assert!(matches!(field_problem(&array, be(&[1, 0, 23, 1, 1, 4, 5, 0])), FieldProblem::Array(_)));
        assert!(matches!(field_problem(&array, be(&[1, 0, 23, 2, 1, 4, 5])), FieldProblem::Array(_)));
        assert!(matches!(field_problem(&array, be(&[1, 0, 23, 1, 1, 2, 5])), FieldProblem::Length { .. }));
        let message = run(hasher(&int4), &stream_of(&[vec![Some(vec![1])]])).unwrap_err().to_string();
        assert!(message.contains("column qty"), "{message}");
    }

    #[test]
    fn any_non_zero_byte_is_true() {
        let columns = [column("b", LogicalType::Bool)];
        let stream = stream_of(&[vec![Some(vec![2])]]);
        let mut e = RowEncoder::new();
        e.bool(true);
        let (summary, _) = run(hasher(&columns), &stream).unwrap();
        assert_eq!(summary.digest, digest_of(&[e.finish_row()]));
    }

    #[test]
    fn field_count_mismatch_names_the_columns() {
        let columns = orders_columns();
        let err = run(hasher(&columns), &stream_of(&[vec![None, None]])).unwrap_err();
        assert!(matches!(err, CopyFormatError::FieldCount { row: 1, expected: 8, got: 2, .. }), "{err:?}");
        assert!(err.to_string().contains("id, customer_id, amount"), "{err}");
    }

    #[test]
    fn truncated_streams_are_errors() {
        let columns = fixture_columns();
        for len in 0..REAL_FIXTURE.len() {
            let mut h = hasher(&columns);
            let mut out = Vec::new();
            h.feed(&REAL_FIXTURE[..len], &mut out).unwrap();
            let err = h.finish().unwrap_err();
            assert!(
                matches!(err, CopyFormatError::Truncated { .. } | CopyFormatError::MissingTrailer { .. }),
                "{len}: {err:?}"
            );
        }
        let mut h = hasher(&columns);
        let mut out = Vec::new();
        h.feed(&REAL_FIXTURE[..REAL_FIXTURE.len() - 2], &mut out).unwrap();
        assert_eq!(out, &REAL_FIXTURE[..REAL_FIXTURE.len() - 2]);
        assert!(matches!(h.finish(), Err(CopyFormatError::MissingTrailer { rows: 2 })));
        let mut h = hasher(&columns);
        h.feed(&REAL_FIXTURE[..100], &mut out).unwrap();
        assert!(matches!(h.finish(), Err(CopyFormatError::Truncated { rows: 0, what: "tuple", .. })));
        let mut h = hasher(&columns);
        h.feed(&REAL_FIXTURE[..5], &mut out).unwrap();
        assert!(matches!(h.finish(), Err(CopyFormatError::Truncated { what: "header", .. })));
    }

    #[test]
    fn bad_headers_are_rejected() {
        let columns = orders_columns();
        let (stream, _) = orders_stream(1);
        let mut bad = stream.clone();
        bad[0] = b'X';
        assert!(matches!(run(hasher(&columns), &bad), Err(CopyFormatError::BadSignature)));
        // Detected on the first wrong byte, even one byte at a time.
        let mut h = hasher(&columns);
        let mut out = Vec::new();
        h.feed(b"PGCOPY\n", &mut out).unwrap();
        assert!(matches!(h.feed(b"\xfe", &mut out), Err(CopyFormatError::BadSignature)));
        assert!(matches!(h.feed(b"", &mut out), Err(CopyFormatError::AlreadyFailed)));
        assert!(out.is_empty());
        let mut oids = stream.clone();
        oids[13] = 1;
        assert!(matches!(run(hasher(&columns), &oids), Err(CopyFormatError::BadHeader { .. })));
        let mut critical = stream.clone();
        critical[14] = 4;
        assert!(matches!(run(hasher(&columns), &critical), Err(CopyFormatError::BadHeader { .. })));
        // A header extension is skipped and forwarded.
        let mut extended = stream[..15].to_vec();
        extended.extend(be(&[3]));
        extended.extend(b"abc");
        extended.extend(&stream[19..]);
        let (summary, out) = run(hasher(&columns), &extended).unwrap();
        assert_eq!((summary.rows, out), (1, extended.clone()));
        assert_split_invariant(|| hasher(&columns), &extended);
    }

    #[test]
    fn data_after_the_trailer_is_an_error() {
        let columns = orders_columns();
        let (mut stream, _) = orders_stream(2);
        stream.push(0);
        assert!(matches!(run(hasher(&columns), &stream), Err(CopyFormatError::DataAfterTrailer { bytes: 1 })));
        let mut h = hasher(&columns);
        let mut out = Vec::new();
        h.feed(&stream[..stream.len() - 1], &mut out).unwrap();
        assert!(matches!(h.feed(&[0], &mut out), Err(CopyFormatError::DataAfterTrailer { bytes: 1 })));
        // Also when the trailer completes from the carry.
        let mut h = hasher(&columns);
        h.feed(&stream[..stream.len() - 2], &mut Vec::new()).unwrap();
        assert!(matches!(
            h.feed(&stream[stream.len() - 2..], &mut Vec::new()),
            Err(CopyFormatError::DataAfterTrailer { .. })
        ));
    }

    #[test]
    fn empty_stream_and_zero_column_rows() {
        let (summary, out) = run(hasher(&[]), &stream_of(&[vec![], vec![]])).unwrap();
        assert_eq!(summary.rows, 2);
        assert_eq!(summary.digest, digest_of(&[RowEncoder::new().finish_row(); 2]));
        assert_eq!(out.len() as u64, summary.bytes);
        let (summary, _) = run(hasher(&orders_columns()), &stream_of(&[])).unwrap();
        assert_eq!(summary.rows, 0);
        assert_eq!(summary.digest, RangeDigest::new());
        assert!(matches!(hasher(&[]).finish(), Err(CopyFormatError::MissingTrailer { rows: 0 })));
    }

    #[test]
    fn multi_megabyte_fields_carry_only_the_partial_tail() {
        let columns = [column("id", LogicalType::Int4), column("blob", LogicalType::Bytea)];
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let mut copy = CopyEncoder::new();
        let mut canon = RowEncoder::new();
        let mut expected = RangeDigest::new();
        for i in 0..4 {
            copy.begin_row(2);
            copy.i32(i);
            canon.int(i.into());
            let len = big.len() - i as usize * 1000;
            copy.field(&big[..len]);
            canon.bytes(&big[..len]);
            expected.add(&canon.finish_row());
        }
        let stream = copy.finish().bytes;
        let mut h = hasher(&columns);
        let mut out = Vec::new();
        let block = 64 * 1024;
        for piece in stream.chunks(block) {
            h.feed(piece, &mut out).unwrap();
            assert!(h.carry.len() <= big.len() + 10, "carry holds one row at most");
        }
        let summary = h.finish().unwrap();
        assert_eq!(summary.digest, expected);
        assert_eq!(out, stream);
    }

    #[test]
    fn hashing_without_forwarding_gives_the_same_digest() {
        let columns = [column("qty", LogicalType::Int4), column("name", LogicalType::Text)];
        let stream = stream_of(&[vec![Some(be(&[7])), Some(b"seven".to_vec())], vec![None, None]]);
        let mut fed = hasher(&columns);
        let mut out = Vec::new();
        for piece in stream.chunks(3) {
            fed.feed(piece, &mut out).unwrap();
        }
        let mut hashed = hasher(&columns);
        for piece in stream.chunks(3) {
            hashed.hash(piece).unwrap();
        }
        assert_eq!(out, stream);
        assert_eq!(fed.finish().unwrap(), hashed.finish().unwrap());
    }
}
