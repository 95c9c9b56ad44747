//! The `crl` check (P15 手順7-⑭): the certificate revocation list download.

use crate::samples::Sample;
use oqs_proto::v1::{HttpTarget, Report};

pub fn sample(r: &Report) -> Option<Sample> {
    super::http::sample(r, crate::catalog::Check::Crl, &[HttpTarget::Crl])
}
