//! Canonical value encoding (v1), row hashes and range digests.
//!
//! This module owns the engine-neutral byte encoding that every row is hashed over, the
//! [`RowHash`] of one row and the order-independent [`RangeDigest`] of a range of rows. The
//! PostgreSQL side (binary COPY decoding in `copy_format`) and the MySQL side both feed values into
//! a [`RowEncoder`]; the same logical row must give the same bytes whichever engine it came from.
//!
//! It must never depend on an engine, a connection or a wire format: callers convert engine
//! values into the plain Rust values the encoder takes (integers, microseconds, days, UTF-8
//! text…). Changing any byte below changes every digest ever stored, so it needs a new
//! encoding version, never an edit of v1.
//!
//! # Canonical encoding v1
//!
//! A row is the concatenation of its values in column order (generated columns excluded); its
//! hash is `blake3(row bytes)` (plain, unkeyed blake3, 32 bytes). Every value is
//!
//! ```text
//! tag: u8 | len: u32 little-endian (payload bytes) | payload
//! ```
//!
//! so values are self-delimiting and no separator or escaping is needed. All multi-byte integers
//! in payloads are little-endian two's complement.
//!
//! | tag    | name               | payload (`len` bytes)                                              | produced for |
//! |--------|--------------------|--------------------------------------------------------------------|--------------|
//! | `0x00` | NULL               | empty (`len` = 0)                                                   | SQL NULL of any type |
//! | `0x01` | BOOL               | 1 byte: `0x00` false, `0x01` true                                   | boolean. MySQL `TINYINT(1)` is a BOOL only if the MySQL side maps the column to `LogicalType::Bool`; otherwise it is an INT and differs from a boolean |
//! | `0x02` | INT                | 16 bytes: i128                                                      | every integer of any width and signedness (int2/4/8, oid, MySQL TINYINT…BIGINT UNSIGNED): `int2 5`, `int8 5` and `TINYINT UNSIGNED 5` are equal |
//! | `0x03` | DECIMAL            | ASCII canonical decimal text (below)                                | numeric / DECIMAL |
//! | `0x04` | FLOAT              | 8 bytes: IEEE-754 binary64 bits after canonicalization (below)       | float4, float8, MySQL FLOAT/DOUBLE |
//! | `0x05` | TEXT               | the exact bytes (UTF-8)                                              | text, varchar, name, citext, enum labels, char(n) with trailing spaces removed |
//! | `0x06` | BYTES              | the exact bytes                                                      | bytea, MySQL BINARY/VARBINARY/BLOB |
//! | `0x07` | TIMESTAMP          | 8 bytes: i64 microseconds since 2000-01-01 00:00:00 (PostgreSQL's epoch, so its whole range fits) | timestamp (wall clock as if UTC) and timestamptz (the instant, in UTC) |
//! | `0x08` | TIMESTAMP_INFINITY | 1 byte: `0x01` +infinity, `0x00` -infinity                          | timestamp / timestamptz `±infinity` |
//! | `0x09` | DATE               | 4 bytes: i32 days since 1970-01-01                                   | date |
//! | `0x0A` | DATE_INFINITY      | 1 byte: `0x01` +infinity, `0x00` -infinity                           | date `±infinity` |
//! | `0x0B` | TIME               | 8 bytes: i64 signed microseconds                                     | time, MySQL TIME (may be negative or above 24 h) |
//! | `0x0C` | TIMETZ             | 12 bytes: i64 microseconds of local time, then i32 offset in seconds *east* of UTC (`+02:00` is 7200) | time with time zone |
//! | `0x0D` | INTERVAL           | 16 bytes: i32 months, i32 days, i64 microseconds (as stored, not justified) | interval |
//! | `0x0E` | UUID               | 16 bytes, in RFC 4122 byte order                                     | uuid, MySQL `BINARY(16)` only if mapped to `LogicalType::Uuid` |
//! | `0x0F` | JSON               | canonical JSON text (below)                                           | json, jsonb, MySQL JSON |
//! | `0x10` | ARRAY              | u32 ndim, then per dimension i32 length and i32 lower bound, then the `product(lengths)` elements, each a complete value (tag, len, payload; NULL allowed); `len` covers all of it | arrays of any element type |
//! | `0x11` | RAW                | 4 bytes: u32 type OID (0 for user-defined types, OID ≥ 16384), then the type's PostgreSQL binary (`*_send`) bytes | `LogicalType::Raw`: comparable PostgreSQL ↔ PostgreSQL only |
//!
//! A RAW value keeps built-in type OIDs (stable across servers) but writes 0 for user-defined
//! ones (extension types such as PostGIS `geometry`), whose OIDs differ between the source and
//! the target while their binary forms agree. (Composite values embed their attributes' type
//! OIDs in the bytes themselves, so those only compare equal between servers that share OIDs.)
//!
//! `len` is a u32 because every value travels in a PostgreSQL binary COPY field, whose length is
//! an int32 (and PostgreSQL caps a field at 1 GiB).
//!
//! **Decimal text.** `-?` then the integer digits without leading zeros (`0` when there are
//! none), then, only when the fraction is non-zero, `.` and the fractional digits without
//! trailing zeros; never an exponent. Zero is `0` (so `-0`, `0.000` and `-0e5` are `0`). So
//! numeric `1.50` and `1.5` are **equal**: the scale (`numeric(12,2)` vs `numeric(12,1)`) is not
//! part of the value. The special values are `NaN`, `Infinity` and `-Infinity`. Input may have a
//! sign, leading/trailing zeros, a leading or trailing `.` and an exponent (`1.5e3`).
//!
//! **Float.** The value is widened to binary64 first (float4 `1.1` hashes as
//! `f64::from(1.1f32)`, which differs from float8 `1.1`), then `-0.0` becomes `+0.0` and every
//! NaN becomes `0x7FF8_0000_0000_0000`. `±Infinity` keep their bits. Values 1 ulp apart differ.
//!
//! **JSON.** Parsed, then re-serialized with no whitespace; object keys sorted by their UTF-8
//! bytes, a duplicated key keeps its last value (as jsonb does); numbers rewritten with the
//! decimal rule above (`1.0`, `1`, `1e0` and `10E-1` are all `1`); strings escape only `"` as
//! `\"`, `\` as `\\`, U+0008/U+000C/LF/CR/TAB as `\b` `\f` `\n` `\r` `\t` and other control
//! characters below U+0020 as `\u00xx` (lowercase hex); every other character is written as its
//! raw UTF-8; `true`, `false`, `null` as themselves.
//!
//! **Range digest.** A [`RangeDigest`] is the row count and the sum, modulo 2^256, of the row
//! hashes read as 256-bit little-endian integers. Its text form is `<rows>:<64 lowercase hex>`,
//! the hex being the sum's 32 little-endian bytes (so a one-row digest shows that row's hash).

use std::fmt;
use std::str::FromStr;

use crate::blake3_lanes::{self, MAX_LANE_LEN};

/// The tag bytes of canonical encoding v1 (see the module documentation).
/// Microseconds from 1970-01-01 to 2000-01-01.
const UNIX_TO_2000_US: i64 = 946_684_800_000_000;

pub mod tag {
    pub const NULL: u8 = 0x00;
    pub const BOOL: u8 = 0x01;
    pub const INT: u8 = 0x02;
    pub const DECIMAL: u8 = 0x03;
    pub const FLOAT: u8 = 0x04;
    pub const TEXT: u8 = 0x05;
    pub const BYTES: u8 = 0x06;
    pub const TIMESTAMP: u8 = 0x07;
    pub const TIMESTAMP_INFINITY: u8 = 0x08;
    pub const DATE: u8 = 0x09;
    pub const DATE_INFINITY: u8 = 0x0A;
    pub const TIME: u8 = 0x0B;
    pub const TIMETZ: u8 = 0x0C;
    pub const INTERVAL: u8 = 0x0D;
    pub const UUID: u8 = 0x0E;
    pub const JSON: u8 = 0x0F;
    pub const ARRAY: u8 = 0x10;
    pub const RAW: u8 = 0x11;
    /// Not part of the encoding and never hashed: the stand-in for a long value in a row
    /// captured for comparison ([`super::RowEncoder::capturing`]). Payload: the value's tag
    /// (u8), its length (u32), the blake3 of its payload (32 bytes), then the payload's first
    /// bytes (at most 512).
    pub const ELIDED: u8 = 0xFF;
}

