//! Where records come from: one folder per source family.

pub mod rest;
