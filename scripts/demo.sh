#!/usr/bin/env bash
# demo.sh — shows rangecopy copying a sample "shop" database from PostgreSQL to PostgreSQL.
#
#   scripts/demo.sh              start the dev databases, build, load the sample, copy, status
#   scripts/demo.sh --load-only  only (re)create and load the sample source database
#
# Steps: scripts/dev-db.sh start; cargo build --release; (re)create rc_demo on the PG source and
# on the PG target; load schema `shop` (customers 50k, products 2k, orders 300k, order_items
# ~750k with a composite key, audit_log 20k without a primary key) into the source with psql;
# then `rangecopy copy … --job demo --report target/demo/report.json` and `rangecopy status`.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DEMO_DB=rc_demo
REPORT=target/demo/report.json
BIN=target/release/rangecopy

# psql_at URL [ARGS...]: quiet psql that stops at the first error.
psql_at() {
    local url=$1; shift
    psql -X -q -v ON_ERROR_STOP=1 "$url" "$@"
}

# recreate_db SERVER_URL NAME: drops NAME if it exists and creates it empty.
recreate_db() {
    psql_at "$1/postgres" -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $2 WITH (FORCE)" -c "CREATE DATABASE $2"
}

shop_sql() {
    cat <<'SQL'
SET client_min_messages = warning;
CREATE SCHEMA shop;
CREATE TYPE shop.product_kind AS ENUM ('physical', 'digital', 'service', 'subscription');

CREATE TABLE shop.customers (
    id          integer PRIMARY KEY,
    name        text NOT NULL,
    country     varchar(2),
    email       varchar(254) NOT NULL,
    created_at  timestamptz NOT NULL,
    prefs       jsonb,
    active      boolean NOT NULL
);
INSERT INTO shop.customers
SELECT g,
       'Customer ' || g || CASE WHEN g % 97 = 0 THEN ' Müller-Ødegård ☕' ELSE '' END,
       CASE WHEN g % 50 = 0 THEN NULL ELSE (ARRAY['FR','DE','US','JP','BR','IN'])[1 + g % 6] END,
       'customer' || g || '@example.com',
       timestamptz '2019-01-01 00:00:00+00' + g * interval '17 minutes',
       CASE WHEN g % 10 = 0 THEN NULL
            ELSE jsonb_build_object('newsletter', g % 2 = 0,
                                    'lang', (ARRAY['en','fr','de'])[1 + g % 3],
                                    'tags', jsonb_build_array('t' || g % 5, g % 3, 1.5e-3))
       END,
       g % 7 <> 0
FROM generate_series(1, 50000) AS g;

CREATE TABLE shop.products (
    id          uuid PRIMARY KEY,
    sku         text NOT NULL UNIQUE,
    name        text NOT NULL,
    kind        shop.product_kind NOT NULL,
    price       numeric NOT NULL,
    tags        text[],
    created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO shop.products (id, sku, name, kind, price, tags, created_at)
SELECT md5('product' || g)::uuid,
       'SKU-' || lpad(g::text, 6, '0'),
       'Product #' || g,
       (enum_range(NULL::shop.product_kind))[1 + g % 4],
       round((1 + (g * 7919) % 50000) / 100.0, 2),
       CASE WHEN g % 9 = 0 THEN NULL
            WHEN g % 9 = 1 THEN '{}'::text[]
            ELSE ARRAY['cat' || g % 12, 'color:' || (ARRAY['red','green','blue'])[1 + g % 3], 'a,b "quoted"'] END,
       timestamptz '2018-06-01 00:00:00+00' + g * interval '1 day'
FROM generate_series(1, 2000) AS g;

CREATE TABLE shop.orders (
    id             bigint PRIMARY KEY,
    customer_id    integer NOT NULL,
    status         text NOT NULL,
    total          numeric(12,2) NOT NULL,
    ordered_at     timestamp NOT NULL,
    discount_rate  double precision,
    note           text
);
INSERT INTO shop.orders
SELECT g,
       1 + (g * 7919) % 50000,
       (ARRAY['new','paid','shipped','delivered','cancelled'])[1 + g % 5],
       round(((g * 104729) % 100000) / 100.0 + 5, 2),
       timestamp '2020-01-01' + g * interval '97 seconds',
       CASE WHEN g % 4 = 0 THEN NULL ELSE (g % 30) / 100.0 END,
       CASE WHEN g % 11 = 0 THEN 'gift wrap, please' || E'\n' || 'ring twice' END
FROM generate_series(1, 300000::bigint) AS g;

CREATE TABLE shop.order_items (
    order_id    bigint NOT NULL,
    line_no     smallint NOT NULL,
    product_id  uuid NOT NULL,
    quantity    integer NOT NULL,
    unit_price  numeric(10,2) NOT NULL,
    PRIMARY KEY (order_id, line_no)
);
INSERT INTO shop.order_items
SELECT o, l,
       md5('product' || (1 + (o * 31 + l * 7) % 2000))::uuid,
       1 + (o + l) % 5,
       round((1 + ((o + l) * 7919) % 50000) / 100.0, 2)
FROM generate_series(1, 300000::bigint) AS o,
     generate_series(1, 1 + (o % 4)::int) AS l;

CREATE TABLE shop.audit_log (
    at      timestamptz NOT NULL,
    actor   text,
    action  text NOT NULL,
    detail  jsonb
);
INSERT INTO shop.audit_log
SELECT timestamptz '2024-01-01 00:00:00+00' + (g / 2) * interval '1 minute',
       CASE WHEN g % 13 = 0 THEN NULL ELSE 'user' || g % 40 END,
       (ARRAY['login','logout','update','delete'])[1 + g % 4],
       jsonb_build_object('ip', '127.0.0.' || 1 + g % 200, 'ok', g % 17 <> 0)
FROM generate_series(1, 19980) AS g;
-- A table without a key may hold exact duplicates: 20 of them.
INSERT INTO shop.audit_log SELECT * FROM shop.audit_log ORDER BY at LIMIT 20;

ANALYZE;
SQL
}

load_sample() {
    log "loading the shop sample into $DEMO_DB on the PG source"
    local start=$SECONDS
    shop_sql | psql_at "$SRC/$DEMO_DB"
    psql_at "$SRC/$DEMO_DB" -c "
        SELECT 'shop.customers' AS table, count(*) AS rows FROM shop.customers
        UNION ALL SELECT 'shop.products', count(*) FROM shop.products
        UNION ALL SELECT 'shop.orders', count(*) FROM shop.orders
        UNION ALL SELECT 'shop.order_items', count(*) FROM shop.order_items
        UNION ALL SELECT 'shop.audit_log', count(*) FROM shop.audit_log ORDER BY 1"
    log "sample loaded in $((SECONDS - start)) s"
}

# Runs a rangecopy command, echoing it with the password hidden.
run_rangecopy() {
    printf '+ %s\n' "$(redact "$BIN $*")" >&2
    "$BIN" "$@"
}

redact() { sed -E 's#(://[^:/@]+):[^@]*@#\1:***@#g' <<<"$1"; }

main() {
    local load_only=0
    case ${1:-} in
        --load-only) load_only=1 ;;
        "") ;;
        *) echo "usage: $0 [--load-only]" >&2; exit 2 ;;
    esac
    cd "$REPO"
    scripts/dev-db.sh start
    eval "$(scripts/dev-db.sh env)"
    SRC=${RANGECOPY_TEST_PG_SOURCE%/*}
    TGT=${RANGECOPY_TEST_PG_TARGET%/*}

    [[ $load_only -eq 1 ]] || { log "building the release binary"; cargo build --release; }
    recreate_db "$SRC" "$DEMO_DB"
    recreate_db "$TGT" "$DEMO_DB"
    load_sample
    [[ $load_only -eq 0 ]] || return 0

    mkdir -p "$(dirname "$REPORT")"
    rm -f "$REPORT"
    run_rangecopy copy --source "$SRC/$DEMO_DB" --target "$TGT/$DEMO_DB" --job demo --report "$REPORT"
    run_rangecopy status --target "$TGT/$DEMO_DB" --job demo

    # Prove it: both sides read range by range along the job's chunks and compared row hashes.
    run_rangecopy verify --source "$SRC/$DEMO_DB" --target "$TGT/$DEMO_DB" --job demo \
        --report target/demo/verify.html --report target/demo/verify.json

    log "copy report: $REPO/$REPORT"
    log "verification report: $REPO/target/demo/verify.html (and verify.json)"
}

main "$@"