/// PostgreSQL's FirstNormalObjectId: OIDs from here on are assigned per server.
const FIRST_NORMAL_OBJECT_ID: u32 = 16_384;

/// The canonical bit pattern every NaN is hashed as.
const CANONICAL_NAN_BITS: u64 = 0x7FF8_0000_0000_0000;

/// Longest canonical decimal text accepted, in digits. PostgreSQL's numeric holds at most
/// 131072 + 16383 digits; the cap only stops `1e999999999` from allocating gigabytes.
const MAX_DECIMAL_DIGITS: i64 = 1 << 20;

/// A value that cannot be put into canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// The text is not a decimal number (`[+-]digits[.digits][e[+-]digits]`, `NaN`, `Infinity`).
    #[error("invalid decimal {text:?}")]
    InvalidDecimal { text: String },
    /// The decimal's exponent would expand to more than a million digits.
    #[error("decimal {text:?} is out of range (more than {MAX_DECIMAL_DIGITS} digits)")]
    DecimalOutOfRange { text: String },
    /// The text is not a JSON document.
    #[error("invalid JSON: {reason}")]
    InvalidJson { reason: String },
}

/// Shortens user text embedded in error messages, so a 1 GiB value does not become a 1 GiB error.
fn excerpt(text: &str) -> String {
    const MAX: usize = 64;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// One dimension of an array value: its length and its lower bound (PostgreSQL's default is 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ArrayDim {
    pub len: i32,
    pub lower_bound: i32,
}

/// An open array value in a [`RowEncoder`]; pass it back to [`RowEncoder::end_array`].
#[derive(Debug)]
#[must_use = "an array must be closed with RowEncoder::end_array"]
pub struct ArrayMark {
    len_at: usize,
}

/// Builds the canonical bytes of one row, value by value, and hashes them.
///
/// The buffer is reused from row to row, so the steady state allocates nothing.
#[derive(Debug, Default, Clone)]
pub struct RowEncoder {
    buf: Vec<u8>,
    /// A row with a large value is hashed as it is written (the same blake3 as of the whole
    /// row), so a 50 MB blob is not copied into `buf`. `None` until such a value comes.
    stream: Option<blake3::Hasher>,
    /// Capturing rows for comparison ([`capturing`](Self::capturing)): `buf` keeps every value
    /// of the row, long ones as ELIDED stand-ins.
    capture: bool,
    /// While capturing, the bytes at the start of `buf` that `stream` has already taken in (or
    /// stand-ins for bytes it took in); the rest is hashed when the row ends.
    hashed: usize,
    /// Arrays being written: their lengths are patched into `buf`, so nothing streams meanwhile.
    open_arrays: usize,
}

/// Values longer than this are hashed in place rather than copied into the row buffer.
const STREAM_ABOVE: usize = 64 * 1024;

/// While capturing rows, values longer than this are hashed in place and kept as an ELIDED
/// stand-in: a captured row is read to describe a difference, and a report shows at most a
/// few hundred characters of a value, so a row held for that is never much bigger than its
/// short values.
pub const ELIDE_ABOVE: usize = 1024;

/// The leading bytes of a long value that its ELIDED stand-in keeps, for the report.
const ELIDED_PREFIX: usize = 512;

/// An ELIDED stand-in's fixed part: the value's tag, its length and the blake3 of its payload.
const ELIDED_FIXED: usize = 1 + 4 + 32;

impl RowEncoder {
    pub fn new() -> Self {
        RowEncoder { buf: Vec::with_capacity(256), stream: None, capture: false, hashed: 0, open_arrays: 0 }
    }

    /// An encoder for rows captured to be compared value by value: [`as_bytes`](Self::as_bytes)
    /// holds the row's values in order, each as written, except values longer than
    /// [`ELIDE_ABOVE`] (outside arrays), which are hashed in place and kept as a
    /// [`tag::ELIDED`] stand-in (their tag, length, blake3 and first bytes). The row hash is
    /// the same as an ordinary encoder's.
    pub fn capturing() -> Self {
        RowEncoder { capture: true, ..RowEncoder::new() }
    }

    /// Appends the payload of the value whose header starts at `start`: copied into the row,
    /// or for a large value outside an array, hashed in place after the bytes before it.
    #[inline]
    fn payload(&mut self, start: usize, value: &[u8]) {
        if value.len() > STREAM_ABOVE && !self.capture && self.open_arrays == 0 {
            let hasher = self.stream.get_or_insert_with(blake3::Hasher::new);
            hasher.update(&self.buf);
            self.buf.clear();
            hasher.update(value);
        } else if self.capture && value.len() > ELIDE_ABOVE && self.open_arrays == 0 {
            self.elide_payload(start, value);
        } else {
            self.buf.extend_from_slice(value);
        }
    }

    /// Capturing: hashes the value that starts at `start` (its header and any payload bytes
    /// already in `buf`, then `value`) and puts its stand-in in its place.
    #[cold]
    fn elide_payload(&mut self, start: usize, value: &[u8]) {
        let hasher = self.stream.get_or_insert_with(blake3::Hasher::new);
        hasher.update(&self.buf[self.hashed..]);
        hasher.update(value);
        // A RAW value's OID is part of its payload, written before the bytes.
        let head_len = self.buf.len() - start - 5;
        let mut head = [0u8; 8];
        head[..head_len].copy_from_slice(&self.buf[start + 5..]);
        let digest = blake3::Hasher::new().update(&head[..head_len]).update(value).finalize();
        let tag = self.buf[start];
        let len: [u8; 4] = self.buf[start + 1..start + 5].try_into().expect("4 bytes");
        self.buf.truncate(start);
        let shown = ELIDED_PREFIX.min(head_len + value.len());
        self.header(tag::ELIDED, ELIDED_FIXED + shown);
        self.buf.push(tag);
        self.buf.extend_from_slice(&len);
        self.buf.extend_from_slice(digest.as_bytes());
        self.buf.extend_from_slice(&head[..head_len]);
        self.buf.extend_from_slice(&value[..shown - head_len]);
        self.hashed = self.buf.len();
    }

    /// Capturing: a value written in place (decimal, JSON, array) that starts at `start` and
    /// turned out long is hashed and replaced by its stand-in.
    #[inline]
    fn end_value(&mut self, start: usize) {
        if self.capture && self.open_arrays == 0 && self.buf.len() - start - 5 > ELIDE_ABOVE {
            self.elide_written(start);
        }
    }

    #[cold]
    fn elide_written(&mut self, start: usize) {
        let hasher = self.stream.get_or_insert_with(blake3::Hasher::new);
        hasher.update(&self.buf[self.hashed..]);
        let payload = &self.buf[start + 5..];
        let mut stand_in = Vec::with_capacity(5 + ELIDED_FIXED + ELIDED_PREFIX);
        let shown = ELIDED_PREFIX.min(payload.len());
        stand_in.push(tag::ELIDED);
        stand_in.extend_from_slice(&((ELIDED_FIXED + shown) as u32).to_le_bytes());
        stand_in.extend_from_slice(&self.buf[start..start + 5]);
        stand_in.extend_from_slice(blake3::hash(payload).as_bytes());
        stand_in.extend_from_slice(&payload[..shown]);
        self.buf.truncate(start);
        self.buf.extend_from_slice(&stand_in);
        self.hashed = self.buf.len();
    }

    /// The canonical bytes of the row so far (for diagnostics and row-level localization);
    /// while capturing, every value of the row, long ones as stand-ins.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Hashes the row's canonical bytes and clears the encoder for the next row.
    #[inline]
    pub fn finish_row(&mut self) -> RowHash {
        self.finish_row_with(|_, _| {})
    }

