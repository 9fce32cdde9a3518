//! Request-rate limits per identity for the calls that make the gateway decide again what it
//! has decided before: Subscribe calls that start behind the feed head (re-reads) and Get.
//! Each decides every event it reads and stores the decisions, so one agency looping them
//! would grow the decision log and take the CPU from everyone else. Past its quota an identity
//! gets RESOURCE_EXHAUSTED, saying when to try again; other identities are not affected.
//! The limits are GCRA token buckets from the `governor` crate, one per identity and call.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tonic::Status;

use crate::config::RateLimits;
use crate::identity::Identity;
use crate::metrics::{Metrics, RateLimitedCall};

/// The limiters of one gateway.
pub struct RequestRates {
    subscribe: Option<DefaultKeyedRateLimiter<String>>,
    get: Option<DefaultKeyedRateLimiter<String>>,
}

impl std::fmt::Debug for RequestRates {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RequestRates")
            .field("subscribe", &self.subscribe.is_some())
            .field("get", &self.get.is_some())
            .finish()
    }
}

impl RequestRates {
    pub fn new(limits: RateLimits) -> RequestRates {
        let limiter = |per_minute: Option<NonZeroU32>| {
            per_minute.map(|per_minute| RateLimiter::keyed(Quota::per_minute(per_minute)))
        };
        RequestRates {
            subscribe: limiter(limits.subscribe_rereads_per_minute),
            get: limiter(limits.gets_per_minute),
        }
    }

    /// Takes one call of `call` from `caller`'s quota, or refuses it with RESOURCE_EXHAUSTED
    /// (counted in `cordon_rate_limited_requests`).
    pub fn admit(
        &self,
        call: RateLimitedCall,
        caller: &Identity,
        metrics: &Metrics,
    ) -> Result<(), Status> {
        let limiter = match call {
            RateLimitedCall::SubscribeReread => &self.subscribe,
            RateLimitedCall::Get => &self.get,
        };
        let Some(limiter) = limiter else {
            return Ok(());
        };
        let key = caller.to_string();
        match limiter.check_key(&key) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                metrics.rate_limited(call);
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                tracing::warn!(%caller, call = call.as_str(), "request rate limit reached");
                Err(Status::resource_exhausted(format!(
                    "{caller} has used its quota of {} calls; try again in {:.1} s",
                    call.description(),
                    wait.as_secs_f64().max(0.1)
                )))
            }
        }
    }
}
