//! Source engines: one module each for introspection, key walking and chunk extraction.

pub mod postgres;