    /// Hashes the row, hands its bytes (see [`as_bytes`](Self::as_bytes)) and hash to `f`,
    /// and clears the encoder for the next row.
    #[inline]
    pub fn finish_row_with(&mut self, f: impl FnOnce(&[u8], &RowHash)) -> RowHash {
        let hash = match self.stream.take() {
            Some(mut hasher) => RowHash(*hasher.update(&self.buf[self.hashed..]).finalize().as_bytes()),
            None => RowHash(*blake3::hash(&self.buf).as_bytes()),
        };
        f(&self.buf, &hash);
        self.buf.clear();
        self.hashed = 0;
        hash
    }

    /// Drops the values written so far without hashing them.
    #[inline]
    pub fn discard_row(&mut self) {
        self.buf.clear();
        self.stream = None;
        self.hashed = 0;
        self.open_arrays = 0;
    }

    #[inline]
    fn header(&mut self, tag: u8, len: usize) {
        let len = u32::try_from(len).expect("a canonical value is shorter than 4 GiB");
        self.buf.push(tag);
        self.buf.extend_from_slice(&len.to_le_bytes());
    }

    #[inline]
    fn fixed<const N: usize>(&mut self, tag: u8, payload: [u8; N]) {
        self.header(tag, N);
        self.buf.extend_from_slice(&payload);
    }

    /// Writes a tag and a placeholder length; returns where the length goes.
    #[inline]
    fn open(&mut self, tag: u8) -> usize {
        self.buf.push(tag);
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        at
    }

    /// Fills in the length written by [`Self::open`] with the bytes written since.
    #[inline]
    fn close(&mut self, len_at: usize) {
        let len = self.buf.len() - len_at - 4;
        let len = u32::try_from(len).expect("a canonical value is shorter than 4 GiB");
        self.buf[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
    }

    #[inline]
    pub fn null(&mut self) {
        self.header(tag::NULL, 0);
    }

    #[inline]
    pub fn bool(&mut self, value: bool) {
        self.fixed(tag::BOOL, [value as u8]);
    }

    /// Any integer, of any width or signedness: widen it to i128 first.
    #[inline]
    pub fn int(&mut self, value: i128) {
        self.fixed(tag::INT, value.to_le_bytes());
    }

    /// A decimal given as text (`-000.100`, `1.5e3`, `NaN`, `-Infinity`…), normalized.
    pub fn decimal(&mut self, text: &str) -> Result<(), CanonicalError> {
        let parsed = ParsedDecimal::parse(text)?;
        let at = self.open(tag::DECIMAL);
        match parsed.write_canonical(&mut self.buf) {
            Ok(()) => {
                self.close(at);
                self.end_value(at - 1);
                Ok(())
            }
            Err(()) => {
                self.buf.truncate(at - 1);
                Err(CanonicalError::DecimalOutOfRange { text: excerpt(text) })
            }
        }
    }

    /// A decimal whose text the caller already produced in canonical form (the PostgreSQL
    /// numeric decoder renders it directly); not checked.
    #[inline]
    pub(crate) fn decimal_canonical(&mut self, canonical: &[u8]) {
        let start = self.buf.len();
        self.header(tag::DECIMAL, canonical.len());
        self.buf.extend_from_slice(canonical);
        self.end_value(start);
    }

    /// A binary64 value; pass float4 values as `f64::from(v)`.
    #[inline]
    pub fn float(&mut self, value: f64) {
        let bits = if value.is_nan() {
            CANONICAL_NAN_BITS
        } else if value == 0.0 {
            0
        } else {
            value.to_bits()
        };
        self.fixed(tag::FLOAT, bits.to_le_bytes());
    }

    /// A timestamp as microseconds since 1970-01-01 00:00:00 (UTC for time-zone-aware types).
    /// Stored relative to 2000-01-01 (see the TIMESTAMP row); values before year -290308, which
    /// no engine has, would wrap.
    #[inline]
    pub fn timestamp_us(&mut self, unix_us: i64) {
        self.timestamp_us_since_2000(unix_us.wrapping_sub(UNIX_TO_2000_US));
    }

    /// A timestamp as microseconds since 2000-01-01 00:00:00, PostgreSQL's own form, which
    /// holds every PostgreSQL timestamp up to year 294276.
    #[inline]
    pub fn timestamp_us_since_2000(&mut self, us: i64) {
        self.fixed(tag::TIMESTAMP, us.to_le_bytes());
    }

    #[inline]
    pub fn timestamp_infinity(&mut self, positive: bool) {
        self.fixed(tag::TIMESTAMP_INFINITY, [positive as u8]);
    }

    /// A date as days since 1970-01-01.
    #[inline]
    pub fn date_days(&mut self, unix_days: i32) {
        self.fixed(tag::DATE, unix_days.to_le_bytes());
    }

    #[inline]
    pub fn date_infinity(&mut self, positive: bool) {
        self.fixed(tag::DATE_INFINITY, [positive as u8]);
    }

    /// A time of day or a duration (MySQL TIME), in signed microseconds.
    #[inline]
    pub fn time_us(&mut self, us: i64) {
        self.fixed(tag::TIME, us.to_le_bytes());
    }

    /// A time with time zone: local microseconds and the offset in seconds east of UTC.
    #[inline]
    pub fn timetz(&mut self, us: i64, offset_east_s: i32) {
        let mut payload = [0; 12];
        payload[..8].copy_from_slice(&us.to_le_bytes());
        payload[8..].copy_from_slice(&offset_east_s.to_le_bytes());
        self.fixed(tag::TIMETZ, payload);
    }

    #[inline]
    pub fn interval(&mut self, months: i32, days: i32, us: i64) {
        let mut payload = [0; 16];
        payload[..4].copy_from_slice(&months.to_le_bytes());
        payload[4..8].copy_from_slice(&days.to_le_bytes());
        payload[8..].copy_from_slice(&us.to_le_bytes());
        self.fixed(tag::INTERVAL, payload);
    }

    /// Text as its exact bytes (not checked for UTF-8: the source's encoding guarantees it).
    #[inline]
    pub fn text(&mut self, value: &[u8]) {
        let start = self.buf.len();
        self.header(tag::TEXT, value.len());
        self.payload(start, value);
    }

    /// `char(n)` text: trailing spaces are padding, so they are removed (PostgreSQL semantics);
    /// the result is a TEXT value, equal to the same text in a varchar or text column.
    #[inline]
    pub fn bpchar(&mut self, value: &[u8]) {
        let end = value.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
        self.text(&value[..end]);
    }

    #[inline]
    pub fn bytes(&mut self, value: &[u8]) {
        let start = self.buf.len();
        self.header(tag::BYTES, value.len());
        self.payload(start, value);
    }

    /// A JSON document, parsed and re-serialized canonically. On error nothing is written.
    pub fn json(&mut self, text: &str) -> Result<(), CanonicalError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| CanonicalError::InvalidJson { reason: e.to_string() })?;
        let at = self.open(tag::JSON);
        match write_json(&value, &mut self.buf) {
            Ok(()) => {
                self.close(at);
                self.end_value(at - 1);
                Ok(())
            }
            Err(e) => {
                self.buf.truncate(at - 1);
                Err(e)
            }
        }
    }

    #[inline]
    pub fn uuid(&mut self, value: &[u8; 16]) {
        self.fixed(tag::UUID, *value);
    }

    /// A value of a type with no engine-neutral form: its PostgreSQL binary bytes and type OID.
    /// User-defined OIDs (≥ 16384) are hashed as 0: they differ from server to server.
    #[inline]
    pub fn raw(&mut self, oid: u32, value: &[u8]) {
        let oid = if oid >= FIRST_NORMAL_OBJECT_ID { 0 } else { oid };
        let start = self.buf.len();
        self.header(tag::RAW, 4 + value.len());
        self.buf.extend_from_slice(&oid.to_le_bytes());
        self.payload(start, value);
    }

    /// Opens an array value; write its `product(len)` elements with the other methods (NULL
    /// included), then close it with [`Self::end_array`]. An empty array has no dimensions.
    #[inline]
    pub fn begin_array(&mut self, dims: &[ArrayDim]) -> ArrayMark {
        self.open_arrays += 1;
        let len_at = self.open(tag::ARRAY);
        self.buf.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for dim in dims {
            self.buf.extend_from_slice(&dim.len.to_le_bytes());
            self.buf.extend_from_slice(&dim.lower_bound.to_le_bytes());
        }
        ArrayMark { len_at }
    }

    #[inline]
    pub fn end_array(&mut self, mark: ArrayMark) {
        self.close(mark.len_at);
        self.open_arrays -= 1;
        self.end_value(mark.len_at - 1);
    }
}

