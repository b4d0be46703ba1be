//! Micro-benchmarks of the per-row hot paths: hashing a PostgreSQL binary COPY stream as it
//! passes through, canonical row encoding alone, and binary COPY encoding from plain values.
//!
//! Rows are shaped like `orders(id bigint, customer_id bigint, amount numeric(12,2),
//! status varchar(16), created_at timestamp, shipped boolean, weight double precision,
//! note text)` with 32–128 character notes. Numbers are measured here, never asserted.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rangecopy::canonical::{DigestBuilder, RangeDigest, RowEncoder};
use rangecopy::copy_format::{ChunkHasher, CopyEncoder};
use rangecopy::schema::{Column, LogicalType};

const ROWS: usize = 100_000;
const BLOCK: usize = 1 << 20;
const STATUSES: [&str; 4] = ["pending", "paid", "shipped", "cancelled"];

struct Order {
    id: i64,
    customer_id: i64,
    amount: String,
    status: &'static str,
    created_at_unix_us: i64,
    shipped: bool,
    weight: f64,
    note: String,
}

fn orders() -> Vec<Order> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    (0..ROWS as i64)
        .map(|id| {
            let r = next();
            let note_len = 32 + (r % 97) as usize;
            let note = (0..note_len).map(|i| (b'a' + ((r >> (i % 50)) % 26) as u8) as char).collect();
            Order {
                id,
                customer_id: (r % 1_000_000) as i64,
                amount: format!("{}.{:02}", (r >> 20) % 10_000_000, (r >> 8) % 100),
                status: STATUSES[(r % 4) as usize],
                created_at_unix_us: 1_600_000_000_000_000 + id * 1_000_003,
                shipped: r % 3 == 0,
                weight: ((r >> 30) % 100_000) as f64 / 7.0,
                note,
            }
        })
        .collect()
}

fn columns() -> Vec<Column> {
    use LogicalType::*;
    [
        ("id", "bigint", Int8),
        ("customer_id", "bigint", Int8),
        ("amount", "numeric(12,2)", Numeric),
        ("status", "varchar(16)", Text),
        ("created_at", "timestamp", Timestamp),
        ("shipped", "boolean", Bool),
        ("weight", "double precision", Float8),
        ("note", "text", Text),
    ]
    .into_iter()
    .map(|(name, type_sql, logical)| Column {
        name: name.into(),
        type_sql: type_sql.into(),
        logical,
        not_null: true,
        default_sql: None,
        identity_sql: None,
        generated_sql: None,
        user_elem_oid: None,
        user_elem_type_sql: None,
        source_type: String::new(),
    })
    .collect()
}

/// Encodes all rows; `sink` receives each block of about 1 MiB as it fills.
fn encode_copy(rows: &[Order], mut sink: impl FnMut(Vec<u8>)) -> u64 {
    let mut copy = CopyEncoder::with_capacity(BLOCK + 4096);
    for o in rows {
        copy.begin_row(8);
        copy.i64(o.id);
        copy.i64(o.customer_id);
        copy.numeric_from_decimal_str(&o.amount).expect("generated decimals are valid");
        copy.field(o.status.as_bytes());
        copy.timestamp_from_unix_us(o.created_at_unix_us).expect("in range");
        copy.bool(o.shipped);
        copy.f64(o.weight);
        copy.field(o.note.as_bytes());
        if copy.buffered().len() >= BLOCK {
            sink(copy.take_buffer());
        }
    }
    let finished = copy.finish();
    sink(finished.bytes);
    finished.rows
}

fn encode_row(enc: &mut RowEncoder, o: &Order) {
    enc.int(o.id.into());
    enc.int(o.customer_id.into());
    enc.decimal(&o.amount).expect("generated decimals are valid");
    enc.text(o.status.as_bytes());
    enc.timestamp_us(o.created_at_unix_us);
    enc.bool(o.shipped);
    enc.float(o.weight);
    enc.text(o.note.as_bytes());
}

/// One blake3 hash per row, as it is finished.
fn hash_rows(rows: &[Order]) -> RangeDigest {
    let mut enc = RowEncoder::new();
    let mut digest = RangeDigest::new();
    for o in rows {
        encode_row(&mut enc, o);
        digest.add(&enc.finish_row());
    }
    digest
}

/// Rows hashed in batches, side by side in SIMD lanes.
fn hash_rows_in_lanes(rows: &[Order]) -> RangeDigest {
    let mut enc = RowEncoder::new();
    let mut digest = DigestBuilder::new();
    for o in rows {
        encode_row(&mut enc, o);
        digest.add_row(&mut enc);
    }
    digest.finish()
}

fn codec(c: &mut Criterion) {
    let rows = orders();
    let mut stream = Vec::new();
    encode_copy(&rows, |block| stream.extend_from_slice(&block));
    let columns = columns();
    let column_refs: Vec<&Column> = columns.iter().collect();

    // The benchmarks must agree before they are worth timing.
    let mut check = ChunkHasher::new(&column_refs);
    let mut forwarded = Vec::new();
    for block in stream.chunks(BLOCK) {
        check.feed(block, &mut forwarded).expect("valid stream");
    }
    assert_eq!(check.finish().expect("complete stream").digest, hash_rows(&rows));
    assert_eq!(forwarded, stream);
    assert_eq!(hash_rows_in_lanes(&rows), hash_rows(&rows));
    eprintln!(
        "orders stream: {ROWS} rows, {} bytes ({:.1} bytes/row)",
        stream.len(),
        stream.len() as f64 / ROWS as f64
    );

    let mut group = c.benchmark_group("codec");
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));

    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("chunk_hasher_feed_1MiB_blocks", |b| {
        let mut out = Vec::with_capacity(2 * BLOCK);
        b.iter(|| {
            let mut hasher = ChunkHasher::new(&column_refs);
            for block in stream.chunks(BLOCK) {
                out.clear();
                hasher.feed(black_box(block), &mut out).expect("valid stream");
                black_box(&out);
            }
            black_box(hasher.finish().expect("complete stream"))
        })
    });

    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("row_encoder_finish_row", |b| b.iter(|| black_box(hash_rows(black_box(&rows)))));

    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("row_encoder_digest_builder", |b| b.iter(|| black_box(hash_rows_in_lanes(black_box(&rows)))));

    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("copy_encoder", |b| b.iter(|| encode_copy(black_box(&rows), |block| drop(black_box(block)))));
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
