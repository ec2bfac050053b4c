//! gRPC unary calls: sgw's GetInfo and Health/Check against the bare tonic
//! server's Check, sequential (latency) and concurrent (throughput).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use supervisor_gateway::pb;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::measure::{Latency, Load, us};
use crate::{Error, Row, Server, Settings, legacy};

/// C connections × K calls in flight for the configured duration; the
/// calls completed.
async fn throughput<F, Fut>(
    settings: &Settings,
    channels: &[Channel],
    call: F,
) -> Result<u64, Error>
where
    F: Fn(Channel) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<(), tonic::Status>> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + settings.duration;
    let mut tasks = Vec::new();
    for channel in channels {
        for _ in 0..settings.in_flight {
            let (channel, done, call) = (channel.clone(), Arc::clone(&done), call.clone());
            tasks.push(tokio::spawn(async move {
                while Instant::now() < deadline {
                    if call(channel.clone()).await.is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    for task in tasks {
        task.await?;
    }
    Ok(done.load(Ordering::Relaxed))
}

/// Sequential round trips on one connection each: bare Check, sgw GetInfo,
/// sgw Check and legacy `hello`, sampled in alternating rounds so that drift
/// on a shared machine hits every series alike; `unary_calls` each in all.
pub async fn latency(
    settings: &Settings,
    bare_path: &Path,
    sgw: &Path,
    rows: &mut Vec<Row>,
) -> Result<(), Error> {
    let empty = || HealthCheckRequest {
        service: String::new(),
    };
    let mut bare_client = HealthClient::new(supervisor_gateway::client::channel(bare_path).await?);
    let mut sgw_health = HealthClient::new(supervisor_gateway::client::channel(sgw).await?);
    let mut control = supervisor_gateway::client::connect(sgw).await?.control;
    let mut legacy_client = legacy::Client::connect(sgw).await?;
    let warmup = settings.warmup;
    let mut bare = Latency::new(warmup, async || {
        bare_client.check(empty()).await.map(|_| ())
    })
    .await?;
    let mut info = Latency::new(warmup, async || {
        control.get_info(pb::GetInfoRequest {}).await.map(|_| ())
    })
    .await?;
    let mut health =
        Latency::new(warmup, async || sgw_health.check(empty()).await.map(|_| ())).await?;
    let mut hello = Latency::new(warmup, async || legacy_client.call(legacy::HELLO).await).await?;
    let per_round = settings.unary_calls.div_ceil(settings.rounds);
    for _ in 0..settings.rounds {
        bare.sample(per_round).await?;
        info.sample(per_round).await?;
        health.sample(per_round).await?;
        hello.sample(per_round).await?;
    }
    let calls = per_round * settings.rounds;
    let (bare, info, health, hello) = (
        bare.percentiles(),
        info.percentiles(),
        health.percentiles(),
        hello.percentiles(),
    );
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    for (i, label) in ["p50", "p90", "p99"].iter().enumerate() {
        rows.push(Row(
            format!("unary latency {label} ({calls} calls): sgw GetInfo vs bare tonic Check"),
            format!("{} vs {}", us(info[i]), us(bare[i])),
            format!(
                "ratio {:.2}{}",
                ratio(info[i], bare[i]),
                if i == 0 { "; target ≤ 1.2" } else { "" }
            ),
        ));
    }
    rows.push(Row(
        "unary latency p50, same message: sgw Health/Check vs bare tonic Check".into(),
        format!("{} vs {}", us(health[0]), us(bare[0])),
        format!("ratio {:.2}", ratio(health[0], bare[0])),
    ));
    for (i, label) in ["p50", "p90", "p99"].iter().enumerate() {
        rows.push(Row(
            format!("legacy latency {label} ({calls} calls): `hello` round trip vs gRPC GetInfo"),
            format!("{} vs {}", us(hello[i]), us(info[i])),
            format!(
                "ratio {:.2}{}",
                ratio(hello[i], info[i]),
                if i == 0 { "; target ≤ 1.0" } else { "" }
            ),
        ));
    }
    Ok(())
}

async fn check(channel: Channel) -> Result<(), tonic::Status> {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map(|_| ())
}

async fn get_info(channel: Channel) -> Result<(), tonic::Status> {
    pb::control_service_client::ControlServiceClient::new(channel)
        .get_info(pb::GetInfoRequest {})
        .await
        .map(|_| ())
}

/// Unary throughput in alternating rounds (bare Check, sgw GetInfo, sgw
/// Check), so that drift on a shared machine hits every series alike. sgw's
/// own Health/Check is the same message as the bare server's, so it tells
/// the gateway's stack apart from GetInfo's larger response.
pub async fn throughput_rounds(
    settings: &Settings,
    (bare_pid, bare_path): (u32, &Path),
    sgw: &Server,
    metered: &Server,
    rows: &mut Vec<Row>,
) -> Result<(), Error> {
    let bare_channels = channels(bare_path, settings.connections).await?;
    let sgw_channels = channels(&sgw.socket, settings.connections).await?;
    let metered_channels = channels(&metered.socket, settings.connections).await?;
    let (sgw_pid, metered_pid) = (sgw.child.id(), metered.child.id());
    let [mut bare, mut info, mut health, mut metered_info] = [Load::default(); 4];
    let mut ratios = Vec::new();
    for _ in 0..settings.rounds {
        let b = Load::measure(bare_pid, throughput(settings, &bare_channels, check)).await?;
        let i = Load::measure(sgw_pid, throughput(settings, &sgw_channels, get_info)).await?;
        let h = Load::measure(sgw_pid, throughput(settings, &sgw_channels, check)).await?;
        let m = Load::measure(
            metered_pid,
            throughput(settings, &metered_channels, get_info),
        )
        .await?;
        ratios.push(i.rate() / b.rate());
        bare.add(b);
        info.add(i);
        health.add(h);
        metered_info.add(m);
    }
    ratios.sort_by(f64::total_cmp);
    let load = format!(
        "{} conns × {} in flight, {}",
        settings.connections,
        settings.in_flight,
        match settings.rounds {
            1 => "1 round".to_owned(),
            n => format!("{n} alternating rounds"),
        }
    );
    rows.push(Row(
        format!("unary throughput ({load}): sgw GetInfo vs bare tonic Check"),
        format!("{:.0}/s vs {:.0}/s", info.rate(), bare.rate()),
        format!(
            "ratio {:.2} (rounds {:.2}–{:.2}); target ≥ 0.9",
            info.rate() / bare.rate(),
            ratios[0],
            ratios[ratios.len() - 1]
        ),
    ));
    rows.push(Row(
        "unary throughput, same message: sgw Health/Check vs bare tonic Check".into(),
        format!("{:.0}/s vs {:.0}/s", health.rate(), bare.rate()),
        format!("ratio {:.2}", health.rate() / bare.rate()),
    ));
    rows.push(Row(
        "unary throughput with [metrics] on (RPC counter + latency histogram): sgw GetInfo".into(),
        format!("{:.0}/s vs {:.0}/s off", metered_info.rate(), info.rate()),
        format!(
            "ratio {:.2}; CPU per call {:.1} vs {:.1} µs",
            metered_info.rate() / info.rate(),
            metered_info.cpu_per_call(),
            info.cpu_per_call()
        ),
    ));
    rows.push(Row(
        "server CPU per unary call under that load: sgw GetInfo / sgw Check / bare Check".into(),
        format!(
            "{:.1} / {:.1} / {:.1} µs",
            info.cpu_per_call(),
            health.cpu_per_call(),
            bare.cpu_per_call()
        ),
        "user + system time of the server process ÷ calls".into(),
    ));
    Ok(())
}

pub async fn channels(path: &Path, n: usize) -> Result<Vec<Channel>, Error> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(supervisor_gateway::client::channel(path).await?);
    }
    Ok(out)
}
