//! The `oqs_web` check (3-2, P18): the OQS web's login pages, production and verification.

use crate::samples::Sample;
use oqs_proto::v1::{HttpTarget, Report};

pub fn sample(r: &Report) -> Option<Sample> {
    super::http::sample(
        r,
        crate::catalog::Check::OqsWeb,
        &[HttpTarget::OqsWebProduction, HttpTarget::OqsWebVerification],
    )
}