/// A range digest fed row by row that hashes short rows in batches, side by side in SIMD
/// lanes ([`blake3_lanes`]): with AVX-512 about twice as fast as one hash per row (measured in
/// `benches/codec.rs`). The digest is the same as adding every row's [`RowEncoder::finish_row`].
#[derive(Debug, Default, Clone)]
pub struct DigestBuilder {
    digest: RangeDigest,
    /// Short rows waiting for their batch, back to back; row `i` ends at `ends[i]`.
    pending: Vec<u8>,
    ends: Vec<usize>,
}

/// Rows hashed together: enough to keep 16 lanes busy while rows of different lengths come
/// and go.
const BATCH_ROWS: usize = 64;

impl DigestBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the encoder's row (hashed now, or with its batch) and clears the encoder.
    #[inline]
    pub fn add_row(&mut self, encoder: &mut RowEncoder) {
        if encoder.stream.is_some() || encoder.buf.len() > MAX_LANE_LEN {
            self.digest.add(&encoder.finish_row());
            return;
        }
        self.pending.extend_from_slice(&encoder.buf);
        self.ends.push(self.pending.len());
        encoder.buf.clear();
        if self.ends.len() == BATCH_ROWS {
            self.flush();
        }
    }

    /// Adds a row already hashed.
    #[inline]
    pub fn add_hash(&mut self, hash: &RowHash) {
        self.digest.add(hash);
    }

    fn flush(&mut self) {
        let mut rows: [&[u8]; BATCH_ROWS] = [&[]; BATCH_ROWS];
        let mut start = 0;
        for (row, &end) in rows.iter_mut().zip(&self.ends) {
            *row = &self.pending[start..end];
            start = end;
        }
        let digest = &mut self.digest;
        blake3_lanes::hash_many(&rows[..self.ends.len()], |_, hash| digest.add(&RowHash(hash)));
        self.pending.clear();
        self.ends.clear();
    }

    /// The digest of every row added.
    pub fn finish(mut self) -> RangeDigest {
        self.flush();
        self.digest
    }
}

/// blake3 of one row's canonical bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RowHash(pub [u8; 32]);

impl RowHash {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl fmt::Display for RowHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for RowHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RowHash({})", self.to_hex())
    }
}

/// Order-independent digest of a set of rows: row count plus the sum mod 2^256 of the row
/// hashes. Digests of disjoint ranges [`merge`](Self::merge) into the digest of their union.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RangeDigest {
    rows: u64,
    /// Little-endian 64-bit limbs: `sum[0]` is the least significant.
    sum: [u64; 4],
}

impl RangeDigest {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The sum as 32 little-endian bytes.
    pub fn sum_bytes(&self) -> [u8; 32] {
        let mut out = [0; 32];
        for (chunk, limb) in out.chunks_exact_mut(8).zip(self.sum) {
            chunk.copy_from_slice(&limb.to_le_bytes());
        }
        out
    }

    #[inline]
    pub fn add(&mut self, row: &RowHash) {
        let mut limbs = [0u64; 4];
        for (limb, chunk) in limbs.iter_mut().zip(row.0.chunks_exact(8)) {
            *limb = u64::from_le_bytes(chunk.try_into().expect("8-byte chunk"));
        }
        self.add_limbs(1, limbs);
    }

    /// Adds the rows of another digest (a disjoint range) to this one.
    pub fn merge(&mut self, other: &RangeDigest) {
        self.add_limbs(other.rows, other.sum);
    }

    #[inline]
    fn add_limbs(&mut self, rows: u64, limbs: [u64; 4]) {
        self.rows = self.rows.wrapping_add(rows);
        let mut carry = false;
        for (acc, limb) in self.sum.iter_mut().zip(limbs) {
            let (s1, c1) = acc.overflowing_add(limb);
            let (s2, c2) = s1.overflowing_add(carry as u64);
            *acc = s2;
            carry = c1 | c2;
        }
    }

    /// `<rows>:<64 lowercase hex>`, the same as `Display`.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for RangeDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.rows, hex(&self.sum_bytes()))
    }
}

/// A digest's text form could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid range digest {text:?}: expected <rows>:<64 hex digits>")]
pub struct ParseDigestError {
    text: String,
}

impl FromStr for RangeDigest {
    type Err = ParseDigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseDigestError { text: excerpt(s) };
        let (rows, sum) = s.split_once(':').ok_or_else(err)?;
        if rows.is_empty() || !rows.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let rows: u64 = rows.parse().map_err(|_| err())?;
        if sum.len() != 64 || !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err());
        }
        let mut digest = RangeDigest { rows, sum: [0; 4] };
        for (i, limb) in digest.sum.iter_mut().enumerate() {
            let mut bytes = [0u8; 8];
            for (j, byte) in bytes.iter_mut().enumerate() {
                let at = (i * 8 + j) * 2;
                *byte = u8::from_str_radix(&sum[at..at + 2], 16).map_err(|_| err())?;
            }
            *limb = u64::from_le_bytes(bytes);
        }
        Ok(digest)
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xF) as usize] as char);
    }
    out
}

/// A decimal's text split into its parts, borrowing the input's digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParsedDecimal<'a> {
    NaN,
    Infinity { negative: bool },
    Finite(FiniteDecimal<'a>),
}

/// `±int.frac × 10^exp`, with `int` and `frac` ASCII digit strings (either may be empty, not both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FiniteDecimal<'a> {
    pub negative: bool,
    pub int: &'a [u8],
    pub frac: &'a [u8],
    pub exp: i64,
}

impl<'a> ParsedDecimal<'a> {
    pub(crate) fn parse(text: &'a str) -> Result<Self, CanonicalError> {
        let invalid = || CanonicalError::InvalidDecimal { text: excerpt(text) };
        let t = text.trim_matches(|c: char| c.is_ascii_whitespace());
        let (negative, body) = match t.as_bytes().first() {
            Some(b'-') => (true, &t[1..]),
            Some(b'+') => (false, &t[1..]),
            _ => (false, t),
        };
        if body.eq_ignore_ascii_case("nan") && t.len() == body.len() {
            return Ok(ParsedDecimal::NaN);
        }
        if body.eq_ignore_ascii_case("infinity") || body.eq_ignore_ascii_case("inf") {
            return Ok(ParsedDecimal::Infinity { negative });
        }
        let b = body.as_bytes();
        let digits_end = |from: usize| from + b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
        let int_end = digits_end(0);
        let int = &b[..int_end];
        let mut at = int_end;
        let mut frac: &[u8] = &[];
        if b.get(at) == Some(&b'.') {
            let frac_end = digits_end(at + 1);
            frac = &b[at + 1..frac_end];
            at = frac_end;
        }
        if int.is_empty() && frac.is_empty() {
            return Err(invalid());
        }
        let mut exp: i64 = 0;
        if matches!(b.get(at), Some(b'e' | b'E')) {
            at += 1;
            let exp_negative = match b.get(at) {
                Some(b'-') => {
                    at += 1;
                    true
                }
                Some(b'+') => {
                    at += 1;
                    false
                }
                _ => false,
            };
            let exp_end = digits_end(at);
            if exp_end == at {
                return Err(invalid());
            }
            for &d in &b[at..exp_end] {
                // Saturates far beyond any usable exponent; range is checked when rendering.
                exp = (exp * 10 + i64::from(d - b'0')).min(i64::MAX / 100);
            }
            if exp_negative {
                exp = -exp;
            }
            at = exp_end;
        }
        if at != b.len() {
            return Err(invalid());
        }
        Ok(ParsedDecimal::Finite(FiniteDecimal { negative, int, frac, exp }))
    }

