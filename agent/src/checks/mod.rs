//! The guide's checks, one module per kind.

pub mod dns;
pub mod http;
pub mod ipv6;
pub mod lineauth;
pub mod ntp;
pub mod trust;
