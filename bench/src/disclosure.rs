//! The cost of field commitments (selective disclosure, signature version 2): publish
//! (batches of 1, 16 requests in flight) and fan-out (batches of 100 to 10 subscribers)
//! through the gateway, against the same build with commitments switched off
//! (`CORDON_BENCH_COMMITMENTS=off`: version 1 signatures), the two taking turns so that the
//! machine's drift weighs on both alike.

use anyhow::Result;

use crate::scenario::{self, Load, memory_mib};
use crate::{Bench, PUBLISH_TURNS, Row, Turns, finish};

/// Subscribers of the fan-out half.
const SUBSCRIBERS: usize = 10;

impl Bench {
    pub(crate) async fn disclosure(&mut self) -> Result<()> {
        eprintln!("field commitments: on against off");
        let (member, gateway) = self.gateway().await?;
        let on = self.grpc_target(
            &gateway.endpoint,
            self.federation
                .identity(&format!("{}/customs", member.member))?,
        );
        self.gateways += 1;
        let twin_member = self.federation.member(&format!("GH-{}", self.gateways))?;
        let twin = self
            .start_with(&twin_member, &[("CORDON_BENCH_COMMITMENTS", "off")])
            .await?;
        let off = self.grpc_target(
            &twin.endpoint,
            self.federation
                .identity(&format!("{}/customs", twin_member.member))?,
        );
        let system = self.system();
        let systems = [system.clone(), format!("{system}, no field commitments")];
        let targets = [&on, &off];

        let (batch, in_flight) = (1usize, 16usize);
        let per_turn = 10_000u64.div_ceil(PUBLISH_TURNS as u64);
        let mut published = [Turns::default(), Turns::default()];
        for turn in 0..PUBLISH_TURNS {
            for index in if turn % 2 == 0 { [0, 1] } else { [1, 0] } {
                let (rate, latency) =
                    scenario::publish_throughput(targets[index], batch, in_flight, per_turn)
                        .await?;
                published[index].add(per_turn, rate, &latency)?;
            }
        }
        let fanout_events = (self.args.events / PUBLISH_TURNS as u64).max(1_000);
        let load = Load::Closed {
            events: fanout_events,
            batch: 100,
            in_flight: 2,
        };
        let mut fanned = [Turns::default(), Turns::default()];
        for turn in 0..PUBLISH_TURNS {
            for index in if turn % 2 == 0 { [0, 1] } else { [1, 0] } {
                let measured = scenario::fanout(targets[index], SUBSCRIBERS, load).await?;
                fanned[index].add(
                    measured.events,
                    measured.per_subscriber_rate(),
                    &measured.latency,
                )?;
            }
        }

        let memory = [gateway.pid(), twin.pid()].map(|pid| pid.and_then(memory_mib));
        for index in 0..2 {
            let latency = published[index].latency.as_ref();
            let quantile = |q: f64| latency.map(|latency| latency.value_at_quantile(q));
            self.push(Row {
                scenario: "commitments publish".into(),
                system: systems[index].clone(),
                subscribers: 0,
                batch,
                offered_per_s: None,
                events: published[index].events,
                rate_per_s: published[index].rate(),
                p50_us: quantile(0.5),
                p99_us: quantile(0.99),
                p999_us: quantile(0.999),
                rss_mib: memory[index].map(|(rss, _)| rss),
                peak_rss_mib: memory[index].map(|(_, peak)| peak),
                vs_bare: None,
                vs_nats: None,
                acked_per_s: None,
                vs_ordinary: None,
                vs_no_audit_log: None,
                vs_no_commitments: None,
                note: format!(
                    "{in_flight} requests in flight; latency is per request; {PUBLISH_TURNS} \
                     turns taken with the gateway whose field commitments are off"
                ),
            });
        }
        for index in 0..2 {
            let latency = fanned[index].latency.as_ref();
            let quantile = |q: f64| latency.map(|latency| latency.value_at_quantile(q));
            self.push(Row {
                scenario: "commitments fanout".into(),
                system: systems[index].clone(),
                subscribers: SUBSCRIBERS,
                batch: 100,
                offered_per_s: None,
                events: fanned[index].events,
                rate_per_s: fanned[index].rate(),
                p50_us: quantile(0.5),
                p99_us: quantile(0.99),
                p999_us: quantile(0.999),
                rss_mib: memory[index].map(|(rss, _)| rss),
                peak_rss_mib: memory[index].map(|(_, peak)| peak),
                vs_bare: None,
                vs_nats: None,
                acked_per_s: None,
                vs_ordinary: None,
                vs_no_audit_log: None,
                vs_no_commitments: None,
                note: format!(
                    "closed loop, batches of 100, 2 in flight; rate per subscriber; \
                     {PUBLISH_TURNS} turns taken with the gateway whose field commitments are off"
                ),
            });
        }
        finish(&on, Some((member, gateway))).await?;
        finish(&off, Some((twin_member, twin))).await?;
        Ok(())
    }
}
