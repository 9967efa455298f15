//! `unwrap_load`: a closed-loop HTTP/1.1 load generator for the key-release benchmark
//! (`scripts/bench-broker.sh`, docs/benchmarks.md).
//!
//! N clients, each with its own keep-alive connection, send the same POST back to back for a
//! warm-up period (not recorded) and then for the measured period; every latency of the
//! measured period goes into an HDR histogram (1 µs to 60 s, 3 significant digits). A request
//! counts as an error unless the answer is HTTP 200 and (with `--expect`) its body contains
//! the expected text; a timed-out or broken connection is an error too and is reopened.
//!
//! It only talks to loopback addresses (plain `http://127.x.y.z`, `[::1]` or `localhost`),
//! and it is bounded: at most 1,024 clients, 120 s measured, 60 s warm-up and
//! `--max-requests` requests (default 50 million) in all.
//!
//! ```text
//! cargo bench -p layercrypt-keybroker --bench unwrap_load -- \
//!   --url http://127.0.0.1:8443/v1/unwrap --body-file body.json \
//!   --tokens-file tokens.txt --expect optsdata --concurrency 16 --duration 10 --warmup 2
//! ```
//!
//! Options: `--url URL`, `--body-file FILE`, `--header 'Name: value'` (repeatable),
//! `--tokens-file FILE` (one bearer token a line; client i sends line i mod n as
//! `Authorization: Bearer`), `--expect TEXT`, `--concurrency N` (16), `--duration S` (10),
//! `--warmup S` (2), `--timeout S` (10), `--threads N` (1: one runtime thread, so that
//! `taskset -c 0` gives the generator exactly one core), `--max-requests N`, `--label NAME`.
//! Prints one JSON object on stdout: label, concurrency, requests, errors, rps, p50_us,
//! p90_us, p99_us, p999_us, max_us, mean_us, seconds; a human summary on stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool's own output

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

const MAX_CONCURRENCY: usize = 1024;
const MAX_DURATION_S: u64 = 120;
const MAX_WARMUP_S: u64 = 60;
const DEFAULT_MAX_REQUESTS: u64 = 50_000_000;

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Options {
    addr: SocketAddr,
    authority: String,
    path: String,
    body: Bytes,
    headers: Vec<(HeaderName, HeaderValue)>,
    tokens: Vec<HeaderValue>,
    expect: Option<Vec<u8>>,
    concurrency: usize,
    duration: Duration,
    warmup: Duration,
    timeout: Duration,
    threads: usize,
    max_requests: u64,
    label: String,
}

fn usage(msg: &str) -> Error {
    format!("{msg}\nusage: unwrap_load --url http://127.0.0.1:PORT/PATH --body-file FILE [--header 'N: V']... [--tokens-file FILE] [--expect TEXT] [--concurrency N] [--duration S] [--warmup S] [--timeout S] [--threads N] [--max-requests N] [--label NAME]").into()
}

/// `http://HOST:PORT/PATH` with HOST a loopback address or `localhost`; anything else is
/// refused, so the generator cannot be pointed at another machine.
fn parse_url(url: &str) -> Result<(SocketAddr, String, String), Error> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| usage("--url must be http:// on a loopback address"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| usage("--url needs an explicit port"))?;
    let port: u16 = port.parse().map_err(|_| usage("bad port in --url"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = if host == "localhost" {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse()
            .map_err(|_| usage("--url host must be an IP address or localhost"))?
    };
    if !ip.is_loopback() {
        return Err(usage(
            "refusing a non-loopback target: this tool only loads 127.0.0.0/8 or ::1",
        ));
    }
    Ok((
        SocketAddr::new(ip, port),
        authority.to_owned(),
        path.to_owned(),
    ))
}

fn parse_args() -> Result<Options, Error> {
    let mut args = std::env::args().skip(1);
    let mut url = None;
    let mut body = None;
    let mut headers = Vec::new();
    let mut tokens = Vec::new();
    let mut expect = None;
    let mut concurrency = 16usize;
    let mut duration = 10u64;
    let mut warmup = 2u64;
    let mut timeout = 10u64;
    let mut threads = 1usize;
    let mut max_requests = DEFAULT_MAX_REQUESTS;
    let mut label = String::from("target");
    while let Some(arg) = args.next() {
        // `cargo bench` passes `--bench` to harness = false targets.
        if arg == "--bench" {
            continue;
        }
        let mut value = || {
            args.next()
                .ok_or_else(|| usage(&format!("{arg} needs a value")))
        };
        let number = |v: String| -> Result<u64, Error> {
            v.parse()
                .map_err(|_| usage(&format!("{arg}: not a number: {v}")))
        };
        match arg.as_str() {
            "--url" => url = Some(value()?),
            "--body-file" => body = Some(Bytes::from(std::fs::read(value()?)?)),
            "--header" => {
                let h = value()?;
                let (name, val) = h
                    .split_once(':')
                    .ok_or_else(|| usage("--header must be 'Name: value'"))?;
                headers.push((
                    HeaderName::from_bytes(name.trim().as_bytes())?,
                    HeaderValue::from_str(val.trim())?,
                ));
            }
            "--tokens-file" => {
                for line in std::fs::read_to_string(value()?)?.lines() {
                    let t = line.trim();
                    if !t.is_empty() {
                        let mut v = HeaderValue::from_str(&format!("Bearer {t}"))?;
                        v.set_sensitive(true);
                        tokens.push(v);
                    }
                }
                if tokens.is_empty() {
                    return Err(usage("--tokens-file holds no token"));
                }
            }
            "--expect" => expect = Some(value()?.into_bytes()),
            "--concurrency" => concurrency = number(value()?)? as usize,
            "--duration" => duration = number(value()?)?,
            "--warmup" => warmup = number(value()?)?,
            "--timeout" => timeout = number(value()?)?,
            "--threads" => threads = number(value()?)? as usize,
            "--max-requests" => max_requests = number(value()?)?,
            "--label" => label = value()?,
            other => return Err(usage(&format!("unknown argument {other}"))),
        }
    }
    let (addr, authority, path) = parse_url(&url.ok_or_else(|| usage("--url is required"))?)?;
    let body = body.ok_or_else(|| usage("--body-file is required"))?;
    if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
        return Err(usage(&format!(
            "--concurrency must be 1..={MAX_CONCURRENCY}"
        )));
    }
    if !(1..=MAX_DURATION_S).contains(&duration) || warmup > MAX_WARMUP_S {
        return Err(usage(&format!(
            "--duration must be 1..={MAX_DURATION_S} s, --warmup at most {MAX_WARMUP_S} s"
        )));
    }
    if !(1..=64).contains(&threads) || !(1..=60).contains(&timeout) {
        return Err(usage("--threads must be 1..=64 and --timeout 1..=60"));
    }
    Ok(Options {
        addr,
        authority,
        path,
        body,
        headers,
        tokens,
        expect,
        concurrency,
        duration: Duration::from_secs(duration),
        warmup: Duration::from_secs(warmup),
        timeout: Duration::from_secs(timeout),
        threads,
        max_requests,
        label,
    })
}

