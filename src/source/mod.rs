//! Where records come from: one folder per source family.

pub mod dead_body;
pub mod parents;
pub mod rest;
pub mod windows;
