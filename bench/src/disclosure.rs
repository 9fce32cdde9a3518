//! The cost of field commitments (selective disclosure, signature version 2): publish
//! (batches of 1, 16 requests in flight) and fan-out (batches of 100 to 10 subscribers)
//! through the gateway, against the same build with commitments switched off
//! (`CORDON_BENCH_COMMITMENTS=off`: version 1 signatures), the two taking turns so that the
//! machine's drift weighs on both alike.

use anyhow::Result;
use cordon_integration_tests::{GatewayProcess, MemberDir};

use crate::scenario::{self, Load, memory_mib};
use crate::target::Target;
use crate::{Bench, PUBLISH_TURNS, Row, Turns, finish};

/// Subscribers of the fan-out half.
const SUBSCRIBERS: usize = 10;

impl Bench {
    /// A fresh gateway with field commitments on, and its twin with them off.
    async fn commitment_pair(&mut self) -> Result<[(Target, MemberDir, GatewayProcess); 2]> {
        Ok([
            self.switched(None).await?,
            self.switched(Some(("CORDON_BENCH_COMMITMENTS", "off")))
                .await?,
        ])
    }

    pub(crate) async fn disclosure(&mut self) -> Result<()> {
        eprintln!("field commitments: on against off");
        let system = self.system();
        let systems = [system.clone(), format!("{system}, no field commitments")];

        // Publish: one pair, taking turns.
        let (batch, in_flight) = (1usize, 16usize);
        let per_turn = 10_000u64.div_ceil(PUBLISH_TURNS as u64);
        let mut published = [Turns::default(), Turns::default()];
        let pair = self.commitment_pair().await?;
        for turn in 0..PUBLISH_TURNS {
            for index in if turn % 2 == 0 { [0, 1] } else { [1, 0] } {
                let (rate, latency) =
                    scenario::publish_throughput(&pair[index].0, batch, in_flight, per_turn)
                        .await?;
                published[index].add(per_turn, rate, &latency)?;
            }
        }
        let publish_memory = pair
            .each_ref()
            .map(|(_, _, process)| process.pid().and_then(memory_mib));
        for (target, member, process) in pair {
            finish(&target, Some((member, process))).await?;
        }

        // Fan-out: subscribers read from the start, so each turn gets a fresh pair.
        let load = Load::Closed {
            events: (self.args.events / PUBLISH_TURNS as u64).max(1_000),
            batch: 100,
            in_flight: 2,
        };
        let mut fanned = [Turns::default(), Turns::default()];
        let mut fanout_memory = [None, None];
        for turn in 0..PUBLISH_TURNS {
            let pair = self.commitment_pair().await?;
            for index in if turn % 2 == 0 { [0, 1] } else { [1, 0] } {
                let measured = scenario::fanout(&pair[index].0, SUBSCRIBERS, load).await?;
                fanned[index].add(
                    measured.events,
                    measured.per_subscriber_rate(),
                    &measured.latency,
                )?;
                fanout_memory[index] = pair[index].2.pid().and_then(memory_mib);
            }
            for (target, member, process) in pair {
                finish(&target, Some((member, process))).await?;
            }
        }

        for (scenario, subscribers, batch, turns, memory, note) in [
            (
                "commitments publish",
                0,
                batch,
                &published,
                publish_memory,
                format!(
                    "{in_flight} requests in flight; latency is per request; {PUBLISH_TURNS} \
                     turns taken with the gateway whose field commitments are off"
                ),
            ),
            (
                "commitments fanout",
                SUBSCRIBERS,
                100,
                &fanned,
                fanout_memory,
                format!(
                    "closed loop, batches of 100, 2 in flight; rate per subscriber; \
                     {PUBLISH_TURNS} turns, a fresh pair of gateways each"
                ),
            ),
        ] {
            for index in 0..2 {
                let latency = turns[index].latency.as_ref();
                let quantile = |q: f64| latency.map(|latency| latency.value_at_quantile(q));
                self.push(Row {
                    scenario: scenario.into(),
                    system: systems[index].clone(),
                    subscribers,
                    batch,
                    events: turns[index].events,
                    rate_per_s: turns[index].rate(),
                    p50_us: quantile(0.5),
                    p99_us: quantile(0.99),
                    p999_us: quantile(0.999),
                    rss_mib: memory[index].map(|(rss, _)| rss),
                    peak_rss_mib: memory[index].map(|(_, peak)| peak),
                    note: note.clone(),
                    ..Row::default()
                });
            }
        }
        Ok(())
    }
}
