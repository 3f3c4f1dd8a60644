//! The packet-in limit's token bucket, from the shared `ratelimit` crate
//! (the EC2 API limits requests per account with the same buckets).

pub use ::ratelimit::TokenBucket;