struct ClientResult {
    histogram: Histogram<u64>,
    errors: u64,
    first_error: Option<String>,
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender, Error> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// One request on `sender`: Ok(()) for a 200 whose body contains `expect`.
async fn one(
    sender: &mut Sender,
    opts: &Options,
    token: Option<&HeaderValue>,
) -> Result<(), Error> {
    sender.ready().await?;
    let mut req = hyper::Request::post(opts.path.as_str())
        .header(hyper::header::HOST, opts.authority.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(opts.body.clone()))?;
    let headers = req.headers_mut();
    for (name, value) in &opts.headers {
        headers.insert(name.clone(), value.clone());
    }
    if let Some(t) = token {
        headers.insert(hyper::header::AUTHORIZATION, t.clone());
    }
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if status != hyper::StatusCode::OK {
        return Err(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )
        .into());
    }
    if let Some(expect) = &opts.expect {
        if !body.windows(expect.len()).any(|w| w == expect.as_slice()) {
            return Err("answer lacks the expected text".into());
        }
    }
    Ok(())
}

async fn client(
    id: usize,
    opts: Arc<Options>,
    measure_from: Instant,
    end: Instant,
    issued: Arc<AtomicU64>,
) -> ClientResult {
    let mut out = ClientResult {
        histogram: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
        errors: 0,
        first_error: None,
    };
    let token = (!opts.tokens.is_empty()).then(|| &opts.tokens[id % opts.tokens.len()]);
    let mut sender: Option<Sender> = None;
    loop {
        let start = Instant::now();
        if start >= end || issued.fetch_add(1, Ordering::Relaxed) >= opts.max_requests {
            break;
        }
        let attempt = async {
            if sender.is_none() {
                sender = Some(connect(opts.addr).await?);
            }
            let s = sender.as_mut().ok_or("no connection")?;
            one(s, &opts, token).await
        };
        let result = match tokio::time::timeout(opts.timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err("timeout".into()),
        };
        let done = Instant::now();
        if result.is_err() {
            // Start over on a fresh connection: the old one may be in any state.
            sender = None;
        }
        if start < measure_from || done > end {
            continue;
        }
        match result {
            Ok(()) => {
                let us = u64::try_from(done.duration_since(start).as_micros()).unwrap_or(u64::MAX);
                out.histogram.saturating_record(us.max(1));
            }
            Err(e) => {
                out.errors += 1;
                if out.first_error.is_none() {
                    out.first_error = Some(e.to_string());
                }
            }
        }
    }
    out
}

fn main() -> Result<(), Error> {
    let opts = Arc::new(parse_args()?);
    let runtime = if opts.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.threads)
            .enable_all()
            .build()?
    };
    let results = runtime.block_on(async {
        let begin = Instant::now();
        let measure_from = begin + opts.warmup;
        let end = measure_from + opts.duration;
        let issued = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..opts.concurrency)
            .map(|id| tokio::spawn(client(id, opts.clone(), measure_from, end, issued.clone())))
            .collect();
        let mut results = Vec::with_capacity(tasks.len());
        for t in tasks {
            results.push(t.await?);
        }
        Ok::<_, Error>(results)
    })?;
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    let mut first_error = None;
    for r in results {
        histogram.add(&r.histogram)?;
        errors += r.errors;
        if first_error.is_none() {
            first_error = r.first_error;
        }
    }
    let seconds = opts.duration.as_secs_f64();
    let ok = histogram.len();
    let rps = ok as f64 / seconds;
    let q = |p: f64| histogram.value_at_quantile(p);
    eprintln!(
        "{} c={}: {ok} ok, {errors} errors in {seconds:.0} s = {rps:.0} req/s; p50 {} µs, p99 {} µs, max {} µs{}",
        opts.label,
        opts.concurrency,
        q(0.5),
        q(0.99),
        histogram.max(),
        first_error.map(|e| format!("; first error: {e}")).unwrap_or_default()
    );
    println!(
        "{{\"label\":\"{}\",\"concurrency\":{},\"requests\":{ok},\"errors\":{errors},\"rps\":{rps:.1},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"mean_us\":{:.1},\"seconds\":{seconds}}}",
        opts.label.replace(['"', '\\'], "_"),
        opts.concurrency,
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        histogram.max(),
        histogram.mean(),
    );
    Ok(())
}