    /// Appends the canonical text; `Err` when a finite value would exceed [`MAX_DECIMAL_DIGITS`].
    pub(crate) fn write_canonical(&self, out: &mut Vec<u8>) -> Result<(), ()> {
        match self {
            ParsedDecimal::NaN => out.extend_from_slice(b"NaN"),
            ParsedDecimal::Infinity { negative: false } => out.extend_from_slice(b"Infinity"),
            ParsedDecimal::Infinity { negative: true } => out.extend_from_slice(b"-Infinity"),
            ParsedDecimal::Finite(d) => d.write_canonical(out)?,
        }
        Ok(())
    }
}

impl FiniteDecimal<'_> {
    /// The digit at index `k` of `int ++ frac`, zero outside it.
    #[inline]
    pub(crate) fn digit(&self, k: i64) -> u8 {
        let n_int = self.int.len() as i64;
        if k < 0 {
            0
        } else if k < n_int {
            self.int[k as usize] - b'0'
        } else if ((k - n_int) as usize) < self.frac.len() {
            self.frac[(k - n_int) as usize] - b'0'
        } else {
            0
        }
    }

    /// Indexes of the first and last non-zero digits of `int ++ frac`, and where the decimal
    /// point falls in that digit string (index of the first fractional digit). None when zero.
    pub(crate) fn significant(&self) -> Option<(i64, i64, i64)> {
        let n_int = self.int.len();
        let all = || self.int.iter().chain(self.frac.iter());
        let first = all().position(|&c| c != b'0')? as i64;
        let last = (n_int + self.frac.len() - 1 - all().rev().position(|&c| c != b'0')?) as i64;
        let point = (n_int as i64).saturating_add(self.exp);
        Some((first, last, point))
    }

    fn write_canonical(&self, out: &mut Vec<u8>) -> Result<(), ()> {
        let Some((first, last, point)) = self.significant() else {
            out.push(b'0');
            return Ok(());
        };
        let int_digits = (point - first).max(0);
        let frac_digits = (last + 1 - point).max(0);
        if int_digits.saturating_add(frac_digits) > MAX_DECIMAL_DIGITS {
            return Err(());
        }
        if self.negative {
            out.push(b'-');
        }
        if point <= first {
            out.push(b'0');
        } else {
            out.extend((first..point).map(|k| b'0' + self.digit(k)));
        }
        if last >= point {
            out.push(b'.');
            out.extend((point..=last).map(|k| b'0' + self.digit(k)));
        }
        Ok(())
    }
}

/// Canonical JSON serialization (see the module documentation).
fn write_json(value: &serde_json::Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    use serde_json::Value;
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            let text = n.as_str();
            let parsed = ParsedDecimal::parse(text)
                .map_err(|_| CanonicalError::InvalidJson { reason: format!("number {text:?}") })?;
            parsed.write_canonical(out).map_err(|()| CanonicalError::InvalidJson {
                reason: format!("number {} out of range", excerpt(text)),
            })?;
        }
        Value::String(s) => write_json_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Sorted here rather than relying on serde_json's map order, which a
            // `preserve_order` feature elsewhere in the build would silently change.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_string(key, out);
                out.push(b':');
                write_json(item, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_json_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0C => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x00..=0x1F => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xF) as usize]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

/// Splits a row's canonical bytes into its values (each with its tag and length), in column
/// order. Canonical values are self-delimiting, so no offsets need to be kept per row.
pub fn split_values(row: &[u8]) -> Vec<&[u8]> {
    let mut values = Vec::new();
    let mut pos = 0;
    while pos + 5 <= row.len() {
        let len = u32::from_le_bytes(row[pos + 1..pos + 5].try_into().expect("4 bytes")) as usize;
        let end = (pos + 5 + len).min(row.len());
        values.push(&row[pos..end]);
        pos = end;
    }
    values
}

/// A value's canonical bytes in a form a person can read (for difference reports): numbers and
/// text as themselves, times in ISO 8601 UTC, bytes as hex. Long values are shortened.
pub fn display_value(value: &[u8]) -> String {
    const MAX_CHARS: usize = 300;
    if let Some((tag, len, prefix)) = elided_parts(value) {
        // The value's first bytes, shown as its type is, then its length.
        let prefix = match tag {
            tag::TEXT | tag::JSON | tag::DECIMAL => match std::str::from_utf8(prefix) {
                Err(e) if e.error_len().is_none() => &prefix[..e.valid_up_to()],
                _ => prefix,
            },
            _ => prefix,
        };
        let mut shown = vec![tag];
        shown.extend_from_slice(&(prefix.len() as u32).to_le_bytes());
        shown.extend_from_slice(prefix);
        let mut text = display_full(&shown);
        if tag == tag::TEXT {
            // Open-ended: the text goes on.
            text.pop();
        }
        let head: String = text.chars().take(MAX_CHARS).collect();
        return format!("{head}… ({len} bytes)");
    }
    let text = display_full(value);
    if text.chars().count() <= MAX_CHARS {
        return text;
    }
    let head: String = text.chars().take(MAX_CHARS).collect();
    format!("{head}… ({} bytes)", value.len().saturating_sub(5))
}

/// An ELIDED stand-in's parts: the value's tag, its length and its first bytes.
fn elided_parts(value: &[u8]) -> Option<(u8, u32, &[u8])> {
    if value.first() != Some(&tag::ELIDED) || value.len() < 5 + ELIDED_FIXED {
        return None;
    }
    let payload = &value[5..];
    let len = u32::from_le_bytes(payload[1..5].try_into().expect("4 bytes"));
    Some((payload[0], len, &payload[ELIDED_FIXED..]))
}

fn display_full(value: &[u8]) -> String {
    if value.len() < 5 {
        return "<malformed>".into();
    }
    let payload = &value[5..];
    let int = |b: &[u8]| -> i128 {
        let mut a = [0u8; 16];
        a[..b.len().min(16)].copy_from_slice(&b[..b.len().min(16)]);
        i128::from_le_bytes(a)
    };
    let le_i64 = |b: &[u8]| b.get(..8).map_or(0, |b| i64::from_le_bytes(b.try_into().expect("8 bytes")));
    let le_i32 = |b: &[u8]| b.get(..4).map_or(0, |b| i32::from_le_bytes(b.try_into().expect("4 bytes")));
    match value[0] {
        tag::NULL => "NULL".into(),
        tag::BOOL => (payload.first() == Some(&1)).to_string(),
        tag::INT => int(payload).to_string(),
        tag::DECIMAL | tag::JSON => String::from_utf8_lossy(payload).into_owned(),
        // Quoted, so the text 'NULL' never reads like a NULL.
        tag::TEXT => serde_json::Value::String(String::from_utf8_lossy(payload).into_owned()).to_string(),
        tag::FLOAT => format!("{:?}", f64::from_bits(le_i64(payload) as u64)),
        tag::BYTES => format!("\\x{}", hex(payload)),
        tag::TIMESTAMP => civil_timestamp(le_i64(payload)),
        tag::TIMESTAMP_INFINITY | tag::DATE_INFINITY => {
            if payload.first() == Some(&1) {
                "infinity".into()
            } else {
                "-infinity".into()
            }
        }
        tag::DATE => civil_date(le_i32(payload) as i64),
        tag::TIME => clock(le_i64(payload)),
        tag::TIMETZ => {
            let offset = le_i32(payload.get(8..).unwrap_or_default());
            let sign = if offset < 0 { '-' } else { '+' };
            let o = offset.unsigned_abs();
            format!("{}{sign}{:02}:{:02}", clock(le_i64(payload)), o / 3600, o % 3600 / 60)
        }
        tag::INTERVAL => {
            let months = le_i32(payload);
            let days = le_i32(payload.get(4..).unwrap_or_default());
            let us = le_i64(payload.get(8..).unwrap_or_default());
            format!("{months} mons {days} days {}", clock(us))
        }
        tag::UUID if payload.len() == 16 => {
            let h = hex(payload);
            format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
        }
        tag::ARRAY => {
            let ndim = payload.get(..4).map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4 bytes"))) as usize;
            let elements = payload.get(4 + ndim * 8..).unwrap_or_default();
            let items: Vec<String> = split_values(elements).into_iter().map(display_full).collect();
            format!("{{{}}}", items.join(","))
        }
        tag::RAW => {
            let oid = payload.get(..4).map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
            format!("raw({oid}):\\x{}", hex(payload.get(4..).unwrap_or_default()))
        }
        other => format!("<tag {other:#04x}>"),
    }
}

