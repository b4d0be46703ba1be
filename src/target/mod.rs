//! The target, always PostgreSQL: DDL, COPY loading and index builds.

pub mod postgres;
