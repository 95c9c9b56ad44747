//! The line-authentication portal check (guide 3-1, https://www.lineauth.mnw).
//!
//! So far: the page classifier. The HTTPS fetch (trusting the OQS CA bundle, never pressing
//! 希望する) comes with the rest of the agent.

pub mod classify;
pub mod fetch;
pub mod page;

/// The `lineauth` check of a round: the portal's page, fetched and classified.
pub async fn run(ctx: &super::Context<'_>) -> oqs_proto::v1::LineAuthProbe {
    ctx.lineauth.probe(ctx.classifier).await
}
