//! What the hop costs when the ERP calls a host that does not serve the
//! session (`src/api/forward.rs`): the same `/sessions/send` of a text to a
//! simulated customer, asked of the serving host and of the other one,
//! which forwards it. One at a time (latency: median and 95th percentile)
//! and then `CONCURRENT` at a time (sends per second), spread over the
//! serving host's sessions. Every send must answer 200.

use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::host::Host;
use wabridge_sim::sim::{Person, Simulator};

/// Sends in flight at once in the rate part: the API's own limit on sends
/// whose bodies it reads at a time.
const CONCURRENT: usize = 4;

/// Prints the figures of `count` sends each way.
pub async fn measure(
    sim: &Simulator,
    serving: &Host,
    other: &Host,
    sessions: &[String],
    count: usize,
) {
    let customer = Person::ben();
    sim.add_person(&customer).await;
    let client = reqwest::Client::new();
    println!(
        "  /sessions/send of a text, {count} each way over {} session(s) of {}:",
        sessions.len(),
        serving.node
    );
    for (host, how) in [
        (serving, "to the serving host"),
        (other, "through the other host"),
    ] {
        let send = |n: usize| {
            let (client, customer) = (client.clone(), customer.pn.clone());
            let url = format!("http://127.0.0.1:{}/sessions/send", host.port);
            let session = sessions[n % sessions.len()].clone();
            async move {
                let started = Instant::now();
                let answer = client
                    .post(url)
                    .json(&serde_json::json!({
                        "sessionId": session,
                        "receiver": customer,
                        "message": format!("invoice {n}"),
                    }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(
                    answer.status().as_u16(),
                    200,
                    "{}",
                    answer.text().await.unwrap()
                );
                started.elapsed()
            }
        };
        let mut one_by_one = Vec::with_capacity(count);
        for n in 0..count {
            one_by_one.push(send(n).await);
        }
        one_by_one.sort();
        let started = Instant::now();
        let mut in_flight =
            futures_util::stream::iter((0..count).map(send)).buffer_unordered(CONCURRENT);
        while in_flight.next().await.is_some() {}
        let rate = count as f64 / started.elapsed().as_secs_f64();
        println!(
            "    {how}: {} ms median, {} ms p95 one at a time; {rate:.0} sends/s {CONCURRENT} at a time",
            ms(one_by_one[count / 2]),
            ms(one_by_one[(count * 95).div_ceil(100) - 1]),
        );
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}
