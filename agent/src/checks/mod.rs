//! The guide's checks, one module per kind.

pub mod lineauth;
