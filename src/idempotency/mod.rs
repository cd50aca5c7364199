//! Idempotent StartVerification (AIP-155): a request_id seen again with the
//! same payload gets the first answer, without a second POST to 8x8, also
//! while the first is still in flight. The store sits behind a small trait so
//! the store in Redis (shared by several replicas) can replace the in-memory one.

mod memory;
mod redis;

pub use memory::MemoryStore;
pub use redis::RedisStore;

/// What a store says when a request claims its ID.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// First of its ID (or the earlier one failed): go ahead, then `finish`.
    Proceed,
    /// Answered before: here is the encoded answer.
    Replay(Vec<u8>),
    /// The ID was used with another payload.
    Mismatch,
    /// The store can't be reached: going ahead could send a second SMS.
    Unavailable,
}

#[tonic::async_trait]
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Claims `key` for a request whose payload hashes to `fingerprint`;
    /// waits while another request with that key is in flight.
    async fn claim(&self, key: &str, fingerprint: [u8; 32]) -> Claim;

    /// Records the encoded answer of a claimed request, or, with `None`,
    /// forgets the claim so a retry can try again.
    async fn finish(&self, key: &str, answer: Option<Vec<u8>>);
}