/// `HH:MM:SS[.ffffff]` for signed microseconds (hours may exceed 24).
fn clock(us: i64) -> String {
    let sign = if us < 0 { "-" } else { "" };
    let us = us.unsigned_abs();
    let (secs, frac) = (us / 1_000_000, us % 1_000_000);
    let base = format!("{sign}{:02}:{:02}:{:02}", secs / 3600, secs % 3600 / 60, secs % 60);
    if frac == 0 {
        base
    } else {
        format!("{base}.{frac:06}")
    }
}

/// `YYYY-MM-DD` for days since 1970-01-01 (proleptic Gregorian; years before 1 shown as BC).
pub(crate) fn civil_date(days: i64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    if year <= 0 {
        format!("{:04}-{month:02}-{day:02} BC", 1 - year)
    } else {
        format!("{year:04}-{month:02}-{day:02}")
    }
}

/// Microseconds since 2000-01-01 as a UTC date and time.
fn civil_timestamp(us: i64) -> String {
    let days = us.div_euclid(86_400_000_000) + 10_957;
    let rest = us.rem_euclid(86_400_000_000);
    let date = civil_date(days);
    match date.strip_suffix(" BC") {
        Some(d) => format!("{d} {} BC", clock(rest)),
        None => format!("{date} {}", clock(rest)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hash of a row built by `f`.
    fn row(f: impl FnOnce(&mut RowEncoder)) -> RowHash {
        let mut enc = RowEncoder::new();
        f(&mut enc);
        enc.finish_row()
    }

    fn bytes_of(f: impl FnOnce(&mut RowEncoder)) -> Vec<u8> {
        let mut enc = RowEncoder::new();
        f(&mut enc);
        enc.as_bytes().to_vec()
    }

    fn canonical_decimal(text: &str) -> String {
        let mut out = Vec::new();
        ParsedDecimal::parse(text).unwrap().write_canonical(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn layout_is_tag_length_payload() {
        assert_eq!(bytes_of(|e| e.null()), [0x00, 0, 0, 0, 0]);
        assert_eq!(bytes_of(|e| e.bool(true)), [0x01, 1, 0, 0, 0, 1]);
        let mut int = vec![0x02, 16, 0, 0, 0, 5];
        int.extend([0; 15]);
        assert_eq!(bytes_of(|e| e.int(5)), int);
        assert_eq!(bytes_of(|e| e.text(b"ab")), [0x05, 2, 0, 0, 0, b'a', b'b']);
        assert_eq!(bytes_of(|e| e.decimal("-01.50").unwrap()), [0x03, 4, 0, 0, 0, b'-', b'1', b'.', b'5']);
        assert_eq!(bytes_of(|e| e.raw(0x0000_0304, b"z")), [0x11, 5, 0, 0, 0, 0x04, 0x03, 0x00, 0x00, b'z']);
        assert_eq!(bytes_of(|e| e.timestamp_infinity(true)), [0x08, 1, 0, 0, 0, 1]);
        assert_eq!(bytes_of(|e| e.date_infinity(false)), [0x0A, 1, 0, 0, 0, 0]);
    }

    #[test]
    fn integers_of_every_width_are_equal() {
        let five = row(|e| e.int(5));
        assert_eq!(row(|e| e.int(i128::from(5i16))), five);
        assert_eq!(row(|e| e.int(i128::from(5i64))), five);
        assert_eq!(row(|e| e.int(i128::from(5u8))), five);
        assert_ne!(row(|e| e.int(-5)), five);
        let max_u64 = row(|e| e.int(i128::from(u64::MAX)));
        assert_ne!(max_u64, row(|e| e.int(-1)));
        assert_ne!(max_u64, row(|e| e.int(i128::from(i64::MAX))));
        assert_eq!(max_u64, row(|e| e.int(18_446_744_073_709_551_615)));
    }

    #[test]
    fn bool_is_not_int() {
        assert_ne!(row(|e| e.bool(true)), row(|e| e.int(1)));
        assert_ne!(row(|e| e.bool(false)), row(|e| e.bool(true)));
    }

    #[test]
    fn decimals_are_normalized() {
        for (input, expected) in [
            ("0", "0"),
            ("-0", "0"),
            ("+0.000", "0"),
            ("-000.100", "-0.1"),
            ("1.50", "1.5"),
            ("1.5", "1.5"),
            ("0012", "12"),
            ("120", "120"),
            ("120.", "120"),
            (".5", "0.5"),
            ("-.5", "-0.5"),
            ("1.5e3", "1500"),
            ("15E-3", "0.015"),
            ("-0e99", "0"),
            ("10E-1", "1"),
            ("123.456e1", "1234.56"),
            ("  7  ", "7"),
            ("12345678901234567890123456789.000000001", "12345678901234567890123456789.000000001"),
            ("NaN", "NaN"),
            ("nan", "NaN"),
            ("Infinity", "Infinity"),
            ("+inf", "Infinity"),
            ("-Infinity", "-Infinity"),
        ] {
            assert_eq!(canonical_decimal(input), expected, "input {input:?}");
        }
        assert_eq!(row(|e| e.decimal("1.50").unwrap()), row(|e| e.decimal("1.5").unwrap()));
        assert_eq!(row(|e| e.decimal("-0").unwrap()), row(|e| e.decimal("0").unwrap()));
        assert_ne!(row(|e| e.decimal("1.5").unwrap()), row(|e| e.decimal("1.05").unwrap()));
        assert_ne!(row(|e| e.decimal("NaN").unwrap()), row(|e| e.float(f64::NAN)));
        // A decimal is not an integer: the two come from different column types.
        assert_ne!(row(|e| e.decimal("5").unwrap()), row(|e| e.int(5)));
    }

    #[test]
    fn invalid_decimals_are_rejected_and_write_nothing() {
        for bad in ["", "-", ".", "1.2.3", "1e", "e5", "1e+", "abc", "1,5", "--1", "NaNx", "-NaN", "0x10"] {
            let mut enc = RowEncoder::new();
            assert!(matches!(enc.decimal(bad), Err(CanonicalError::InvalidDecimal { .. })), "accepted {bad:?}");
            assert!(enc.as_bytes().is_empty());
        }
        let mut enc = RowEncoder::new();
        assert!(matches!(enc.decimal("1e999999999"), Err(CanonicalError::DecimalOutOfRange { .. })));
        assert!(enc.as_bytes().is_empty());
        assert!(enc.decimal("0e999999999").is_ok());
    }

    #[test]
    fn floats_by_value() {
        assert_eq!(row(|e| e.float(-0.0)), row(|e| e.float(0.0)));
        let nan_a = f64::from_bits(0x7FF8_0000_0000_0001);
        let nan_b = f64::from_bits(0xFFF0_0000_0000_0100);
        assert!(nan_a.is_nan() && nan_b.is_nan());
        assert_eq!(row(|e| e.float(nan_a)), row(|e| e.float(nan_b)));
        assert_eq!(row(|e| e.float(f64::from(f32::NAN))), row(|e| e.float(f64::NAN)));
        let x = 0.1f64;
        assert_ne!(row(|e| e.float(x)), row(|e| e.float(f64::from_bits(x.to_bits() + 1))));
        assert_ne!(row(|e| e.float(f64::INFINITY)), row(|e| e.float(f64::NEG_INFINITY)));
        assert_ne!(row(|e| e.float(f64::INFINITY)), row(|e| e.float(f64::MAX)));
        assert_ne!(row(|e| e.float(f64::INFINITY)), row(|e| e.float(f64::NAN)));
        // float4 values are widened, so a real 1.1 is not a double 1.1.
        assert_ne!(row(|e| e.float(f64::from(1.1f32))), row(|e| e.float(1.1)));
        assert_eq!(row(|e| e.float(f64::from(1.5f32))), row(|e| e.float(1.5)));
    }

    #[test]
    fn null_empty_text_and_empty_bytes_differ() {
        let null = row(|e| e.null());
        let text = row(|e| e.text(b""));
        let bytes = row(|e| e.bytes(b""));
        assert_ne!(null, text);
        assert_ne!(null, bytes);
        assert_ne!(text, bytes);
        assert_ne!(row(|e| e.text(b"ab")), row(|e| e.bytes(b"ab")));
    }

    #[test]
    fn column_boundaries_are_unambiguous() {
        let a_bc = row(|e| {
            e.text(b"a");
            e.text(b"bc")
        });
        let ab_c = row(|e| {
            e.text(b"ab");
            e.text(b"c")
        });
        assert_ne!(a_bc, ab_c);
        let null_then_empty = row(|e| {
            e.null();
            e.text(b"")
        });
        let empty_then_null = row(|e| {
            e.text(b"");
            e.null()
        });
        assert_ne!(null_then_empty, empty_then_null);
    }

    #[test]
    fn char_padding_is_not_data() {
        assert_eq!(row(|e| e.bpchar(b"ab   ")), row(|e| e.text(b"ab")));
        assert_eq!(row(|e| e.bpchar(b"    ")), row(|e| e.text(b"")));
        assert_ne!(row(|e| e.bpchar(b"ab")), row(|e| e.bpchar(b" ab")));
        assert_ne!(row(|e| e.text(b"ab ")), row(|e| e.text(b"ab")));
        // Only spaces are padding.
        assert_ne!(row(|e| e.bpchar(b"ab\t")), row(|e| e.text(b"ab")));
    }

    #[test]
    fn timestamps_infinities_and_dates() {
        let plus = row(|e| e.timestamp_infinity(true));
        let minus = row(|e| e.timestamp_infinity(false));
        let max = row(|e| e.timestamp_us(i64::MAX));
        let min = row(|e| e.timestamp_us(i64::MIN));
        assert_ne!(plus, minus);
        assert_ne!(plus, max);
        assert_ne!(minus, min);
        assert_ne!(row(|e| e.date_infinity(true)), plus);
        assert_ne!(row(|e| e.date_infinity(true)), row(|e| e.date_days(i32::MAX)));
        assert_ne!(row(|e| e.date_days(0)), row(|e| e.timestamp_us(0)));
        assert_ne!(row(|e| e.time_us(0)), row(|e| e.timestamp_us(0)));
        assert_ne!(row(|e| e.timetz(0, 0)), row(|e| e.timetz(0, 3600)));
        assert_ne!(row(|e| e.interval(1, 0, 0)), row(|e| e.interval(0, 30, 0)));
        assert_ne!(row(|e| e.interval(0, 1, 0)), row(|e| e.interval(0, 0, 86_400_000_000)));
    }

    #[test]
    fn json_is_canonical() {
        let a = row(|e| e.json(r#"{"b": [1, 2.50, {"y":null,"x":true}], "a": "s\u00e9\n"}"#).unwrap());
        let b = row(|e| e.json("{\"a\":\"sé\\n\",\"b\":[1.0,2.5,{\"x\":true,\"y\":null}]}").unwrap());
        assert_eq!(a, b);
        assert_eq!(
            bytes_of(|e| e.json(r#" { "b" : 1e2 , "a" : [ -0 , "\u0001\"\\/" ] } "#).unwrap())[5..],
            *br#"{"a":[0,"\u0001\"\\/"],"b":100}"#
        );
        assert_ne!(row(|e| e.json(r#"{"a":1}"#).unwrap()), row(|e| e.json(r#"{"a":"1"}"#).unwrap()));
        assert_ne!(row(|e| e.json(r#"[1,2]"#).unwrap()), row(|e| e.json(r#"[2,1]"#).unwrap()));
        // Duplicate keys: the last one wins, as in jsonb.
        assert_eq!(row(|e| e.json(r#"{"a":1,"a":2}"#).unwrap()), row(|e| e.json(r#"{"a":2}"#).unwrap()));
        assert_ne!(row(|e| e.json("null").unwrap()), row(|e| e.null()));
        assert_ne!(row(|e| e.json(r#""x""#).unwrap()), row(|e| e.text(b"\"x\"")));
        let mut enc = RowEncoder::new();
        assert!(matches!(enc.json("{\"a\":"), Err(CanonicalError::InvalidJson { .. })));
        assert!(matches!(enc.json("[1e999999999]"), Err(CanonicalError::InvalidJson { .. })));
        assert!(enc.as_bytes().is_empty());
    }

    #[test]
    fn uuid_and_raw() {
        let u = [7u8; 16];
        assert_ne!(row(|e| e.uuid(&u)), row(|e| e.bytes(&u)));
        assert_ne!(row(|e| e.raw(600, b"x")), row(|e| e.raw(601, b"x")));
        assert_ne!(row(|e| e.raw(600, b"x")), row(|e| e.bytes(b"x")));
        // A user-defined type's OID differs between servers; its bytes are what count.
        assert_eq!(row(|e| e.raw(16_384, b"x")), row(|e| e.raw(91_234, b"x")));
        assert_ne!(row(|e| e.raw(16_384, b"x")), row(|e| e.raw(600, b"x")));
    }

    #[test]
    fn arrays() {
        let dim = |len| ArrayDim { len, lower_bound: 1 };
        let empty = row(|e| {
            let a = e.begin_array(&[]);
            e.end_array(a)
        });
        let null = row(|e| e.null());
        let one_null = row(|e| {
            let a = e.begin_array(&[dim(1)]);
            e.null();
            e.end_array(a)
        });
        assert_ne!(empty, null);
        assert_ne!(one_null, empty);
        assert_ne!(one_null, null);
        let flat = row(|e| {
            let a = e.begin_array(&[dim(4)]);
            (1..=4).for_each(|i| e.int(i));
            e.end_array(a)
        });
        let square = row(|e| {
            let a = e.begin_array(&[dim(2), dim(2)]);
            (1..=4).for_each(|i| e.int(i));
            e.end_array(a)
        });
        let shifted = row(|e| {
            let a = e.begin_array(&[ArrayDim { len: 4, lower_bound: 0 }]);
            (1..=4).for_each(|i| e.int(i));
            e.end_array(a)
        });
        assert_ne!(flat, square);
        assert_ne!(flat, shifted);
        // The array's length covers its elements, so what follows cannot be confused with them.
        let bytes = bytes_of(|e| {
            let a = e.begin_array(&[dim(1)]);
            e.text(b"x");
            e.end_array(a);
            e.null();
        });
        assert_eq!(
            bytes,
            [0x10, 18, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0x05, 1, 0, 0, 0, b'x', 0, 0, 0, 0, 0]
        );
    }

    /// The canonical bytes of a value written by hand: tag, length, payload.
    fn value_bytes(tag: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn multi_megabyte_bytes() {
        let big: Vec<u8> = (0..5 * 1024 * 1024).map(|i| (i * 7 % 251) as u8).collect();
        let mut other = big.clone();
        *other.last_mut().unwrap() ^= 1;
        let mut enc = RowEncoder::capturing();
        enc.bytes(&big);
        assert!(enc.as_bytes().len() < 1024, "a captured row keeps a stand-in, not the value");
        let h = enc.finish_row();
        assert!(enc.as_bytes().is_empty());
        assert_eq!(h.0, *blake3::hash(&value_bytes(tag::BYTES, &big)).as_bytes());
        // Hashed in place by a default encoder: the same hash.
        assert_eq!(h, row(|e| e.bytes(&big)));
        assert_ne!(h, row(|e| e.bytes(&other)));
    }

    #[test]
    fn finish_row_resets_the_encoder() {
        let mut enc = RowEncoder::new();
        enc.int(1);
        let first = enc.finish_row();
        enc.int(1);
        assert_eq!(enc.finish_row(), first);
        assert_eq!(first.0, *blake3::hash(&bytes_of(|e| e.int(1))).as_bytes());
    }

    fn hashes(n: u64) -> Vec<RowHash> {
        (0..n).map(|i| row(|e| e.int(i128::from(i)))).collect()
    }

    #[test]
    fn digest_is_order_independent() {
        let rows = hashes(1000);
        let mut forward = RangeDigest::new();
        rows.iter().for_each(|h| forward.add(h));
        let mut backward = RangeDigest::new();
        rows.iter().rev().for_each(|h| backward.add(h));
        let mut shuffled = RangeDigest::new();
        for i in 0..rows.len() {
            shuffled.add(&rows[(i * 389) % rows.len()]);
        }
        assert_eq!(forward, backward);
        assert_eq!(forward, shuffled);
        assert_eq!(forward.rows(), 1000);
        let mut missing = RangeDigest::new();
        rows[1..].iter().for_each(|h| missing.add(h));
        assert_ne!(forward, missing);
        let mut duplicated = missing;
        duplicated.add(&rows[1]);
        assert_ne!(forward, duplicated);
    }

    #[test]
    fn digests_merge_into_the_union() {
        let rows = hashes(300);
        let mut whole = RangeDigest::new();
        rows.iter().for_each(|h| whole.add(h));
        let mut parts = [RangeDigest::new(); 3];
        for (i, h) in rows.iter().enumerate() {
            parts[i % 3].add(h);
        }
        let mut merged = RangeDigest::new();
        for part in parts.iter().rev() {
            merged.merge(part);
        }
        assert_eq!(merged, whole);
        let mut with_empty = whole;
        with_empty.merge(&RangeDigest::new());
        assert_eq!(with_empty, whole);
    }

    #[test]
    fn digest_sum_carries_and_wraps() {
        let max = RowHash([0xFF; 32]);
        let mut d = RangeDigest::new();
        d.add(&max);
        d.add(&RowHash({
            let mut one = [0; 32];
            one[0] = 1;
            one
        }));
        assert_eq!(d.sum_bytes(), [0; 32], "2^256 - 1 + 1 wraps to 0");
        let mut d = RangeDigest::new();
        d.add(&max);
        d.add(&max);
        let mut expected = [0xFF; 32];
        expected[0] = 0xFE;
        assert_eq!(d.sum_bytes(), expected);
    }

    #[test]
    fn digest_text_round_trips() {
        let empty = RangeDigest::new();
        assert_eq!(empty.to_string(), format!("0:{}", "0".repeat(64)));
        let h = row(|e| e.text(b"x"));
        let mut one = RangeDigest::new();
        one.add(&h);
        assert_eq!(one.to_hex(), format!("1:{}", h.to_hex()));
        let mut many = RangeDigest::new();
        hashes(77).iter().for_each(|h| many.add(h));
        for d in [empty, one, many] {
            assert_eq!(d.to_string().parse::<RangeDigest>().unwrap(), d);
        }
        assert_eq!(one.to_hex().to_uppercase().parse::<RangeDigest>().unwrap(), one);
        let zeros = "0".repeat(64);
        for bad in [
            String::new(),
            "1".to_string(),
            format!(":{zeros}"),
            format!("-1:{zeros}"),
            format!("+1:{zeros}"),
            format!("1:{}", "0".repeat(63)),
            format!("1:{}g", "0".repeat(63)),
            format!("1:{zeros}0"),
        ] {
            assert!(bad.parse::<RangeDigest>().is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn values_split_and_display_for_people() {
        let mut e = RowEncoder::new();
        e.int(-42);
        e.null();
        e.text("héllo".as_bytes());
        e.timestamp_us(1_700_000_000_123_456);
        e.date_days(-719_162);
        e.time_us(-3_600_000_001);
        e.float(1.5);
        e.bytes(&[0xde, 0xad]);
        e.uuid(&[0x11; 16]);
        let row = e.as_bytes().to_vec();
        let shown: Vec<String> = split_values(&row).into_iter().map(display_value).collect();
        assert_eq!(
            shown,
            [
                "-42",
                "NULL",
                "\"héllo\"",
                "2023-11-14 22:13:20.123456",
                "0001-01-01",
                "-01:00:00.000001",
                "1.5",
                "\\xdead",
                "11111111-1111-1111-1111-111111111111"
            ]
        );
    }

    #[test]
    fn large_values_hash_the_same_in_place_as_whole() {
        let big = vec![7u8; 5 * STREAM_ABOVE + 3];
        let mut whole = value_bytes(tag::INT, &1i128.to_le_bytes());
        whole.extend(value_bytes(tag::BYTES, &big));
        whole.extend(value_bytes(tag::TEXT, b"after"));
        whole.extend(value_bytes(tag::TEXT, &big[..STREAM_ABOVE + 1]));
        let mut array = Vec::new();
        for part in [1u32.to_le_bytes(), 1i32.to_le_bytes(), 1i32.to_le_bytes()] {
            array.extend_from_slice(&part);
        }
        array.extend(value_bytes(tag::BYTES, &big));
        whole.extend(value_bytes(tag::ARRAY, &array));
        let mut streamed = RowEncoder::new();
        let mut captured = RowEncoder::capturing();
        for e in [&mut streamed, &mut captured] {
            e.int(1);
            e.bytes(&big);
            e.text(b"after");
            e.text(&big[..STREAM_ABOVE + 1]);
            let mark = e.begin_array(&[ArrayDim { len: 1, lower_bound: 1 }]);
            e.bytes(&big);
            e.end_array(mark);
        }
        assert!(streamed.as_bytes().len() < whole.len(), "the big values were not copied");
        assert!(captured.as_bytes().len() < 4096, "captured: stand-ins for the big values");
        let expected = RowHash(*blake3::hash(&whole).as_bytes());
        assert_eq!(streamed.finish_row(), expected);
        assert_eq!(captured.finish_row(), expected);
        // The encoders are clean for the next row.
        let (mut a, mut b) = (RowEncoder::new(), RowEncoder::capturing());
        a.text(b"x");
        b.text(b"x");
        assert_eq!(a.finish_row(), b.finish_row());
    }

    /// A captured row holds every value in order (split_values finds them), short ones as
    /// written and long ones as stand-ins that compare equal exactly when the values are
    /// equal; its hash is an ordinary encoder's.
    #[test]
    fn captured_rows_keep_short_values_and_stand_ins_for_long_ones() {
        let long_text = "é".repeat(3000);
        let long_json = format!("[{}0]", "1, ".repeat(2000));
        let long_decimal = format!("1.{}", "3".repeat(5000));
        let write = |e: &mut RowEncoder, text: &str| {
            e.int(7);
            e.text(text.as_bytes());
            e.json(&long_json).unwrap();
            e.decimal(&long_decimal).unwrap();
            e.raw(600, &[9u8; 2000]);
            e.text(b"short");
        };
        let captured = |text: &str| {
            let mut e = RowEncoder::capturing();
            write(&mut e, text);
            let mut bytes = Vec::new();
            let hash = e.finish_row_with(|b, _| bytes = b.to_vec());
            assert_eq!(hash, row(|e| write(e, text)), "the same hash as an ordinary encoder");
            bytes
        };
        let (a, b) = (captured(&long_text), captured(&format!("{long_text}x")));
        let (va, vb) = (split_values(&a), split_values(&b));
        assert_eq!(va.len(), 6);
        assert_eq!(va[0], value_bytes(tag::INT, &7i128.to_le_bytes()).as_slice());
        assert_eq!(va[5], value_bytes(tag::TEXT, b"short").as_slice());
        for v in &va[1..5] {
            assert_eq!(v[0], tag::ELIDED, "long values are stand-ins");
            assert!(v.len() < 5 + ELIDED_FIXED + ELIDED_PREFIX + 1);
        }
        assert_ne!(va[1], vb[1], "different long texts differ");
        assert_eq!(va[2..], vb[2..], "equal long values are equal");
        let shown = display_value(va[1]);
        assert!(shown.starts_with("\"éé") && shown.ends_with(&format!("… ({} bytes)", long_text.len())), "{shown}");
        assert!(shown.chars().count() < 320, "{shown}");
        assert!(display_value(va[2]).starts_with("[1,1,1"), "{}", display_value(va[2]));
        assert!(display_value(va[3]).starts_with("1.333"));
        assert!(display_value(va[4]).starts_with("raw(600):\\x0909"), "{}", display_value(va[4]));
    }
}
